/**
 * The demo's lobby: one gameframe Client for the page, the room types and
 * the live room list (GET /rooms every 2 s), and the room views.
 *
 * URLs: `#play=arena` joins or creates a room of that type, `#join=ROOM_ID`
 * joins that room (the page keeps this in the address bar while playing, so
 * the link opens the same room in another tab; a reload takes the seat back
 * with the token kept in sessionStorage).
 *
 * For tests: `window.gameframeClient` is the page's Client.
 */
import { connect } from "./gameframe.js";
import * as arena from "./arena.js";
import * as world from "./world.js";
import * as chat from "./chat.js";
import * as generic from "./generic.js";
import * as tictactoe from "./tictactoe.js";

/** Room type → view module (`mount(element, client)` → unmount function). */
const VIEWS = { chat, tictactoe, arena, world };
const LABELS = { chat: "Chat", tictactoe: "Tic-tac-toe", arena: "Arena", world: "World" };
const REFRESH_MS = 2000;
const SEAT_KEY = "gameframe.seat";

const $ = (selector) => document.querySelector(selector);
const label = (type) => LABELS[type] ?? type;

const client = connect();
window.gameframeClient = client;

let view = null; // {roomId, unmount} of the mounted room view
let refreshTimer = null;
let lastListing = "";

// -- connection status ---------------------------------------------------------

function setStatus(status, text) {
  const el = $("#status");
  el.dataset.status = status;
  el.textContent = text;
}

client.on("open", () => {
  setStatus("connected", "connected");
  showWhoami();
});
client.on("close", ({ reconnecting, retry }) => {
  if (!reconnecting) setStatus("disconnected", "disconnected");
  else setStatus("reconnecting", retry ? "the server is restarting… reconnecting…" : "connection lost… reconnecting…");
});
client.on("reconnecting", ({ attempt, delay }) =>
  setStatus("reconnecting", `reconnecting… (attempt ${attempt}, in ${(delay / 1000).toFixed(1)} s)`));
client.on("reconnect_failed", (error) => {
  if (error.code === "gave_up") setStatus("disconnected", "disconnected");
  showError(`Could not get back into the room: ${error.message}`);
  showLobby();
});
client.on("disconnect", (message) => {
  // "retry": the server is restarting and keeps the seat; the client comes back by itself.
  if (!message.retry) showError(`The server closed the connection: ${message.message}`);
});
client.on("error", (message) => showError(message.message));

function showWhoami() {
  $("#whoami").textContent = client.playerId ? `you are ${client.playerId}` : "";
  $("#whoami").dataset.playerId = client.playerId ?? "";
}

function showError(text) {
  const el = $("#error");
  el.textContent = text;
  el.hidden = !text;
}

// -- entering and leaving rooms ------------------------------------------------

client.on("joined", (joined) => {
  showError("");
  showWhoami();
  sessionStorage.setItem(SEAT_KEY, JSON.stringify({ roomId: joined.room_id, token: joined.token }));
  history.replaceState(null, "", `#join=${joined.room_id}`);
  if (view && view.roomId === joined.room_id) return; // reconnected: keep the view
  unmountView();
  $("#lobby").hidden = true;
  $("#game").hidden = false;
  $("#room-type").textContent = label(joined.room);
  $("#room-id").textContent = joined.room_id;
  $("#room-id").dataset.roomId = joined.room_id;
  $("#room-link").href = `#join=${joined.room_id}`;
  const element = $("#view");
  element.replaceChildren();
  element.dataset.room = joined.room;
  const module = VIEWS[joined.room] ?? generic;
  view = { roomId: joined.room_id, unmount: module.mount(element, client) };
  stopRefreshing();
});

client.on("left", (left) => {
  if (left.reason !== "leave") showError(`You left the room: ${left.reason}`);
  showLobby();
});

function unmountView() {
  if (view) view.unmount();
  view = null;
}

function showLobby() {
  unmountView();
  sessionStorage.removeItem(SEAT_KEY);
  history.replaceState(null, "", location.pathname);
  $("#view").replaceChildren();
  $("#game").hidden = true;
  $("#lobby").hidden = false;
  showWhoami();
  startRefreshing();
}

$("#leave").addEventListener("click", () => client.leave().catch((error) => showError(error.message)));

/** Run a join request with the lobby's buttons disabled meanwhile. */
async function entering(request) {
  for (const button of document.querySelectorAll("#lobby button")) button.disabled = true;
  try {
    await request();
  } catch (error) {
    showError(error.message);
  } finally {
    for (const button of document.querySelectorAll("#lobby button")) button.disabled = button.dataset.full === "true";
  }
}

// -- the room types and the live room list -------------------------------------

async function fetchListing() {
  try {
    const response = await fetch("rooms", { cache: "no-store" });
    if (!response.ok) throw new Error(`GET /rooms: ${response.status}`);
    return await response.json();
  } catch {
    // No HTTP listing: ask over the socket instead.
    return { types: Object.keys(VIEWS), rooms: await client.list() };
  }
}

async function refresh() {
  try {
    const listing = await fetchListing();
    const text = JSON.stringify(listing);
    if (text !== lastListing && !$("#lobby").hidden) {
      lastListing = text;
      renderTypes(listing.types ?? []);
      renderRooms(listing.rooms ?? []);
    }
  } catch {
    // Disconnected: the next refresh tries again.
  }
}

function renderTypes(types) {
  const holder = $("#room-types");
  const shown = [...holder.querySelectorAll("button")].map((b) => b.dataset.roomType);
  if (JSON.stringify(shown) === JSON.stringify(types)) return;
  holder.replaceChildren(
    ...types.map((type) => {
      const button = document.createElement("button");
      button.type = "button";
      button.id = `play-${type}`;
      button.dataset.roomType = type;
      button.textContent = label(type);
      button.addEventListener("click", () => entering(() => client.join_or_create(type)));
      return button;
    }),
  );
}

function renderRooms(rooms) {
  $("#rooms-empty").hidden = rooms.length > 0;
  $("#rooms tbody").replaceChildren(
    ...rooms.map((room) => {
      const row = document.createElement("tr");
      row.dataset.roomId = room.room_id;
      row.dataset.roomType = room.room;
      const full = room.locked || (room.max_players != null && room.players >= room.max_players);
      const cells = [room.room_id, label(room.room), `${room.players}/${room.max_players ?? "∞"}`];
      for (const text of cells) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.append(cell);
      }
      const button = document.createElement("button");
      button.type = "button";
      button.className = "join";
      button.dataset.roomId = room.room_id;
      button.dataset.full = String(Boolean(full));
      button.disabled = Boolean(full);
      button.textContent = room.full ? "Full" : room.locked ? "Locked" : "Join";
      button.addEventListener("click", () => entering(() => client.join(room.room_id)));
      const action = document.createElement("td");
      action.append(button);
      row.append(action);
      return row;
    }),
  );
}

function startRefreshing() {
  stopRefreshing();
  lastListing = "";
  refresh();
  refreshTimer = setInterval(refresh, REFRESH_MS);
}

function stopRefreshing() {
  clearInterval(refreshTimer);
  refreshTimer = null;
}

// -- start -----------------------------------------------------------------------

/** Follow `#play=TYPE` or `#join=ROOM_ID` (taking a held seat back after a reload). */
function followHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  const roomId = params.get("join");
  const type = params.get("play");
  if (roomId) {
    const seat = JSON.parse(sessionStorage.getItem(SEAT_KEY) || "null");
    if (seat && seat.roomId === roomId) {
      entering(() => client.reconnect(seat.token).catch(() => client.join(roomId)));
    } else {
      entering(() => client.join(roomId));
    }
  } else if (type) {
    entering(() => client.join_or_create(type));
  }
}

window.addEventListener("hashchange", () => {
  if (client.roomId === null) followHash();
});
startRefreshing();
followHash();
