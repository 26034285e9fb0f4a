'use strict';
// peerbench adapter: gameframe's state room over TCP. A delivery is one player's `t`
// changing in a JSON Patch reaching one client (as colyseus-state counts them); the
// client's own `t` coming back gives the round-trip latency (it includes waiting for
// the next 50 ms patch). Patches are scanned for byte tokens, not decoded.
const { connectTcp } = require(process.env.PEERBENCH_LOADGEN + '/lib');
const { counted } = require('./_bytes');
const { lines } = require('./_lines');

const T_OP = Buffer.from('/t","value":');

module.exports = {
  name: 'gameframe-state',
  async connect(ctx) {
    ctx = counted('gameframe-state', ctx);
    let own = null; // Buffer of `/players/<id>/t","value":` once joined
    function onLine(buf, s, e) {
      if (buf[s + 11] === 0x70 && buf.toString('latin1', s, s + 17) === '{"action":"patch"') {
        let n = 0;
        for (let p = buf.indexOf(T_OP, s); p !== -1 && p < e; p = buf.indexOf(T_OP, p + T_OP.length)) n++;
        if (n) ctx.onMessages(n);
        if (own) {
          const p = buf.indexOf(own, s);
          if (p !== -1 && p < e) {
            const v = p + own.length;
            let q = v;
            while (q < e && buf[q] >= 0x30 && buf[q] <= 0x39) q++;
            const t = Number(buf.toString('latin1', v, q));
            if (t) ctx.onOwn(t);
          }
        }
      } else if (!own) {
        const m = JSON.parse(buf.toString('utf8', s, e));
        if (m.action === 'joined') own = Buffer.from(`/players/${m.player_id}/t","value":`);
      }
    }
    const sock = await connectTcp(ctx.host, ctx.port, lines(onLine));
    sock.on('error', ctx.onError);
    sock.write(JSON.stringify({ action: 'join_or_create', room: 'state', options: { key: ctx.roomKey } }) + '\n');
    return {
      sendMove(x, y, t) { sock.write(`{"action":"move","x":${x},"y":${y},"t":${t}}\n`); },
      close() { sock.destroy(); },
    };
  },
};
