// Unit tests of gameframe.js: the JSON Patch applier, the state mirror, and
// the Client against a fake WebSocket. Run: node --test tests/js/
import { test, mock } from "node:test";
import assert from "node:assert/strict";

import {
  Client,
  PatchError,
  StateMirror,
  applyPatch,
  connect,
  decodeOps,
  parsePointer,
} from "../../gameframe/static/gameframe.js";

// ---------------------------------------------------------------------------
// JSON Pointer and JSON Patch

test("pointers unescape ~1 and ~0 in that order", () => {
  assert.deepEqual(parsePointer(""), []);
  assert.deepEqual(parsePointer("/a~1b/m~0n/~01"), ["a/b", "m~n", "~1"]);
  assert.deepEqual(parsePointer("/"), [""]);
  assert.throws(() => parsePointer("a"), PatchError);
  assert.throws(() => parsePointer("/a~2"), PatchError);
});

test("add: object members, array inserts, '-' appends, root replace", () => {
  assert.deepEqual(applyPatch({ a: 1 }, [{ op: "add", path: "/b", value: 2 }]), { a: 1, b: 2 });
  assert.deepEqual(applyPatch([1, 3], [{ op: "add", path: "/1", value: 2 }]), [1, 2, 3]);
  assert.deepEqual(applyPatch([1], [{ op: "add", path: "/-", value: 2 }]), [1, 2]);
  assert.deepEqual(applyPatch([1], [{ op: "add", path: "/1", value: 2 }]), [1, 2]);
  assert.deepEqual(applyPatch({ a: 1 }, [{ op: "add", path: "", value: [7] }]), [7]);
  assert.throws(() => applyPatch([1], [{ op: "add", path: "/3", value: 0 }]), PatchError);
  assert.throws(() => applyPatch([1], [{ op: "add", path: "/01", value: 0 }]), PatchError);
  assert.throws(() => applyPatch({}, [{ op: "add", path: "/a/b", value: 0 }]), PatchError);
  assert.throws(() => applyPatch({}, [{ op: "add", path: "/a" }]), PatchError);
});

test("remove and replace", () => {
  assert.deepEqual(applyPatch({ a: 1, b: 2 }, [{ op: "remove", path: "/a" }]), { b: 2 });
  assert.deepEqual(applyPatch([1, 2, 3], [{ op: "remove", path: "/0" }]), [2, 3]);
  assert.deepEqual(applyPatch({ a: { b: 1 } }, [{ op: "replace", path: "/a/b", value: null }]), { a: { b: null } });
  assert.deepEqual(applyPatch([1, 2], [{ op: "replace", path: "/1", value: 9 }]), [1, 9]);
  assert.equal(applyPatch({ a: 1 }, [{ op: "replace", path: "", value: 5 }]), 5);
  assert.throws(() => applyPatch({}, [{ op: "remove", path: "/x" }]), PatchError);
  assert.throws(() => applyPatch([1], [{ op: "remove", path: "/1" }]), PatchError);
  assert.throws(() => applyPatch({}, [{ op: "replace", path: "/x", value: 1 }]), PatchError);
  assert.throws(() => applyPatch({}, [{ op: "remove", path: "" }]), PatchError);
});

test("move, copy and test", () => {
  assert.deepEqual(applyPatch({ a: { b: 1 }, c: {} }, [{ op: "move", from: "/a/b", path: "/c/d" }]), { a: {}, c: { d: 1 } });
  assert.deepEqual(applyPatch([1, 2, 3, 4], [{ op: "move", from: "/1", path: "/3" }]), [1, 3, 4, 2]);
  assert.deepEqual(applyPatch({ a: 1 }, [{ op: "move", from: "/a", path: "/a" }]), { a: 1 });
  assert.throws(() => applyPatch({ a: { b: 1 } }, [{ op: "move", from: "/a", path: "/a/b/c" }]), PatchError);
  const copied = applyPatch({ a: { x: [1] } }, [{ op: "copy", from: "/a", path: "/b" }]);
  assert.deepEqual(copied, { a: { x: [1] }, b: { x: [1] } });
  assert.notEqual(copied.a, copied.b, "copy must not alias");
  const doc = { a: [1, { b: "x" }], n: null };
  assert.equal(applyPatch(doc, [{ op: "test", path: "/a", value: [1, { b: "x" }] }, { op: "test", path: "/n", value: null }]), doc);
  assert.throws(() => applyPatch(doc, [{ op: "test", path: "/a/1/b", value: "y" }]), PatchError);
  assert.throws(() => applyPatch({ a: {} }, [{ op: "test", path: "/a", value: [] }]), PatchError);
  assert.throws(() => applyPatch({}, [{ op: "frobnicate", path: "/a" }]), PatchError);
});

test("RFC 6901 examples resolve", () => {
  const doc = { foo: ["bar", "baz"], "": 0, "a/b": 1, "c%d": 2, "e^f": 3, "g|h": 4, "i\\j": 5, 'k"l': 6, " ": 7, "m~n": 8 };
  const expect = { "/foo/0": "bar", "/": 0, "/a~1b": 1, "/c%d": 2, "/e^f": 3, "/g|h": 4, "/i\\j": 5, '/k"l': 6, "/ ": 7, "/m~0n": 8 };
  for (const [path, value] of Object.entries(expect)) {
    assert.doesNotThrow(() => applyPatch(doc, [{ op: "test", path, value }]), path);
  }
});

test("values are copied out of the patch, and __proto__ is a plain key", () => {
  const value = { deep: [1] };
  const doc = applyPatch({}, [{ op: "add", path: "/v", value }]);
  value.deep.push(2);
  assert.deepEqual(doc.v, { deep: [1] });
  const evil = applyPatch({}, [{ op: "add", path: "/__proto__", value: { polluted: true } }]);
  assert.equal({}.polluted, undefined);
  assert.equal(Object.getPrototypeOf(evil), Object.prototype);
  assert.deepEqual(Object.keys(evil), ["__proto__"]);
  assert.throws(() => applyPatch({}, [{ op: "remove", path: "/toString" }]), PatchError);
});

// ---------------------------------------------------------------------------
// StateMirror

test("the mirror applies patches in seq order and goes stale on a gap", () => {
  const mirror = new StateMirror();
  assert.equal(mirror.handle({ action: "said" }), false);
  assert.equal(mirror.handle({ action: "patch", seq: 1, patch: [] }), true);
  assert.equal(mirror.state, null, "a patch before any state is ignored");
  const state = { players: { a: { x: 1 } } };
  mirror.handle({ action: "state", seq: 4, state });
  assert.notEqual(mirror.state, state, "the mirror owns a copy");
  mirror.handle({ action: "patch", seq: 5, patch: [{ op: "replace", path: "/players/a/x", value: 2 }] });
  assert.deepEqual(mirror.state, { players: { a: { x: 2 } } });
  assert.equal(mirror.seq, 5);
  mirror.handle({ action: "patch", seq: 7, patch: [{ op: "remove", path: "/players/a" }] });
  assert.equal(mirror.stale, true);
  mirror.handle({ action: "patch", seq: 6, patch: [] });
  assert.equal(mirror.seq, 5, "nothing applies while stale");
  mirror.handle({ action: "state", seq: 9, state: { players: {} } });
  assert.equal(mirror.stale, false);
  assert.deepEqual(mirror.state, { players: {} });
});

test("a patch that does not apply makes the mirror stale", () => {
  const mirror = new StateMirror();
  mirror.handle({ action: "state", seq: 0, state: {} });
  mirror.handle({ action: "patch", seq: 1, patch: [{ op: "remove", path: "/missing" }] });
  assert.equal(mirror.stale, true);
});

test("compact patches: paths numbered in order, reset and state empty the table", () => {
  const paths = [];
  assert.deepEqual(decodeOps(["/a", 1, ["/b/0", { c: 2 }, 1], [0], "", 3], paths), [
    { op: "replace", path: "/a", value: 1 },
    { op: "add", path: "/b/0", value: { c: 2 } },
    { op: "remove", path: "/a" },
    { op: "replace", path: "", value: 3 },
  ]);
  assert.deepEqual(paths, ["/a", "/b/0", ""]);
  assert.deepEqual(decodeOps([["/x", [1]], 0, [2]], []), [
    { op: "replace", path: "/x", value: [1] },
    { op: "replace", path: "/x", value: [2] },
  ], "a replace may come as one array element, and its value may be an array");
  for (const bad of [[[5, 1]], [["/a", 1, 2]], [[]], ["/a"], [[true, 1]], [[-1]], [[0.5]], [5, 1], [null, 1]]) {
    assert.throws(() => decodeOps(bad, []), PatchError);
  }
  const mirror = new StateMirror();
  mirror.handle({ action: "state", seq: 0, state: { a: 0, l: [] } });
  mirror.handle({ action: "patch", seq: 1, ops: ["/a", 1, ["/l/0", "x", 1]] });
  mirror.handle({ action: "patch", seq: 2, ops: [0, 2, [1]] });
  assert.deepEqual(mirror.state, { a: 2, l: [] });
  mirror.handle({ action: "patch", seq: 3, reset: true, ops: [["/l/0", "y", 1], [0, "z", 1]] });
  assert.deepEqual(mirror.state, { a: 2, l: ["z", "y"] });
  assert.deepEqual(mirror.paths, ["/l/0"]);
  mirror.handle({ action: "patch", seq: 4, ops: [1, 0] });
  assert.equal(mirror.stale, true, "an unknown number is a gap");
  mirror.handle({ action: "state", seq: 4, state: {} });
  assert.deepEqual(mirror.paths, []);
});

// ---------------------------------------------------------------------------
// Client, against a fake WebSocket

class FakeSocket {
  static all = [];
  constructor(url) {
    this.url = url;
    this.sent = [];
    this.closed = false;
    FakeSocket.all.push(this);
  }
  send(data) {
    if (this.closed) throw new Error("send on a closed socket");
    this.sent.push(JSON.parse(data));
  }
  close() {
    this.drop(1000);
  }
  // Test helpers: the server's side.
  deliver(message) {
    this.onmessage({ data: JSON.stringify(message) });
  }
  drop(code = 1006) {
    if (this.closed) return;
    this.closed = true;
    this.onclose({ code, reason: "" });
  }
  last() {
    return this.sent[this.sent.length - 1];
  }
}

function fakeClient(options = {}) {
  FakeSocket.all = [];
  const client = connect("ws://game.test/ws", { WebSocket: FakeSocket, ...options });
  const socket = FakeSocket.all[0];
  socket.deliver({ action: "welcome", player_id: "lobby1" });
  return { client, socket };
}

function joinArena(client, socket) {
  const joining = client.join_or_create("arena", { mode: "ffa" });
  const request = socket.last();
  assert.deepEqual(request, { action: "join_or_create", room: "arena", options: { mode: "ffa" }, id: request.id });
  socket.deliver({ action: "joined", room: "arena", room_id: "R1", player_id: "p1", players: ["p1"], token: "T1", id: request.id });
  socket.deliver({ action: "state", seq: 0, state: { players: { p1: { x: 0, y: 0, connected: true } } } });
  return joining;
}

test("encoding: compact is asked for by join, create, join_or_create and reconnect", () => {
  const { client, socket } = fakeClient({ encoding: "compact" });
  client.join_or_create("arena", { mode: "ffa" });
  client.create("arena");
  client.join("R1");
  client.reconnect("T1");
  assert.deepEqual(socket.sent.map((m) => [m.action, m.encoding]), [
    ["join_or_create", "compact"], ["create", "compact"], ["join", "compact"], ["reconnect", "compact"],
  ]);
  const plain = fakeClient({ encoding: "json" });
  plain.client.join("R1");
  assert.equal("encoding" in plain.socket.last(), false, "json is the default: nothing is added");
});

test("connect() takes a url and options, or options alone in a page", () => {
  FakeSocket.all = [];
  const client = connect("ws://x/ws", { WebSocket: FakeSocket, reconnect: false });
  assert.equal(client.url, "ws://x/ws");
  assert.equal(client.options.reconnect, false);
  globalThis.location = { protocol: "https:", host: "example.org:8443" };
  try {
    assert.equal(connect({ WebSocket: FakeSocket }).url, "wss://example.org:8443/ws");
    globalThis.location = { protocol: "http:", host: "localhost:8080" };
    assert.equal(connect(undefined, { WebSocket: FakeSocket }).url, "ws://localhost:8080/ws");
  } finally {
    delete globalThis.location;
  }
});

test("messages wait for the welcome, then go out in order", async () => {
  FakeSocket.all = [];
  const client = new Client("ws://x/ws", { WebSocket: FakeSocket });
  client.send("hello", { n: 1 });
  const socket = FakeSocket.all[0];
  assert.deepEqual(socket.sent, []);
  socket.deliver({ action: "welcome", player_id: "abc" });
  assert.deepEqual(socket.sent, [{ action: "hello", n: 1 }]);
  assert.equal(client.playerId, "abc");
  assert.equal((await client.ready).player_id, "abc");
});

test("join resolves with joined and sets the session fields; state events follow the mirror", async () => {
  const { client, socket } = fakeClient();
  const states = [];
  client.on("state", (state, message) => states.push([structuredClone(state), message.action]));
  const joined = await joinArena(client, socket);
  assert.equal(joined.room_id, "R1");
  assert.equal(client.roomId, "R1");
  assert.equal(client.room, "arena");
  assert.equal(client.playerId, "p1");
  assert.equal(client.token, "T1");
  socket.deliver({ action: "patch", seq: 1, patch: [{ op: "replace", path: "/players/p1/x", value: 5 }] });
  assert.equal(client.state.players.p1.x, 5);
  assert.deepEqual(states.map(([, action]) => action), ["state", "patch"]);
  assert.equal(states[0][0].players.p1.x, 0);
});

test("a seq gap sends one sync; the next state heals the mirror", async () => {
  const { client, socket } = fakeClient();
  await joinArena(client, socket);
  socket.deliver({ action: "patch", seq: 2, patch: [] });
  socket.deliver({ action: "patch", seq: 3, patch: [] });
  assert.deepEqual(socket.sent.filter((m) => m.action === "sync"), [{ action: "sync" }]);
  assert.equal(client.mirror.stale, true);
  socket.deliver({ action: "state", seq: 3, state: { players: {} } });
  assert.equal(client.mirror.stale, false);
  socket.deliver({ action: "patch", seq: 5, patch: [] });
  assert.equal(socket.sent.filter((m) => m.action === "sync").length, 2);
});

test("request() uses fresh ids; errors reject with .code; * and action listeners fire", async () => {
  const { client, socket } = fakeClient();
  const seen = [];
  client.on("*", (m) => seen.push(["*", m.action]));
  const offSaid = client.on("said", (m) => seen.push(["said", m.text]));
  const a = client.request("place", { cell: 4 });
  const b = client.request("place", { cell: 4 });
  const [ra, rb] = socket.sent.slice(-2);
  assert.notEqual(ra.id, rb.id);
  socket.deliver({ action: "error", code: "cell_taken", message: "cell 4 is taken", id: rb.id });
  socket.deliver({ action: "result", result: null, id: ra.id });
  assert.deepEqual(await a, { action: "result", result: null, id: ra.id });
  await assert.rejects(b, (error) => error.code === "cell_taken" && error.message === "cell 4 is taken");
  socket.deliver({ action: "said", player_id: "x", text: "hi" });
  offSaid();
  socket.deliver({ action: "said", player_id: "x", text: "again" });
  assert.deepEqual(seen, [["*", "error"], ["*", "result"], ["*", "said"], ["said", "hi"], ["*", "said"]]);
});

test("list() resolves with the rooms", async () => {
  const { client, socket } = fakeClient();
  const listing = client.list("chat");
  const request = socket.last();
  assert.equal(request.room, "chat");
  socket.deliver({ action: "rooms", rooms: [{ room_id: "A" }], id: request.id });
  assert.deepEqual(await listing, [{ room_id: "A" }]);
});

test("ping() resolves with the round trip and authenticate() with its reply", async () => {
  const { client, socket } = fakeClient();
  const rtt = client.ping();
  const ping = socket.last();
  assert.equal(ping.action, "ping");
  socket.deliver({ action: "pong", t: ping.t, id: ping.id });
  assert.ok((await rtt) >= 0);
  const auth = client.authenticate("secret");
  const request = socket.last();
  assert.deepEqual([request.action, request.token], ["authenticate", "secret"]);
  socket.deliver({ action: "error", code: "unauthorized", message: "no", id: request.id });
  await assert.rejects(auth, (e) => e.code === "unauthorized");
});

test("a drop reconnects with backoff and takes the seat back with the token", async () => {
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    const { client, socket } = fakeClient({ backoff: { initial: 100, max: 1000, factor: 2, jitter: 0 } });
    await joinArena(client, socket);
    const events = [];
    for (const name of ["close", "reconnecting", "reconnected", "reconnect_failed"]) {
      client.on(name, (detail) => events.push([name, detail]));
    }
    const pending = client.request("score");
    socket.drop();
    await assert.rejects(pending, (e) => e.code === "disconnected");
    assert.deepEqual(events.map(([name]) => name), ["close", "reconnecting"]);
    assert.deepEqual(events[1][1], { attempt: 1, delay: 100 });
    client.send("move", { x: 1, y: 2 }); // queued while down
    const queuedRequest = client.request("score");

    mock.timers.tick(99);
    assert.equal(FakeSocket.all.length, 1);
    mock.timers.tick(1);
    assert.equal(FakeSocket.all.length, 2);
    const second = FakeSocket.all[1];
    second.drop(); // the server is still down: queued requests wait on
    assert.deepEqual(events.at(-1), ["reconnecting", { attempt: 2, delay: 200 }]);
    mock.timers.tick(200);
    const third = FakeSocket.all[2];
    assert.deepEqual(third.sent, []);
    third.deliver({ action: "welcome", player_id: "new-session" });
    const [reconnect, move, score] = third.sent;
    assert.deepEqual(reconnect, { action: "reconnect", token: "T1", id: reconnect.id });
    assert.deepEqual(move, { action: "move", x: 1, y: 2 }, "queued messages follow the reconnect");
    assert.equal(score.action, "score");
    third.deliver({ action: "result", result: 3, id: score.id });
    assert.equal((await queuedRequest).result, 3);
    assert.equal(client.playerId, "p1");
    third.deliver({ action: "joined", room: "arena", room_id: "R1", player_id: "p1", players: ["p1"], token: "T2", id: reconnect.id });
    third.deliver({ action: "state", seq: 7, state: { players: { p1: { x: 9, y: 9, connected: true } } } });
    await Promise.resolve();
    assert.equal(events.at(-1)[0], "reconnected");
    assert.equal(client.token, "T2");
    assert.equal(client.state.players.p1.x, 9);

    third.drop(); // attempts start again from the first delay
    assert.deepEqual(events.at(-1), ["reconnecting", { attempt: 1, delay: 100 }]);
  } finally {
    mock.timers.reset();
  }
});

test("delays grow to the cap, with jitter below the ceiling", () => {
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    const { client, socket } = fakeClient({ backoff: { initial: 100, max: 500, factor: 3, jitter: 0.5 } });
    const delays = [];
    client.on("reconnecting", ({ delay }) => delays.push(delay));
    socket.drop();
    for (let i = 0; i < 5; i++) {
      mock.timers.tick(delays.at(-1));
      FakeSocket.all.at(-1).drop();
    }
    const ceilings = [100, 300, 500, 500, 500, 500];
    assert.equal(delays.length, 6);
    delays.forEach((d, i) => assert.ok(d >= ceilings[i] / 2 && d <= ceilings[i], `delay ${i}: ${d}`));
  } finally {
    mock.timers.reset();
  }
});

test("invalid_token gives up: reconnect_failed, out of the room, no more retries", async () => {
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    const { client, socket } = fakeClient({ backoff: { initial: 10, jitter: 0 } });
    await joinArena(client, socket);
    const failed = new Promise((resolve) => client.on("reconnect_failed", resolve));
    socket.drop();
    mock.timers.tick(10);
    const next = FakeSocket.all[1];
    next.deliver({ action: "welcome", player_id: "fresh" });
    next.deliver({ action: "error", code: "invalid_token", message: "expired", id: next.sent[0].id });
    const error = await failed;
    assert.equal(error.code, "invalid_token");
    assert.equal(client.roomId, null);
    assert.equal(client.token, null);
    assert.equal(client.state, null);
    assert.equal(client.playerId, "fresh");
    assert.equal(client.connected, true, "the socket stays open for the lobby");
  } finally {
    mock.timers.reset();
  }
});

test("no reconnection after close(), after being replaced, or when disabled", async () => {
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    let { client, socket } = fakeClient({ backoff: { initial: 10, jitter: 0 } });
    const pending = client.request("list");
    client.close();
    await assert.rejects(pending, (e) => e.code === "closed");
    assert.throws(() => client.send("say", { text: "x" }), (e) => e.code === "closed");
    mock.timers.tick(1000);
    assert.equal(FakeSocket.all.length, 1);

    ({ client, socket } = fakeClient({ backoff: { initial: 10, jitter: 0 } }));
    socket.deliver({ action: "disconnect", code: "replaced", message: "elsewhere" });
    socket.drop();
    mock.timers.tick(1000);
    assert.equal(FakeSocket.all.length, 1);

    ({ client, socket } = fakeClient({ reconnect: false }));
    const closes = [];
    client.on("close", (c) => closes.push(c.reconnecting));
    socket.drop();
    mock.timers.tick(1000);
    assert.deepEqual(closes, [false]);
    assert.equal(FakeSocket.all.length, 1);
  } finally {
    mock.timers.reset();
  }
});

test("leave() forgets the token and resets the room; the next drop only reopens the lobby socket", async () => {
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    const { client, socket } = fakeClient({ backoff: { initial: 10, jitter: 0 } });
    await joinArena(client, socket);
    const leaving = client.leave();
    const request = socket.last();
    socket.deliver({ action: "left", room_id: "R1", reason: "leave", id: request.id });
    assert.equal((await leaving).reason, "leave");
    assert.equal(client.roomId, null);
    assert.equal(client.state, null);
    const reconnected = [];
    client.on("reconnected", (joined) => reconnected.push(joined));
    socket.drop();
    mock.timers.tick(10);
    FakeSocket.all[1].deliver({ action: "welcome", player_id: "again" });
    assert.deepEqual(FakeSocket.all[1].sent, [], "no reconnect without a seat");
    assert.deepEqual(reconnected, [null]);
    assert.equal(client.playerId, "again");
  } finally {
    mock.timers.reset();
  }
});

test("a disconnect with retry: the close says so, and the seat comes back with the latest token", async () => {
  mock.timers.enable({ apis: ["setTimeout", "Date"] });
  try {
    const { client, socket } = fakeClient({ backoff: { initial: 100, jitter: 0 } });
    await joinArena(client, socket);
    const closes = [];
    client.on("close", (detail) => closes.push(detail));
    socket.deliver({ action: "disconnect", code: "server_shutdown", message: "restarting", retry: true });
    socket.drop(1000);
    assert.deepEqual(closes, [{ code: 1000, reason: "", reconnecting: true, retry: true }]);
    mock.timers.tick(100);
    const next = FakeSocket.all[1];
    next.deliver({ action: "welcome", player_id: "fresh" });
    assert.deepEqual(next.sent[0], { action: "reconnect", token: "T1", id: next.sent[0].id }, "the latest token");
    next.deliver({ action: "joined", room: "arena", room_id: "R1", player_id: "p1", players: ["p1"], token: "T2", id: next.sent[0].id });
    await Promise.resolve();
    assert.equal(client.token, "T2");
    next.drop(); // a plain drop: no retry hint
    assert.deepEqual(closes.at(-1), { code: 1006, reason: "", reconnecting: true, retry: false });
  } finally {
    mock.timers.reset();
  }
});

test("reconnection gives up after maxReconnectTime: reconnect_failed gave_up, queued requests fail", async () => {
  mock.timers.enable({ apis: ["setTimeout", "Date"] });
  try {
    const { client, socket } = fakeClient({ backoff: { initial: 1000, max: 4000, jitter: 0 }, maxReconnectTime: 6000 });
    await joinArena(client, socket);
    const delays = [];
    client.on("reconnecting", ({ delay }) => delays.push(delay));
    const failed = new Promise((resolve) => client.on("reconnect_failed", resolve));
    socket.deliver({ action: "disconnect", code: "server_shutdown", message: "restarting", retry: true });
    socket.drop(1000);
    const queued = client.request("score");
    for (let i = 0; i < 3; i++) {
      mock.timers.tick(delays.at(-1));
      FakeSocket.all.at(-1).drop(); // refused: the server is not back
    }
    // 1000 + 2000 + 3000 (the rest of the 6 s, not 4000) and then no more.
    assert.deepEqual(delays, [1000, 2000, 3000]);
    assert.equal((await failed).code, "gave_up");
    await assert.rejects(queued, (e) => e.code === "gave_up");
    mock.timers.tick(60000);
    assert.equal(FakeSocket.all.length, 4);
  } finally {
    mock.timers.reset();
  }
});
