'use strict';
// peerbench adapter: gameframe's relay room over WebSocket (/ws, one JSON message per frame).
const { wsConnect } = require(process.env.PEERBENCH_LOADGEN + '/lib');

module.exports = {
  name: 'gameframe-ws',
  async connect(ctx) {
    const token = Buffer.from(`"${ctx.clientId}"`);
    const ws = await wsConnect(ctx.host, ctx.port, '/ws', (buf, s, e) => {
      ctx.onMessages(1);
      const tp = buf.indexOf(token, s);
      if (tp !== -1 && tp < e) ctx.onOwn(JSON.parse(buf.toString('utf8', s, e)).t);
    });
    ws.sock.on('error', ctx.onError);
    ws.send(JSON.stringify({ action: 'join_or_create', room: 'relay', options: { key: ctx.roomKey } }), 1);
    const c = ctx.clientId;
    return {
      sendMove(x, y, t) { ws.send(`{"action":"move","c":"${c}","x":${x},"y":${y},"t":${t}}`, 1); },
      close() { ws.close(); },
    };
  },
};
