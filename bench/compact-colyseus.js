'use strict';
// Colyseus' schema encoder on the scenario bench/compact.py writes to stdin:
// {"n": N, "warm": [[[i, x, y], ...] per tick], "ticks": [[[i, x, y], ...] per tick]}.
// Prints {"bytes": [encoded change bytes per measured tick]}. Needs
// COLYSEUS_SCHEMA: the path of an installed @colyseus/schema.
const { schema, t, Encoder } = require(process.env.COLYSEUS_SCHEMA);
const { readFileSync } = require('node:fs');

const Entity = schema({ x: t.number(), y: t.number(), hp: t.number() }, 'Entity');
const World = schema({ entities: t.map(Entity) }, 'World');

const scenario = JSON.parse(readFileSync(0, 'utf8'));
const world = new World();
for (let i = 0; i < scenario.n; i++) {
  const e = new Entity();
  e.x = scenario.start[i][0];
  e.y = scenario.start[i][1];
  e.hp = 100;
  world.entities.set('e' + i, e);
}
const encoder = new Encoder(world);
encoder.encodeAll();
encoder.discardChanges();
function tick(moves) {
  for (const [i, x, y] of moves) {
    const e = world.entities.get('e' + i);
    e.x = x;
    e.y = y;
  }
  const bytes = encoder.encode().length;
  encoder.discardChanges();
  return bytes;
}
for (const moves of scenario.warm) tick(moves);
process.stdout.write(JSON.stringify({ bytes: scenario.ticks.map(tick) }));
