'use strict';
// Colyseus' schema encoder on the tracking benchmark's tick (bench/tracking.py runs it):
// a state of N entities {x, y, hp} in a MapSchema (and in an ArraySchema), 10 of them moving per tick; prints,
// per N, the CPU microseconds (the best of 5 rounds of 2,000 ticks) and the bytes of one tick's encode (changes found and
// encoded, then discarded). Usage: node bench/schema-tick.js NODE_MODULES N...
const path = require('path');
const { schema, t, Encoder, MapSchema, ArraySchema } = require(path.join(process.argv[2], '@colyseus/schema'));

const Entity = schema({ x: t.number(), y: t.number(), hp: t.number() }, 'Entity');
const World = schema({ entities: t.map(Entity) }, 'World');
const ListWorld = schema({ entities: t.array(Entity) }, 'ListWorld');
const MOVERS = 10;

function measure(n, list) {
  Encoder.BUFFER_SIZE = Math.max(8 * 1024, n * 40);
  const state = list ? new ListWorld() : new World();
  state.entities = list ? new ArraySchema() : new MapSchema();
  for (let i = 0; i < n; i++) {
    const e = new Entity({ x: i, y: i, hp: 100 });
    if (list) state.entities.push(e); else state.entities.set(String(i), e);
  }
  const encoder = new Encoder(state);
  encoder.encodeAll();
  encoder.discardChanges();
  const movers = [];
  for (let i = 0; i < MOVERS; i++) {
    const at = Math.floor((i * n) / MOVERS);
    movers.push(list ? state.entities[at] : state.entities.get(String(at)));
  }
  let step = 0;
  let bytes = 0;
  function tick() {
    step++;
    for (const e of movers) { e.x = e.x + 1; e.y = step; }
    bytes = encoder.encode().length;
    encoder.discardChanges();
  }
  for (let i = 0; i < 2000; i++) tick(); // warm up the JIT
  let best = Infinity;
  for (let round = 0; round < 5; round++) { // the best round, as bench/tracking.py takes
    const ticks = 2000;
    const start = process.cpuUsage();
    for (let i = 0; i < ticks; i++) tick();
    const used = process.cpuUsage(start);
    best = Math.min(best, (used.user + used.system) / ticks);
  }
  return { us: best, bytes };
}

// Each N: the entities in a MapSchema keyed by id (`N`), and in an ArraySchema (`list N`).
const out = {};
for (const n of process.argv.slice(3)) {
  out[n] = measure(Number(n), false);
  out['list ' + n] = measure(Number(n), true);
}
console.log(JSON.stringify(out));
