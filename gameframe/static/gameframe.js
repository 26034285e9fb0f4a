/**
 * gameframe.js: the JavaScript client for gameframe servers (an ES module,
 * no build step, no dependencies).
 *
 *     import { connect } from "/gameframe.js";
 *     const client = connect();                  // ws(s)://<this host>/ws
 *     client.on("said", (m) => console.log(m.player_id, m.text));
 *     client.on("state", (state) => draw(state)); // after every mirror change
 *     await client.join_or_create("chat");
 *     client.send("say", { text: "hello" });
 *
 * The protocol: one JSON object per WebSocket text frame, each with an
 * `"action"`. A request carries an `id`; the server's reply echoes it
 * (`joined`, `left`, `rooms`, `result`, `state`, or `error` with a `code`).
 * A room with synchronized state sends `{"action": "state", "seq", "state"}`
 * after `joined`, then `{"action": "patch", "seq", "patch"}` with RFC 6902
 * operations; the client keeps `client.state` up to date and asks for a
 * fresh `state` (`{"action": "sync"}`) when it sees a gap in `seq`.
 *
 * If the socket drops unexpectedly, or the server stops saying it will be
 * back (`disconnect` with `"retry": true`: a restart that keeps the seats),
 * the client opens a new one with exponential backoff (capped, with jitter),
 * for at most `maxReconnectTime`, and, if it was in a room, takes its seat
 * back with the latest `token` from `joined`.
 *
 * @module gameframe
 */

// ---------------------------------------------------------------------------
// JSON Patch (RFC 6902) and JSON Pointer (RFC 6901)

/** A patch could not be applied: bad operation, bad path or failed "test". */
export class PatchError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "PatchError";
  }
}

/**
 * Split an RFC 6901 pointer ("" is the whole document) into unescaped tokens.
 * @param {string} path
 * @returns {string[]}
 */
export function parsePointer(path) {
  if (typeof path !== "string") throw new PatchError(`a JSON pointer must be a string, not ${JSON.stringify(path)}`);
  if (path === "") return [];
  if (path[0] !== "/") throw new PatchError(`JSON pointer must start with '/': ${JSON.stringify(path)}`);
  return path.slice(1).split("/").map((token) => {
    if (/~(?![01])/.test(token)) throw new PatchError(`bad '~' escape in JSON pointer ${JSON.stringify(path)}`);
    return token.replace(/~1/g, "/").replace(/~0/g, "~");
  });
}

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const hasOwn = (obj, key) => Object.prototype.hasOwnProperty.call(obj, key);

/** Deep copy a JSON value, so the document never shares containers with a patch. */
function clone(value) {
  if (Array.isArray(value)) return value.map(clone);
  if (isObject(value)) {
    const out = {};
    for (const key of Object.keys(value)) setMember(out, key, clone(value[key]));
    return out;
  }
  return value;
}

/** obj[key] = value, safe for keys such as "__proto__". */
function setMember(obj, key, value) {
  Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true });
}

/** Deep equality of JSON values (RFC 6902 "test"). */
function equal(a, b) {
  if (a === b) return true;
  if (Array.isArray(a)) {
    return Array.isArray(b) && a.length === b.length && a.every((x, i) => equal(x, b[i]));
  }
  if (isObject(a) && isObject(b)) {
    const keys = Object.keys(a);
    return keys.length === Object.keys(b).length && keys.every((k) => hasOwn(b, k) && equal(a[k], b[k]));
  }
  return false;
}

/** Parse an array index; `append` allows "-" and the array's length (for "add"). */
function arrayIndex(array, token, path, append = false) {
  if (append && token === "-") return array.length;
  if (!/^(0|[1-9][0-9]*)$/.test(token)) throw new PatchError(`bad array index ${JSON.stringify(token)} in path ${JSON.stringify(path)}`);
  const i = Number(token);
  if (i > array.length || (i === array.length && !append)) {
    throw new PatchError(`array index ${i} out of range in path ${JSON.stringify(path)}`);
  }
  return i;
}

function child(doc, token, path) {
  if (Array.isArray(doc)) return doc[arrayIndex(doc, token, path)];
  if (isObject(doc)) {
    if (!hasOwn(doc, token)) throw new PatchError(`no member ${JSON.stringify(token)} in path ${JSON.stringify(path)}`);
    return doc[token];
  }
  throw new PatchError(`cannot descend into a scalar in path ${JSON.stringify(path)}`);
}

/** The value at `path` in `doc`. */
function get(doc, path) {
  return parsePointer(path).reduce((node, token) => child(node, token, path), doc);
}

/** The container holding `path`'s target, and the last token. */
function parentOf(doc, path) {
  const tokens = parsePointer(path);
  const last = tokens.pop();
  const parent = tokens.reduce((node, token) => child(node, token, path), doc);
  if (parent === null || typeof parent !== "object") {
    throw new PatchError(`parent of ${JSON.stringify(path)} is not an object or array`);
  }
  return [parent, last];
}

function add(doc, path, value) {
  if (path === "") return value;
  const [parent, token] = parentOf(doc, path);
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, token, path, true), 0, value);
  else setMember(parent, token, value);
  return doc;
}

/** Remove the value at `path` and return it. */
function remove(doc, path) {
  if (path === "") throw new PatchError("cannot remove the whole document");
  const [parent, token] = parentOf(doc, path);
  if (Array.isArray(parent)) return parent.splice(arrayIndex(parent, token, path), 1)[0];
  if (!hasOwn(parent, token)) throw new PatchError(`no member at ${JSON.stringify(path)}`);
  const value = parent[token];
  delete parent[token];
  return value;
}

function valueOf(op) {
  if (!hasOwn(op, "value")) throw new PatchError(`operation ${JSON.stringify(op)} has no "value"`);
  return clone(op.value);
}

/**
 * Apply one RFC 6902 operation; returns the (possibly new) document.
 * @param {*} doc
 * @param {{op: string, path: string, value?: *, from?: string}} op
 */
export function applyOperation(doc, op) {
  if (!isObject(op)) throw new PatchError(`an operation must be an object, not ${JSON.stringify(op)}`);
  const path = op.path;
  parsePointer(path); // validates
  switch (op.op) {
    case "add":
      return add(doc, path, valueOf(op));
    case "remove":
      remove(doc, path);
      return doc;
    case "replace": {
      const value = valueOf(op);
      if (path === "") return value;
      remove(doc, path);
      return add(doc, path, value);
    }
    case "move": {
      parsePointer(op.from);
      if (op.from === path) {
        get(doc, path);
        return doc;
      }
      if (path.startsWith(op.from + "/")) throw new PatchError(`cannot move ${op.from} into its own child ${path}`);
      return add(doc, path, remove(doc, op.from));
    }
    case "copy":
      parsePointer(op.from);
      return add(doc, path, clone(get(doc, op.from)));
    case "test":
      if (!equal(get(doc, path), valueOf(op))) throw new PatchError(`test failed at ${JSON.stringify(path)}`);
      return doc;
    default:
      throw new PatchError(`unknown operation ${JSON.stringify(op.op)}`);
  }
}

/**
 * Apply a JSON Patch (a list of RFC 6902 operations) and return the result.
 *
 * Containers are changed in place; use the return value, since an operation
 * on the root path "" replaces the whole document. Values are copied out of
 * the patch. On a PatchError the document may be partly patched: get a
 * full state again.
 *
 * @param {*} doc
 * @param {Array<object>} patch
 * @returns {*}
 */
export function applyPatch(doc, patch) {
  if (!Array.isArray(patch)) throw new PatchError("a patch must be an array of operations");
  for (const op of patch) doc = applyOperation(doc, op);
  return doc;
}

/**
 * The JSON Patch operations that compact operations stand for (a `patch`
 * message's `ops`, sent to a client that joined with `encoding: "compact"`).
 * `paths` is the stream's path table (number -> pointer), extended in place
 * by the pointers `ops` write out (the same logic as Python's
 * `gameframe.compact.decode_ops`).
 *
 * @param {Array} ops `p, value` (two elements) replace, `[p, value, 1]` add, `[p]`
 *   remove; `p` a pointer (numbered next) or the number of one sent before
 * @param {Array<string>} paths
 * @returns {Array<object>}
 */
export function decodeOps(ops, paths) {
  if (!Array.isArray(ops)) throw new PatchError("compact ops must be an array");
  const out = [];
  for (let i = 0; i < ops.length; i++) {
    let op = ops[i];
    if (!Array.isArray(op)) {
      if (i + 1 >= ops.length) throw new PatchError(`the replace of ${JSON.stringify(op)} has no value`);
      op = [op, ops[++i]];
    } else if (op.length < 1 || op.length > 3) {
      throw new PatchError(`bad compact operation ${JSON.stringify(op)}`);
    }
    const ref = op[0];
    let path;
    if (typeof ref === "string") {
      paths.push(ref);
      path = ref;
    } else if (Number.isInteger(ref) && ref >= 0 && ref < paths.length) {
      path = paths[ref];
    } else {
      throw new PatchError(`unknown path reference ${JSON.stringify(ref)}`);
    }
    if (op.length === 1) out.push({ op: "remove", path });
    else if (op.length === 2) out.push({ op: "replace", path, value: op[1] });
    else if (op[2] === 1) out.push({ op: "add", path, value: op[1] });
    else throw new PatchError(`bad compact operation ${JSON.stringify(op)}`);
  }
  return out;
}

// ---------------------------------------------------------------------------
// The state mirror

/**
 * A copy of the room's state, kept equal to the server's view by feeding it
 * every message (the same logic as Python's `gameframe.mirror.StateMirror`).
 *
 * A `state` message replaces the mirror; a `patch` applies when its `seq` is
 * the next one. After a gap (or a patch that does not apply) the mirror is
 * `stale` until the next full state: send `{"action": "sync"}` to get one.
 * It takes both encodings of patches: RFC 6902 (`patch`) and compact
 * (`ops`, see `decodeOps`), whose path table it keeps in `paths`.
 */
export class StateMirror {
  constructor() {
    /** @type {*} the mirrored state (null before the first `state`) */
    this.state = null;
    /** @type {number|null} the seq of the last message applied */
    this.seq = null;
    /** @type {boolean} true after a gap, until the next full state */
    this.stale = false;
    /** @type {Array<string>} the compact path table of this stream */
    this.paths = [];
  }

  /**
   * Apply a `state` or `patch` message.
   * @param {object} message
   * @returns {boolean} true for a state or patch message, whatever its
   *   effect (check `stale`), false for any other message
   */
  handle(message) {
    if (message.action === "state") {
      this.state = clone(message.state);
      this.seq = message.seq;
      this.stale = false;
      this.paths = [];
      return true;
    }
    if (message.action !== "patch") return false;
    if (this.stale || this.seq === null) return true;
    if (message.seq !== this.seq + 1) {
      this.stale = true;
      return true;
    }
    try {
      let patch = message.patch;
      if ("ops" in message) {
        if (message.reset) this.paths = [];
        patch = decodeOps(message.ops, this.paths);
      }
      this.state = applyPatch(this.state, patch);
      this.seq = message.seq;
    } catch (error) {
      if (!(error instanceof PatchError)) throw error;
      this.stale = true;
    }
    return true;
  }
}

// ---------------------------------------------------------------------------
// The client

/** The WebSocket URL of the page's own server: ws://host/ws or wss://host/ws. */
export function defaultUrl() {
  if (typeof location === "undefined") throw new Error("gameframe: no location to derive a URL from; pass one to connect()");
  return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws`;
}

/**
 * @typedef {object} Backoff
 * @property {number} [initial=250] first delay, in milliseconds
 * @property {number} [max=5000] the cap on any delay, in milliseconds
 * @property {number} [factor=2] how much each failed attempt multiplies the delay
 * @property {number} [jitter=0.5] fraction of the delay taken off at random (0 to 1)
 */

/**
 * @typedef {object} ClientOptions
 * @property {boolean} [reconnect=true] reconnect when the socket drops unexpectedly
 * @property {Backoff} [backoff] reconnection delays
 * @property {number} [maxAttempts=Infinity] reconnection attempts before giving up
 * @property {number} [maxReconnectTime=60000] milliseconds after a drop before giving up
 *   (a restarting server holds the seats 60 s by default; Infinity: never give up)
 * @property {number} [requestTimeout=0] reject requests not answered within this many ms (0: never)
 * @property {typeof WebSocket} [WebSocket] the WebSocket class (default: the global one)
 * @property {string} [encoding="json"] the state patches to ask for when joining: "json"
 *   (RFC 6902 JSON Patches) or "compact" (fewer bytes; the mirror is the same)
 */

const DEFAULT_BACKOFF = { initial: 250, max: 5000, factor: 2, jitter: 0.5 };

/** An Error for an `error` reply (or a local failure), with a stable `.code`. */
export class GameError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {object} [reply] the server's error message, if any
   */
  constructor(code, message, reply) {
    super(message);
    this.name = "GameError";
    this.code = code;
    this.reply = reply;
  }
}

/**
 * One connection to a gameframe server, kept alive across drops.
 *
 * Events (`on(name, fn)`):
 * - every server message by its action (`"joined"`, `"said"`, `"error"`...): fn(message)
 * - `"*"`: every server message: fn(message)
 * - `"state"`: after each change of the mirror: fn(state, message)
 * - `"open"` (a socket got its welcome), `"close"` ({code, reason, reconnecting, retry}),
 *   `"reconnecting"` ({attempt, delay}), `"reconnected"` (the joined reply, or
 *   null when not in a room), `"reconnect_failed"` (a GameError)
 */
export class Client {
  /**
   * @param {string} url
   * @param {ClientOptions} [options]
   */
  constructor(url, options = {}) {
    this.url = url;
    this.options = { reconnect: true, maxAttempts: Infinity, maxReconnectTime: 60000, requestTimeout: 0, ...options };
    this.backoff = { ...DEFAULT_BACKOFF, ...(options.backoff || {}) };
    /** @type {string|null} this player's id (the room's, once joined) */
    this.playerId = null;
    /** @type {string|null} the room type, e.g. "arena" */
    this.room = null;
    /** @type {string|null} */
    this.roomId = null;
    /** @type {string[]} the players in the room when it was joined */
    this.players = [];
    /** @type {string|null} the reconnection token from the last `joined` */
    this.token = null;
    /** @type {boolean} a socket is open and welcomed */
    this.connected = false;
    this.mirror = new StateMirror();
    this.socket = null;

    this._WebSocket = options.WebSocket || globalThis.WebSocket;
    this._listeners = new Map();
    this._pending = new Map(); // request id -> {resolve, reject, timer}
    this._nextId = 1;
    this._outbox = []; // messages sent while no socket was open
    this._closed = false; // close() was called
    this._stayDown = false; // the server said not to come back
    this._attempt = 0;
    this._downSince = null; // Date.now() when the reconnection under way began
    this._serverRetry = false; // the server's disconnect said it will be back
    this._retryTimer = null;
    this._everConnected = false;
    this._syncAsked = false;
    /** Resolves with the first `welcome` message. */
    this.ready = new Promise((resolve) => this.once("welcome", resolve));
    this._open();
  }

  /** @returns {*} the mirrored room state (null if the room has none) */
  get state() {
    return this.mirror.state;
  }

  // -- events -----------------------------------------------------------------

  /**
   * Call `fn` for event `name`; returns a function that unsubscribes.
   * @param {string} name an action, "*", "state", or a connection event
   * @param {Function} fn
   */
  on(name, fn) {
    if (!this._listeners.has(name)) this._listeners.set(name, new Set());
    this._listeners.get(name).add(fn);
    return () => this.off(name, fn);
  }

  /** Stop calling `fn` for event `name`. */
  off(name, fn) {
    this._listeners.get(name)?.delete(fn);
  }

  /** Call `fn` the next time event `name` happens, once. */
  once(name, fn) {
    const off = this.on(name, (...args) => {
      off();
      fn(...args);
    });
    return off;
  }

  _emit(name, ...args) {
    for (const fn of [...(this._listeners.get(name) || [])]) {
      try {
        fn(...args);
      } catch (error) {
        console.error(`gameframe: a "${name}" listener failed`, error);
      }
    }
  }

  // -- sending ----------------------------------------------------------------

  /**
   * Send `{action, ...fields}` (queued until a socket is open).
   * @param {string} action
   * @param {object} [fields]
   */
  send(action, fields = {}) {
    this._send({ ...fields, action });
  }

  /**
   * Send an action with a fresh `id`; resolves with the reply echoing it,
   * rejects with a GameError (`.code`) on an `error` reply or a lost connection.
   * @param {string} action
   * @param {object} [fields]
   * @returns {Promise<object>} the reply message
   */
  request(action, fields = {}) {
    return this._request({ ...fields, action });
  }

  /** Join a room of type `room` that matches `options`, or create one. */
  join_or_create(room, options = {}) {
    return this.request("join_or_create", this._joining({ room, options }));
  }

  /** Create a new room of type `room` and join it. */
  create(room, options = {}) {
    return this.request("create", this._joining({ room, options }));
  }

  /** Join the room with id `roomId`. */
  join(roomId, options = {}) {
    return this.request("join", this._joining({ room_id: roomId, options }));
  }

  /** Leave the room (its seat is not held: no reconnection into it). */
  leave() {
    this.token = null;
    return this.request("leave");
  }

  /**
   * The public rooms, of type `room` or of all types.
   * @returns {Promise<object[]>} the room descriptions
   */
  async list(room) {
    return (await this.request("list", room == null ? {} : { room })).rooms;
  }

  /**
   * Prove who this player is to a server started with `--auth`.
   * @returns {Promise<object>} the `authenticated` reply (rejects with `unauthorized`)
   */
  authenticate(token) {
    return this.request("authenticate", { token });
  }

  /**
   * Measure the round trip to the server.
   * @returns {Promise<number>} milliseconds from sending `ping` to its `pong`
   */
  async ping() {
    const sent = performance.now();
    await this.request("ping", { t: sent });
    return performance.now() - sent;
  }

  /** Take a held seat back with a token from an earlier `joined`. */
  reconnect(token) {
    return this.request("reconnect", this._joining({ token }));
  }

  /** Ask for the full state again. */
  sync() {
    this._syncAsked = true;
    this.send("sync");
  }

  /** Close the connection for good: no reconnection. */
  close() {
    this._closed = true;
    clearTimeout(this._retryTimer);
    this._outbox = [];
    this._lost("closed", "the client closed the connection");
    if (this.socket) this.socket.close(1000);
  }

  _send(message) {
    if (this._closed) throw new GameError("closed", "the client is closed");
    if (this.connected) this.socket.send(JSON.stringify(message));
    else this._outbox.push(message);
  }

  _request(message, direct = false) {
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      const entry = { resolve, reject, timer: null };
      if (this.options.requestTimeout > 0) {
        entry.timer = setTimeout(() => {
          this._pending.delete(id);
          reject(new GameError("timeout", `no reply to ${message.action} in ${this.options.requestTimeout} ms`));
        }, this.options.requestTimeout);
      }
      this._pending.set(id, entry);
      try {
        if (direct) this.socket.send(JSON.stringify({ ...message, id }));
        else this._send({ ...message, id });
      } catch (error) {
        this._settle(id);
        reject(error);
      }
    });
  }

  /** Forget request `id`; its {resolve, reject}, or undefined. */
  _settle(id) {
    const entry = this._pending.get(id);
    if (entry === undefined) return undefined;
    this._pending.delete(id);
    clearTimeout(entry.timer);
    return entry;
  }

  // -- the socket -------------------------------------------------------------

  _open() {
    const socket = new this._WebSocket(this.url);
    this.socket = socket;
    socket.onmessage = (event) => {
      if (socket === this.socket) this._receive(event.data);
    };
    socket.onclose = (event) => {
      if (socket === this.socket) this._dropped(event);
    };
  }

  _receive(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      console.error("gameframe: the server sent a frame that is not JSON", data);
      return;
    }
    if (message === null || typeof message !== "object" || typeof message.action !== "string") return;
    this._handle(message);
  }

  /** A joining request's fields, with the encoding asked for (none for "json"). */
  _joining(fields) {
    const encoding = this.options.encoding;
    if (encoding !== undefined && encoding !== "json") fields.encoding = encoding;
    return fields;
  }

  _handle(message) {
    switch (message.action) {
      case "welcome":
        this._welcome(message);
        break;
      case "joined":
        if (message.room_id !== this.roomId) this.mirror = new StateMirror();
        this.room = message.room;
        this.roomId = message.room_id;
        this.playerId = message.player_id;
        this.players = message.players || [];
        this.token = message.token;
        break;
      case "left":
        this._leftRoom();
        break;
      case "disconnect":
        // "replaced": this seat lives on another connection now.
        if (message.code === "replaced") this._stayDown = true;
        // "retry": the server is restarting and keeps the seat: come back.
        this._serverRetry = message.retry === true;
        if (this._serverRetry) this._stayDown = false;
        break;
    }
    const before = this.mirror.seq;
    const synced = this.mirror.handle(message);
    if (synced && (message.action === "state" || this.mirror.seq !== before)) this._syncAsked = false;
    if (synced && this.mirror.stale && !this._syncAsked && this.connected) this.sync();

    this._emit("*", message);
    if (message.action !== "state") this._emit(message.action, message);
    if (synced && (message.action === "state" || this.mirror.seq !== before)) {
      this._emit("state", this.mirror.state, message);
    }

    if (message.id !== undefined && message.id !== null) {
      const entry = this._settle(message.id);
      if (entry && message.action === "error") {
        entry.reject(new GameError(message.code, message.message, message));
      } else if (entry) {
        entry.resolve(message);
      }
    }
  }

  _welcome(message) {
    const again = this._everConnected;
    this._everConnected = true;
    this.connected = true;
    if (this.token === null) this.playerId = message.player_id;
    this._emit("open", message);
    if (this.token !== null) {
      // Back on a new socket while seated: take the seat again, before anything else.
      const token = this.token;
      this._request(this._joining({ action: "reconnect", token }), true).then(
        (joined) => {
          this._attempt = 0;
          this._downSince = null;
          this._emit("reconnected", joined);
        },
        (error) => {
          if (error.code === "disconnected") return; // dropped again: the next socket retries
          this._attempt = 0;
          this._downSince = null;
          this._leftRoom();
          this.playerId = message.player_id;
          this._emit("reconnect_failed", error);
        },
      );
    } else {
      if (again) this._emit("reconnected", null);
      this._attempt = 0;
      this._downSince = null;
    }
    const outbox = this._outbox;
    this._outbox = [];
    for (const queued of outbox) this.socket.send(JSON.stringify(queued));
  }

  _leftRoom() {
    this.room = null;
    this.roomId = null;
    this.players = [];
    this.token = null;
    this.mirror = new StateMirror();
  }

  _dropped(event) {
    const reconnecting = !this._closed && !this._stayDown && this.options.reconnect !== false;
    const retry = this._serverRetry;
    this._serverRetry = false;
    this._lost("disconnected", "the connection was lost");
    this._emit("close", { code: event.code, reason: event.reason, reconnecting, retry });
    if (reconnecting) {
      if (this._downSince === null) this._downSince = Date.now();
      this._retry();
    }
  }

  /** The socket is gone: fail the requests sent on it (queued ones wait for the next). */
  _lost(code, text) {
    this.connected = false;
    this.mirror.stale = this.mirror.seq !== null;
    const queued = new Set(this._outbox.map((message) => message.id));
    for (const id of [...this._pending.keys()]) {
      if (!queued.has(id)) this._settle(id).reject(new GameError(code, text));
    }
  }

  _retry() {
    const left = this.options.maxReconnectTime - (Date.now() - this._downSince);
    if (this._attempt >= this.options.maxAttempts || left <= 0) {
      this._giveUp(new GameError("gave_up", `no connection after ${this._attempt} attempts`));
      return;
    }
    const { initial, max, factor, jitter } = this.backoff;
    const ceiling = Math.min(max, initial * factor ** this._attempt);
    // The last attempt is made when the time is up, not after it.
    const delay = Math.min(left, Math.round(ceiling * (1 - jitter * Math.random())));
    this._attempt += 1;
    this._emit("reconnecting", { attempt: this._attempt, delay });
    this._retryTimer = setTimeout(() => {
      if (!this._closed) this._open();
    }, delay);
  }

  /** Stop reconnecting: what waited for a socket fails, and the seat is let go. */
  _giveUp(error) {
    this._attempt = 0;
    this._downSince = null;
    this._outbox = [];
    for (const id of [...this._pending.keys()]) this._settle(id).reject(error);
    this._emit("reconnect_failed", error);
  }
}

/**
 * Connect to a gameframe server.
 *
 * @param {string} [url] the WebSocket URL; default ws(s)://<page host>/ws
 * @param {ClientOptions} [options]
 * @returns {Client}
 */
export function connect(url, options = {}) {
  if (url !== null && typeof url === "object") [url, options] = [undefined, url];
  return new Client(url ?? defaultUrl(), options);
}
