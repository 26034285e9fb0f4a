'use strict';
// Bytes per delivery, for the peerbench adapters of bench/: with GF_BYTES_OUT set, the
// load generator appends one JSON line to that file as it exits: the adapter, the level,
// the deliveries its clients counted and the bytes the process read meanwhile (rchar of
// /proc/self/io, from the first delivery on: every byte the kernel handed it, framing
// included; the joins before are left out, and so are module files read at start).
// Without GF_BYTES_OUT it adds nothing.
const fs = require('fs');

const out = process.env.GF_BYTES_OUT;
let started = null;
let deliveries = 0;

function rchar() {
  return Number(fs.readFileSync('/proc/self/io', 'utf8').match(/rchar: (\d+)/)[1]);
}

function level() {
  const a = process.argv;
  const at = (k) => { const i = a.indexOf('--' + k); return i === -1 ? null : Number(a[i + 1]); };
  return { rooms: at('rooms'), players: at('players'), hz: at('hz') };
}

function count(name, n) {
  if (started === null) {
    started = rchar();
    process.on('exit', () => {
      const line = Object.assign({ adapter: name }, level(), { deliveries, bytes: rchar() - started });
      fs.appendFileSync(out, JSON.stringify(line) + '\n');
    });
  }
  deliveries += n;
}

// The adapter's ctx, its deliveries counted (the same ctx without GF_BYTES_OUT).
function counted(name, ctx) {
  if (!out) return ctx;
  const onMessages = ctx.onMessages;
  return Object.assign({}, ctx, { onMessages(n) { count(name, n); onMessages(n); } });
}

module.exports = { counted };
