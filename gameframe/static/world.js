/**
 * The world view: a window on a field too big to send whole. The room sends
 * each player only what is near its avatar (`state.entities[id] = {x, y,
 * kind}`, `state.you`, on a `state.width` × `state.height` field); the
 * canvas follows your avatar. Click to walk there (`move {x, y}` in world
 * coordinates).
 */

import { colour, line } from "./canvas.js";

const SMOOTHING = 10; // per second: how fast drawn entities catch up with the state

/**
 * @param {HTMLElement} root where to draw
 * @param {import("./gameframe.js").Client} client
 * @returns {() => void} unmount
 */
export function mount(root, client) {
  root.innerHTML = `
    <div id="world">
      <canvas width="800" height="600" aria-label="The world around you: click to walk there"></canvas>
      <aside>
        <h3>In sight</h3>
        <p id="world-counts"></p>
        <p id="world-where" class="hint"></p>
        <p class="hint">The world is far bigger than this window: the server sends you
        only what is near you. Click to walk.</p>
      </aside>
    </div>`;
  const canvas = root.querySelector("canvas");
  const counts = root.querySelector("#world-counts");
  const where = root.querySelector("#world-where");
  const context = canvas.getContext("2d");
  const shown = new Map(); // entity id → the {x, y} drawn
  let camera = null; // the world point at the canvas' centre
  let frame = 0;
  let last = performance.now();

  function entities() {
    return (client.state && client.state.entities) || {};
  }

  function me() {
    return entities()[client.state && client.state.you];
  }

  canvas.addEventListener("click", (event) => {
    if (camera === null) return;
    const box = canvas.getBoundingClientRect();
    const x = Math.round(camera.x + ((event.clientX - box.left) * canvas.width) / box.width - canvas.width / 2);
    const y = Math.round(camera.y + ((event.clientY - box.top) * canvas.height) / box.height - canvas.height / 2);
    canvas.dataset.target = `${x},${y}`;
    client.send("move", { x, y });
  });

  function renderCounts() {
    const all = Object.values(entities());
    const npcs = all.filter((e) => e.kind === "npc").length;
    counts.textContent = `${npcs} wanderers, ${all.length - npcs} players (you included)`;
    canvas.dataset.entities = String(all.length);
    const self = me();
    if (self) where.textContent = `You are at ${Math.round(self.x)}, ${Math.round(self.y)} of ${client.state.width} × ${client.state.height}.`;
  }

  function draw(now) {
    const dt = Math.min((now - last) / 1000, 0.1);
    last = now;
    const ease = 1 - Math.exp(-SMOOTHING * dt);
    const all = entities();
    const self = me();
    if (self) {
      camera = camera ?? { x: self.x, y: self.y };
      camera.x += (self.x - camera.x) * ease;
      camera.y += (self.y - camera.y) * ease;
    }
    context.fillStyle = "#10151c";
    context.fillRect(0, 0, canvas.width, canvas.height);
    if (camera !== null) {
      const left = camera.x - canvas.width / 2;
      const top = camera.y - canvas.height / 2;
      context.strokeStyle = "#1d2631";
      context.lineWidth = 1;
      for (let x = Math.ceil(left / 100) * 100; x < left + canvas.width; x += 100) line(context, x - left, 0, x - left, canvas.height);
      for (let y = Math.ceil(top / 100) * 100; y < top + canvas.height; y += 100) line(context, 0, y - top, canvas.width, y - top);
      for (const id of shown.keys()) if (!(id in all)) shown.delete(id);
      for (const [id, e] of Object.entries(all)) {
        const at = shown.get(id) ?? { x: e.x, y: e.y };
        at.x += (e.x - at.x) * ease;
        at.y += (e.y - at.y) * ease;
        shown.set(id, at);
        dot(id, e, at.x - left, at.y - top);
      }
    }
    frame = requestAnimationFrame(draw);
  }

  function dot(id, e, x, y) {
    const self = client.state && id === client.state.you;
    context.fillStyle = e.kind === "npc" ? "#6b7a8c" : colour(id);
    context.beginPath();
    context.arc(x, y, e.kind === "npc" ? 4 : 10, 0, 2 * Math.PI);
    context.fill();
    if (self) {
      context.lineWidth = 3;
      context.strokeStyle = "#ffd166";
      context.stroke();
    }
  }

  const off = client.on("state", renderCounts);
  renderCounts();
  frame = requestAnimationFrame(draw);
  return () => {
    off();
    cancelAnimationFrame(frame);
  };
}
