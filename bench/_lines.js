'use strict';
// JSON Lines reading for the TCP adapters: lines(onLine) is a socket's data handler
// that calls onLine(buf, start, end) for each whole line (end: its newline), keeping a
// partial last line for the next chunk.

function lines(onLine) {
  let rest = null;
  return (chunk) => {
    const buf = rest ? Buffer.concat([rest, chunk]) : chunk;
    rest = null;
    let s = 0;
    for (let e = buf.indexOf(10, s); e !== -1; e = buf.indexOf(10, s)) { onLine(buf, s, e); s = e + 1; }
    if (s < buf.length) rest = Buffer.from(buf.subarray(s));
  };
}

module.exports = { lines };
