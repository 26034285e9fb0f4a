/**
 * The real-time arena view: click to walk there (`move {x, y}`); every
 * avatar is drawn from the mirrored state, `state.players[id] = {x, y,
 * connected}` on a `state.width` × `state.height` field. Your own avatar is
 * ringed; players whose connection dropped (seat held) are grey.
 */

import { colour, line } from "./canvas.js";

const RADIUS = 14;
const SMOOTHING = 15; // per second: how fast drawn avatars catch up with the state

/**
 * @param {HTMLElement} root where to draw
 * @param {import("./gameframe.js").Client} client
 * @returns {() => void} unmount
 */
export function mount(root, client) {
  root.innerHTML = `
    <div id="arena">
      <canvas width="800" height="600" aria-label="The arena: click to move there"></canvas>
      <aside>
        <h3>Players</h3>
        <ul id="arena-players"></ul>
        <p class="hint">Click anywhere in the arena to walk there.</p>
      </aside>
    </div>`;
  const canvas = root.querySelector("canvas");
  const list = root.querySelector("#arena-players");
  const context = canvas.getContext("2d");
  const shown = new Map(); // player id → the {x, y} drawn (eases toward the state)
  let target = null; // where we last clicked
  let frame = 0;
  let last = performance.now();

  canvas.addEventListener("click", (event) => {
    const box = canvas.getBoundingClientRect();
    const x = Math.round(((event.clientX - box.left) * canvas.width) / box.width);
    const y = Math.round(((event.clientY - box.top) * canvas.height) / box.height);
    target = { x, y };
    canvas.dataset.target = `${x},${y}`;
    client.send("move", { x, y });
  });

  function players() {
    return (client.state && client.state.players) || {};
  }

  /** The player list beside the canvas (data attributes for tests). */
  function renderList() {
    const state = client.state;
    if (state && (canvas.width !== state.width || canvas.height !== state.height)) {
      canvas.width = state.width;
      canvas.height = state.height;
    }
    const items = Object.entries(players()).map(([id, p]) => {
      const item = document.createElement("li");
      const self = id === client.playerId;
      Object.assign(item.dataset, { playerId: id, x: p.x, y: p.y, connected: p.connected, self });
      item.style.setProperty("--colour", p.connected ? colour(id) : "#999");
      item.textContent = `${self ? "you" : id}${p.connected ? "" : " (away)"}`;
      return item;
    });
    list.replaceChildren(...items);
    canvas.dataset.players = String(items.length);
  }

  function draw(now) {
    const dt = Math.min((now - last) / 1000, 0.1);
    last = now;
    const ease = 1 - Math.exp(-SMOOTHING * dt);
    context.fillStyle = "#10151c";
    context.fillRect(0, 0, canvas.width, canvas.height);
    context.strokeStyle = "#1d2631";
    context.lineWidth = 1;
    for (let x = 50; x < canvas.width; x += 50) line(context, x, 0, x, canvas.height);
    for (let y = 50; y < canvas.height; y += 50) line(context, 0, y, canvas.width, y);

    const all = players();
    for (const id of shown.keys()) if (!(id in all)) shown.delete(id);
    if (target && all[client.playerId]) {
      context.strokeStyle = "#ffd166";
      context.beginPath();
      context.arc(target.x, target.y, 5, 0, 2 * Math.PI);
      context.stroke();
    }
    // Others first, so your own avatar is drawn on top.
    const ids = Object.keys(all).sort((a, b) => (a === client.playerId) - (b === client.playerId));
    for (const id of ids) {
      const p = all[id];
      const at = shown.get(id) ?? { x: p.x, y: p.y };
      at.x += (p.x - at.x) * ease;
      at.y += (p.y - at.y) * ease;
      shown.set(id, at);
      avatar(id, p, at);
    }
    frame = requestAnimationFrame(draw);
  }

  function avatar(id, p, at) {
    const self = id === client.playerId;
    context.globalAlpha = p.connected ? 1 : 0.5;
    context.fillStyle = p.connected ? colour(id) : "#8a8a8a";
    context.beginPath();
    context.arc(at.x, at.y, RADIUS, 0, 2 * Math.PI);
    context.fill();
    if (self) {
      context.lineWidth = 4;
      context.strokeStyle = "#ffd166";
      context.stroke();
    }
    context.fillStyle = self ? "#ffd166" : "#cfd8e3";
    context.font = `${self ? "bold " : ""}12px system-ui, sans-serif`;
    context.textAlign = "center";
    context.fillText(self ? "you" : p.connected ? id : `${id} (away)`, at.x, at.y - RADIUS - 6);
    context.globalAlpha = 1;
  }

  const off = client.on("state", renderList);
  renderList();
  frame = requestAnimationFrame(draw);

  return () => {
    off();
    cancelAnimationFrame(frame);
  };
}
