'use strict';
// peerbench adapter: gameframe's state room over TCP, asking for compact patches
// ("encoding": "compact", docs/protocol.md). A delivery is one player's `t` changing
// in a patch reaching one client, as adapter-state.js counts them in JSON Patches: here
// each patch's `ops` are decoded with the stream's path table, which tells which path
// numbers are a player's `t` (and which one is the client's own: its round trip).
const { connectTcp } = require(process.env.PEERBENCH_LOADGEN + '/lib');
const { counted } = require('./_bytes');
const { lines } = require('./_lines');

const PATCH = '{"action":"patch"';
const OTHER = 0, T = 1, OWN_T = 2; // what a path of the table is

module.exports = {
  name: 'gameframe-state-compact',
  async connect(ctx) {
    ctx = counted('gameframe-state-compact', ctx);
    let ownPath = null; // `/players/<id>/t` once joined
    let table = []; // the path table: path number -> OTHER, T or OWN_T
    const kind = (p) => (p === ownPath ? OWN_T : p.endsWith('/t') ? T : OTHER);
    function replace(ref, value) { // one replace op; the number of deliveries it is
      let k;
      if (typeof ref === 'string') table.push(k = kind(ref));
      else k = table[ref];
      if (k === OTHER || !value) return 0;
      if (k === OWN_T) ctx.onOwn(value);
      return 1;
    }
    function patch(m) {
      if (m.reset) table = [];
      const ops = m.ops;
      let n = 0;
      for (let i = 0; i < ops.length; i++) {
        const op = ops[i];
        if (!Array.isArray(op)) { n += replace(op, ops[++i]); continue; }
        if (op.length === 2) { n += replace(op[0], op[1]); continue; }
        if (typeof op[0] === 'string') table.push(kind(op[0])); // add or remove: no delivery
      }
      if (n) ctx.onMessages(n);
    }
    function onLine(buf, s, e) {
      const text = buf.toString('utf8', s, e);
      if (text.startsWith(PATCH)) { patch(JSON.parse(text)); return; }
      const m = JSON.parse(text);
      if (m.action === 'state') table = [];
      else if (m.action === 'joined') ownPath = `/players/${m.player_id}/t`;
    }
    const sock = await connectTcp(ctx.host, ctx.port, lines(onLine));
    sock.on('error', ctx.onError);
    sock.write(JSON.stringify({
      action: 'join_or_create', room: 'state', options: { key: ctx.roomKey }, encoding: 'compact',
    }) + '\n');
    return {
      sendMove(x, y, t) { sock.write(`{"action":"move","x":${x},"y":${y},"t":${t}}\n`); },
      close() { sock.destroy(); },
    };
  },
};
