'use strict';
// peerbench adapter: gameframe's relay room over TCP (JSON Lines).
// Joins room "relay" by matchmaking on the load generator's room key; moves carry the
// client id as "c", so the client's own echo is found by that token.
const { connectTcp, delimitedReader } = require(process.env.PEERBENCH_LOADGEN + '/lib');

module.exports = {
  name: 'gameframe-tcp',
  async connect(ctx) {
    const token = Buffer.from(`"${ctx.clientId}"`);
    const sock = await connectTcp(ctx.host, ctx.port, delimitedReader('\n', token, ctx.onMessages,
      (buf, s, e) => ctx.onOwn(JSON.parse(buf.toString('utf8', s, e)).t)));
    sock.on('error', ctx.onError);
    sock.write(JSON.stringify({ action: 'join_or_create', room: 'relay', options: { key: ctx.roomKey } }) + '\n');
    const c = ctx.clientId;
    return {
      sendMove(x, y, t) { sock.write(`{"action":"move","c":"${c}","x":${x},"y":${y},"t":${t}}\n`); },
      close() { sock.destroy(); },
    };
  },
};
