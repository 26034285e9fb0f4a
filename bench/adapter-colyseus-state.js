'use strict';
// peerbench's own colyseus-state adapter (the official @colyseus/sdk client), unchanged,
// with its deliveries counted for bytes per delivery (bench/_bytes.js). bench/run.sh
// state runs Colyseus' state server with it when GF_BYTES_OUT is set.
const inner = require(process.env.PEERBENCH_LOADGEN + '/adapters/colyseus-state.js');
const { counted } = require('./_bytes');

module.exports = {
  name: 'colyseus-state',
  connect(ctx) { return inner.connect(counted('colyseus-state', ctx)); },
};
