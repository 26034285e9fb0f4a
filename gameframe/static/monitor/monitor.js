// The operator's page: the admin API (/admin/...) with the token kept for this tab.
// Rooms of this node stream live (GET /admin/rooms/ID/events, read with fetch);
// rooms of other nodes are polled every 500 ms (GET /admin/rooms/ID).

import { applyPatch } from "../gameframe.js";

const TOKEN_KEY = "gameframe-admin-token";
const LIST_EVERY_MS = 2000;
const POLL_EVERY_MS = 500;

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code);
    this.status = status;
    this.code = code;
  }
}

let token = sessionStorage.getItem(TOKEN_KEY);
let listTimer = null;
let watching = null; // { roomId, stop() }

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    cache: "no-store",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    if (response.status === 401) signOut("the token was refused");
    throw new ApiError(response.status, data.error, data.message);
  }
  return data;
}

function setStatus(status, text) {
  $("status").dataset.status = status;
  $("status").textContent = text;
}

function showError(error) {
  $("error").hidden = !error;
  $("error").textContent = error ? `${error.code || "error"}: ${error.message}` : "";
}

function notice(text) {
  $("notice").textContent = text;
}

// -- signing in --------------------------------------------------------------------

function signOut(why) {
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  clearInterval(listTimer);
  stopWatching();
  $("login").hidden = false;
  $("overview").hidden = true;
  $("room").hidden = true;
  $("forget").hidden = true;
  setStatus("disconnected", why || "not signed in");
}

async function signIn() {
  $("login").hidden = true;
  $("overview").hidden = false;
  $("forget").hidden = false;
  await refreshRooms();
  if (!token) return; // refused
  clearInterval(listTimer);
  listTimer = setInterval(refreshRooms, LIST_EVERY_MS);
}

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("token").value.trim();
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token").value = "";
  signIn();
});

$("forget").addEventListener("click", () => signOut());

// -- the room list -------------------------------------------------------------------

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

async function refreshRooms() {
  if (!token) return;
  let listing;
  try {
    listing = await api("GET", "/admin/rooms");
  } catch (error) {
    if (token) setStatus("reconnecting", "the server does not answer");
    return;
  }
  setStatus("connected", "signed in");
  const body = $("rooms").querySelector("tbody");
  body.replaceChildren();
  for (const room of listing.rooms) {
    const row = document.createElement("tr");
    row.dataset.roomId = room.room_id;
    row.dataset.selected = String(watching !== null && watching.roomId === room.room_id);
    row.append(
      cell(room.room_id),
      cell(room.room),
      cell(room.node),
      cell(room.max_players === null ? `${room.players}` : `${room.players}/${room.max_players}`),
      cell(room.locked ? "locked" : room.full ? "full" : ""),
      cell(room.private ? "private" : ""),
      cell(room.tick_rate === null ? "" : `${room.tick_rate}/s`),
      cell(`${room.tick_overruns}`),
    );
    const open = document.createElement("button");
    open.type = "button";
    open.className = "watch";
    open.textContent = "Watch";
    open.addEventListener("click", () => watch(room.room_id));
    const last = document.createElement("td");
    last.append(open);
    row.append(last);
    body.append(row);
  }
  $("rooms-empty").hidden = listing.rooms.length > 0;
  $("unreachable").hidden = listing.unreachable.length === 0;
  $("unreachable").textContent = `Nodes not answering: ${listing.unreachable.join(", ")}`;
}

// -- one room, live --------------------------------------------------------------------

function stopWatching() {
  if (watching !== null) watching.stop();
  watching = null;
}

function watch(roomId) {
  stopWatching();
  showError(null);
  notice("");
  $("room").hidden = false;
  $("room-id").textContent = roomId;
  $("room-id").dataset.roomId = roomId;
  $("players").querySelector("tbody").replaceChildren();
  showState(null, "");
  const view = { roomId, stopped: false, abort: new AbortController(), timer: null };
  view.stop = () => {
    view.stopped = true;
    view.abort.abort();
    clearTimeout(view.timer);
  };
  watching = view;
  stream(view).catch((error) => {
    if (!view.stopped) poll(view);
  });
}

function showState(state, seq) {
  $("state").textContent = JSON.stringify(state, null, 2);
  $("state").dataset.seq = String(seq);
}

function showRoom(room) {
  $("room-type").textContent = `${room.room} on ${room.node}`;
  const flags = [
    `${room.players} player(s)`,
    room.locked ? "locked" : "unlocked",
    room.private ? "private" : "public",
    room.tick_rate === null ? "no ticks" : `${room.tick_rate} ticks/s, ${room.tick_overruns} overruns`,
  ];
  $("room-info").textContent = flags.join(" · ");
  $("room-info").dataset.locked = String(room.locked);
  const body = $("players").querySelector("tbody");
  body.replaceChildren();
  for (const seat of room.seats) {
    const row = document.createElement("tr");
    row.dataset.playerId = seat.player_id;
    row.append(cell(seat.player_id), cell(seat.status), cell(seat.transport ?? ""), cell(seat.address ?? ""));
    const kick = document.createElement("button");
    kick.type = "button";
    kick.className = "kick";
    kick.textContent = "Kick";
    kick.addEventListener("click", () => act("kick", { player_id: seat.player_id }));
    const last = document.createElement("td");
    last.append(kick);
    row.append(last);
    body.append(row);
  }
}

function ended(view) {
  if (view.stopped) return;
  view.stop();
  notice(`Room ${view.roomId} has ended.`);
  $("room").hidden = true;
  refreshRooms();
}

// The push stream of a room of this node; throws if the room is elsewhere.
async function stream(view) {
  const response = await fetch(`/admin/rooms/${encodeURIComponent(view.roomId)}/events`, {
    headers: { Authorization: `Bearer ${token}` },
    cache: "no-store",
    signal: view.abort.signal,
  });
  if (!response.ok) {
    const data = await response.json().catch(() => ({}));
    if (response.status === 404) return ended(view);
    throw new ApiError(response.status, data.error, data.message);
  }
  $("live-mode").textContent = "(live stream)";
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let state = null;
  let seq = 0;
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch (error) {
      return; // aborted: another room was picked
    }
    if (chunk.done) break;
    buffer += chunk.value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1];
      const data = JSON.parse(/^data: (.*)$/m.exec(block)?.[1] ?? "null");
      if (event === "room") showRoom(data);
      else if (event === "state") {
        state = data.state;
        seq = data.seq;
        showState(state, seq);
      } else if (event === "patch") {
        if (data.seq !== seq + 1) throw new Error("a gap in the stream");
        state = applyPatch(state, data.patch);
        seq = data.seq;
        showState(state, seq);
      } else if (event === "end") return ended(view);
    }
  }
  if (!view.stopped) throw new Error("the stream closed");
}

// A room of another node (or a stream that broke): its details every 500 ms.
async function poll(view) {
  $("live-mode").textContent = "(polled)";
  let seq = 0;
  let last = "";
  while (!view.stopped) {
    try {
      const room = await api("GET", `/admin/rooms/${encodeURIComponent(view.roomId)}`);
      if (view.stopped) return;
      showRoom(room);
      const text = JSON.stringify(room.state);
      if (text !== last) {
        last = text;
        showState(room.state, seq++);
      }
    } catch (error) {
      if (error.status === 404) return ended(view);
      showError(error);
    }
    await new Promise((resolve) => (view.timer = setTimeout(resolve, POLL_EVERY_MS)));
  }
}

// -- the operator's buttons --------------------------------------------------------------

async function act(operation, body) {
  if (watching === null) return;
  const roomId = watching.roomId;
  showError(null);
  try {
    await api("POST", `/admin/rooms/${encodeURIComponent(roomId)}/${operation}`, body);
    // Not over the notice that the room ended (a kick of its last player ends it).
    if (watching !== null && watching.roomId === roomId && !watching.stopped) {
      notice(`${operation}: done`);
    }
  } catch (error) {
    showError(error);
  }
  refreshRooms();
}

$("lock").addEventListener("click", () => act("lock"));
$("unlock").addEventListener("click", () => act("unlock"));
$("dispose").addEventListener("click", () => act("dispose"));
$("broadcast-form").addEventListener("submit", (event) => {
  event.preventDefault();
  let message;
  try {
    message = JSON.parse($("broadcast-message").value);
  } catch (error) {
    showError({ code: "bad_arguments", message: "the message is not JSON" });
    return;
  }
  act("broadcast", message);
});

if (token) signIn();
else signOut();
