"""
The cluster's shared store on Redis (through txredisapi): every directory
and membership call is one Lua script, so it is atomic across the nodes.

Key layout (C{P} is the prefix, C{gf:} by default)::

    P leases            zset   node -> lease expiry (server time)
    P loads             hash   node -> its last NodeLoad (JSON)
    P deaths            zset   node -> when it was declared dead
    P seq               string insertion counter (orders the zsets below)
    P types             zset   room type -> first seen (every type ever placed)
    P type:<type>       zset   room id -> insertion (the rooms of one type)
    P open:<n>:<type>:<filter>  zset  room id -> insertion (matchable rooms of
                        one type and filter key; n is len(type), so no two
                        (type, filter) pairs share a key)
    P node:<node>       set    the node's room ids
    P room:<id>         hash   record (the RoomRecord as one JSON string) and
                        the fields the scripts read: type node filter max
                        running private locked
    P seats:<id>        zset   player -> reservation expiry (SEATED: seated)
    P seat_of           hash   player -> room id holding its seat
    P bus:<node>        channel: the node's batches

Every key but the channels is read and written by the scripts only, so one
Redis holds one cluster per prefix (not Redis Cluster: the scripts reach
keys they learn while running).
"""

from __future__ import annotations

from typing import Any, Callable
from urllib.parse import unquote, urlsplit

import attrs
import orjson
import txredisapi
from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gameframe._lua import Script
from gameframe.cluster.backend import (
    DEATH_MEMORY,
    RESERVATION_TTL,
    Beat,
    Change,
    Clear,
    Fenced,
    Gone,
    IClusterDirectory,
    IMembership,
    INodeBus,
    NodeLoad,
    Put,
    Reservation,
    RoomRecord,
    Seat,
    Unavailable,
    Unseat,
)
from gameframe.codec import GameError
from gameframe.vocabulary import ROOM_FULL, ROOM_LOCKED, ROOM_NOT_FOUND

# Seconds a command may wait for its reply before the connection counts as lost.
REPLY_TIMEOUT = 3.0
# Seconds a connection attempt may take.
CONNECT_TIMEOUT = 3.0
# Reconnecting backs off from the first delay to the longest (seconds): a
# node must be back well within its lease once Redis is.
RECONNECT_FIRST = 0.1
RECONNECT_LONGEST = 2.0

# Replies of a Redis that is there but cannot serve now.
_TRANSIENT = ("LOADING", "BUSY", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN")

log = Logger()

# -- the scripts ---------------------------------------------------------------------
#
# ARGV[1] is always the prefix. Every script starts with _LIBRARY: the
# store's invariants live there once (what a room's removal removes, how a
# seat is reserved), as MemoryCluster's _gone/_clear/_put/_free_seat do.

_LIBRARY = r"""
if redis.replicate_commands then redis.replicate_commands() end
local P = ARGV[1]
local LEASES, LOADS, DEATHS = P .. 'leases', P .. 'loads', P .. 'deaths'
local SEQ, TYPES, SEAT_OF = P .. 'seq', P .. 'types', P .. 'seat_of'
local SEATED = '1e300'

local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000,
         t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
end

local function open_key(room_type, filter)
  return P .. 'open:' .. #room_type .. ':' .. room_type .. ':' .. filter
end

local lives = {}
local function alive(node, now)
  local known = lives[node]
  if known == nil then
    local expiry = redis.call('ZSCORE', LEASES, node)
    known = expiry ~= false and tonumber(expiry) > now
    lives[node] = known
  end
  return known
end

local function check_node(node)
  if redis.call('ZSCORE', DEATHS, node) then
    return redis.error_reply('FENCED node declared dead')
  end
  if not redis.call('ZSCORE', LEASES, node) then
    return redis.error_reply('NOLEASE node holds no lease')
  end
  return nil
end

local function gone(id)
  local key = P .. 'room:' .. id
  local room = redis.call('HMGET', key, 'type', 'node', 'filter')
  if not room[1] then return end
  redis.call('DEL', key)
  local seats = P .. 'seats:' .. id
  for _, player in ipairs(redis.call('ZRANGE', seats, 0, -1)) do
    if redis.call('HGET', SEAT_OF, player) == id then redis.call('HDEL', SEAT_OF, player) end
  end
  redis.call('DEL', seats)
  redis.call('ZREM', P .. 'type:' .. room[1], id)
  redis.call('ZREM', open_key(room[1], room[3]), id)
  redis.call('SREM', P .. 'node:' .. room[2], id)
end

local function clear(node)
  local key = P .. 'node:' .. node
  local ids = redis.call('SMEMBERS', key)
  redis.call('DEL', key)
  for _, id in ipairs(ids) do gone(id) end
end

-- c: {'put', id, type, node, filter, max ('' for none), running, private, locked, record}
local function put(c)
  local id, room_type, node, filter = c[2], c[3], c[4], c[5]
  redis.call('HSET', P .. 'room:' .. id, 'type', room_type, 'node', node, 'filter', filter,
             'max', c[6], 'running', c[7], 'private', c[8], 'locked', c[9], 'record', c[10])
  local n = redis.call('INCR', SEQ)
  redis.call('ZADD', TYPES, 'NX', n, room_type)
  redis.call('ZADD', P .. 'type:' .. room_type, 'NX', n, id)
  redis.call('SADD', P .. 'node:' .. node, id)
  if c[8] == '0' and c[9] == '0' then
    redis.call('ZADD', open_key(room_type, filter), 'NX', n, id)
  else
    redis.call('ZREM', open_key(room_type, filter), id)
  end
end

local function unseat(id, player)
  redis.call('ZREM', P .. 'seats:' .. id, player)
  if redis.call('HGET', SEAT_OF, player) == id then redis.call('HDEL', SEAT_OF, player) end
end

-- Reserve a seat if one is free (lapsed reservations first freed).
local function free_seat(id, max, player, now, ttl)
  local seats = P .. 'seats:' .. id
  redis.call('ZREMRANGEBYSCORE', seats, '-inf', now)
  if max ~= '' and redis.call('ZCARD', seats) >= tonumber(max) then return false end
  redis.call('ZADD', seats, now + ttl, player)
  return true
end
"""

# ARGV: prefix, node, ttl, since, load (JSON), death memory
_BEAT = r"""
local node, ttl, since, keep = ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[6])
if redis.call('ZSCORE', DEATHS, node) then return redis.error_reply('FENCED node declared dead') end
local now, stamp = clock()
local held = redis.call('HGET', LOADS, node)
if held and cjson.decode(held)['token'] ~= cjson.decode(ARGV[5])['token'] then
  -- An earlier process under this name: it is dead now, and the caller fenced.
  redis.call('ZREM', LEASES, node)
  redis.call('HDEL', LOADS, node)
  redis.call('ZADD', DEATHS, now, node)
  clear(node)
  return redis.error_reply('FENCED another process held this name')
end
redis.call('ZADD', LEASES, now + ttl, node)
redis.call('HSET', LOADS, node, ARGV[5])
for _, lapsed in ipairs(redis.call('ZRANGEBYSCORE', LEASES, '-inf', now)) do
  redis.call('ZREM', LEASES, lapsed)
  redis.call('HDEL', LOADS, lapsed)
  redis.call('ZADD', DEATHS, now, lapsed)
  clear(lapsed)
end
redis.call('ZREMRANGEBYSCORE', DEATHS, '-inf', '(' .. string.format('%.17g', now - keep))
local loads = {}
for _, live in ipairs(redis.call('ZRANGE', LEASES, 0, -1)) do
  local load = redis.call('HGET', LOADS, live)
  if load then loads[#loads + 1] = load end
end
return {stamp, loads, redis.call('ZRANGEBYSCORE', DEATHS, since, '+inf')}
"""

# ARGV: prefix, node
_LEAVE = r"""
redis.call('ZREM', LEASES, ARGV[2])
redis.call('HDEL', LOADS, ARGV[2])
clear(ARGV[2])
return 1
"""

# ARGV: prefix, node, changes (JSON list of arrays: put/gone/seat/unseat/clear)
_UPDATE = r"""
local node = ARGV[2]
local refused = check_node(node)
if refused then return refused end
for _, c in ipairs(cjson.decode(ARGV[3])) do
  local op = c[1]
  if op == 'put' then
    put(c)
  elseif op == 'gone' then
    gone(c[2])
  elseif op == 'seat' then
    if redis.call('EXISTS', P .. 'room:' .. c[2]) == 1 then
      redis.call('ZADD', P .. 'seats:' .. c[2], SEATED, c[3])
      redis.call('HSET', SEAT_OF, c[3], c[2])
    end
  elseif op == 'unseat' then
    unseat(c[2], c[3])
  elseif op == 'clear' then
    clear(node)
  end
end
return 1
"""

# ARGV: prefix, node, room type, '1' if there is a filter key, filter key,
# player, reservation ttl, the new room (a 'put' change, JSON)
_MATCH = r"""
local node, room_type, player, ttl = ARGV[2], ARGV[3], ARGV[6], tonumber(ARGV[7])
local refused = check_node(node)
if refused then return refused end
local now = clock()
if ARGV[4] == '1' then
  for _, id in ipairs(redis.call('ZRANGE', open_key(room_type, ARGV[5]), 0, -1)) do
    local room = redis.call('HMGET', P .. 'room:' .. id, 'node', 'max', 'record')
    if room[1] and alive(room[1], now) and free_seat(id, room[2], player, now, ttl) then
      return {'found', room[3]}
    end
  end
end
local new = cjson.decode(ARGV[8])
put(new)
free_seat(new[2], new[6], player, now, ttl)
return {'placed'}
"""

# ARGV: prefix, node, room id, player, reservation ttl
_RESERVE = r"""
local id, player = ARGV[3], ARGV[4]
local refused = check_node(ARGV[2])
if refused then return refused end
local now = clock()
local room = redis.call('HMGET', P .. 'room:' .. id, 'node', 'max', 'locked', 'record')
if not room[1] or not alive(room[1], now) then return {'room_not_found'} end
if room[3] == '1' then return {'room_locked'} end
if not free_seat(id, room[2], player, now, tonumber(ARGV[5])) then return {'room_full'} end
return {'ok', room[4]}
"""

# ARGV: prefix, player
_SEAT_OF = r"""
local id = redis.call('HGET', SEAT_OF, ARGV[2])
if not id then return false end
local node = redis.call('HGET', P .. 'room:' .. id, 'node')
local now = clock()
if not node or not alive(node, now) then return false end
return {id, node}
"""

# ARGV: prefix, '1' for every type (else one), room type
_LISTING = r"""
local now = clock()
local types = {ARGV[3]}
if ARGV[2] == '1' then types = redis.call('ZRANGE', TYPES, 0, -1) end
local listed = {}
for _, room_type in ipairs(types) do
  for _, id in ipairs(redis.call('ZRANGE', P .. 'type:' .. room_type, 0, -1)) do
    local room = redis.call('HMGET', P .. 'room:' .. id, 'node', 'running', 'private', 'record')
    if room[1] and room[2] == '1' and room[3] == '0' and alive(room[1], now) then
      listed[#listed + 1] = room[4]
    end
  end
end
return listed
"""


_SCRIPTS = {
    name: Script.of(_LIBRARY, body)
    for name, body in [
        ("beat", _BEAT),
        ("leave", _LEAVE),
        ("update", _UPDATE),
        ("match", _MATCH),
        ("reserve", _RESERVE),
        ("seat_of", _SEAT_OF),
        ("listing", _LISTING),
    ]
}


def _parse_url(url: str) -> tuple[str, int, int, str | None, str | None]:
    """C{redis://[[user]:password@]host[:port][/db]}: host, port, db, user, password."""
    parts = urlsplit(url)
    if parts.scheme != "redis" or not parts.hostname:
        raise ValueError(f"not a redis://host:port/db URL: {url!r}")
    path = parts.path.strip("/")
    try:
        db = int(path) if path else 0
        port = parts.port or 6379
    except ValueError:
        raise ValueError(f"not a redis://host:port/db URL: {url!r}") from None
    username = unquote(parts.username) if parts.username else None
    password = None if parts.password is None else unquote(parts.password)
    return parts.hostname, port, db, username, password


def _flag(value: bool) -> str:
    return "1" if value else "0"


def _put_change(record: RoomRecord) -> list[str]:
    """A C{Put} as the scripts read it: the fields they test, and the record as one JSON string."""
    return [
        "put",
        record.room_id,
        record.room_type,
        record.node,
        record.filter_key,
        "" if record.max_players is None else str(int(record.max_players)),
        _flag(record.running),
        _flag(record.private),
        _flag(record.locked),
        orjson.dumps(attrs.asdict(record)).decode(),
    ]


def _change(change: Change) -> list[str]:
    if isinstance(change, Put):
        return _put_change(change.record)
    if isinstance(change, Gone):
        return ["gone", change.room_id]
    if isinstance(change, Seat):
        return ["seat", change.room_id, change.player_id]
    if isinstance(change, Unseat):
        return ["unseat", change.room_id, change.player_id]
    if isinstance(change, Clear):
        return ["clear"]
    raise TypeError(f"not a directory change: {change!r}")


def _record(raw: bytes) -> RoomRecord:
    return RoomRecord(**orjson.loads(raw))


def _reservation(record: RoomRecord, created: bool) -> Reservation:
    return Reservation(
        room_id=record.room_id,
        node=record.node,
        room_type=record.room_type,
        options=record.options,
        created=created,
    )


def _error_reply(failure: Failure) -> str:
    """The words of an error reply (txredisapi keeps some C{ERR} prefixes), or C{""}."""
    if not failure.check(txredisapi.ResponseError):
        return ""
    return str(failure.value).removeprefix("ERR ")


def _text(value: bytes) -> str:
    return value.decode("utf-8")


class _BusProtocol(txredisapi.SubscriberProtocol):  # type: ignore[misc]
    """The bus connection: hands every published batch to its factory's C{on_message}."""

    def messageReceived(self, pattern: Any, channel: bytes, message: bytes) -> None:
        self.factory.on_message(channel, message)


class _Factory(txredisapi.RedisFactory):  # type: ignore[misc]
    """
    One reconnecting connection to Redis (txredisapi's pool of one), raw
    bytes both ways, that says when its connection is usable and when it
    is lost.
    """

    initialDelay = RECONNECT_FIRST
    maxDelay = RECONNECT_LONGEST

    def __init__(
        self,
        *,
        db: int | None,
        password: str | None,
        username: str | None,
        on_ready: Callable[[Any], None],
        on_lost: Callable[[Any], None],
    ) -> None:
        super().__init__(
            None,
            db,
            1,
            isLazy=True,
            charset=None,
            password=password,
            replyTimeout=REPLY_TIMEOUT,
            convertNumbers=False,
            username=username,
        )
        # Only a failed AUTH or SELECT reports through this (the first
        # time); the handler it would hand over is never used.
        self.deferred.addErrback(self._refused)
        self.on_ready = on_ready
        self.on_lost = on_lost

    @staticmethod
    def _refused(failure: Failure) -> None:
        log.error("Redis refused the cluster's connection: {why}", why=failure.getErrorMessage())

    def stopTrying(self) -> Deferred[None]:
        # txredisapi gives up for good when AUTH or SELECT fails on a new
        # connection (a reply timeout included): a node keeps trying, and
        # only close() stops it (through disconnect()).
        return succeed(None)

    def usable(self) -> Any:
        """The connection, if it is up and ready for commands; else C{None}."""
        for connection in self.pool:
            if connection.connected and not connection.transport.disconnecting:
                return connection
        return None

    def addConnection(self, conn: Any) -> None:
        super().addConnection(conn)
        if conn in self.pool:
            self.on_ready(conn)

    def delConnection(self, conn: Any) -> None:
        super().delConnection(conn)
        self.on_lost(conn)


class _CommandFactory(_Factory):
    protocol = txredisapi.RedisProtocol


class _BusFactory(_Factory):
    protocol = _BusProtocol

    def __init__(self, *, on_message: Callable[[bytes, bytes], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_message = on_message


@attrs.define
class _Listener:
    receive: Callable[[bytes], None]
    lost: Callable[[], None]
    connection: Any  # the bus connection it subscribed on


def _ignore(failure: Failure) -> None:
    """A reply nobody waits for (a failure is the connection's, seen elsewhere)."""


@implementer(IClusterDirectory, IMembership, INodeBus)
class RedisCluster:
    """
    The shared store of a cluster on one Redis, with
    L{MemoryCluster<gameframe.cluster.memory.MemoryCluster>}'s behaviour.

    It keeps two connections, both reconnecting: one for commands and one
    subscribed to the bus channels this process listens on. A call made
    while its connection is down fails at once with L{Unavailable}; a reply
    that does not come within L{REPLY_TIMEOUT} seconds drops the
    connection (and fails the call the same way). Redis may come back
    empty: the scripts are loaded again, the next beat takes a new lease.
    """

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        *,
        db: int = 0,
        password: str | None = None,
        username: str | None = None,
        prefix: str = "gf:",
        reservation_ttl: float = RESERVATION_TTL,
        death_memory: float = DEATH_MEMORY,
    ) -> None:
        self._prefix = prefix
        self._reservation_ttl = reservation_ttl
        self._death_memory = death_memory
        self._listeners: dict[bytes, _Listener] = {}
        self._waiting: list[Deferred[None]] = []
        self._closing: Deferred[None] | None = None
        self.commands = 0  # commands sent to Redis, each a round trip (for metrics)
        self._commands = _CommandFactory(
            db=db or None,  # a new connection is on database 0: no SELECT
            password=password,
            username=username,
            on_ready=self._commands_ready,
            on_lost=self._commands_lost,
        )
        self._bus = _BusFactory(
            db=None,
            password=password,
            username=username,
            on_ready=self._bus_ready,
            on_lost=self._bus_lost,
            on_message=self._message,
        )
        self._commands.startConnecting(endpoint)
        self._bus.startConnecting(endpoint)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "gf:",
        reservation_ttl: float = RESERVATION_TTL,
        death_memory: float = DEATH_MEMORY,
    ) -> RedisCluster:
        """
        Connect to C{redis://[[user]:password@]host[:port][/db]} (port 6379 and
        db 0 unless given). The connections are made in the background:
        L{when_connected} fires once both are up.
        """
        host, port, db, username, password = _parse_url(url)
        endpoint = txredisapi._makeEndpoint(host, port, CONNECT_TIMEOUT)
        return cls(
            endpoint,
            db=db,
            password=password,
            username=username,
            prefix=prefix,
            reservation_ttl=reservation_ttl,
            death_memory=death_memory,
        )

    # -- connections ------------------------------------------------------------------

    def when_connected(self) -> Deferred[None]:
        """Fires once both connections are up (now, if they are); cancel it to stop waiting."""
        if self._closing is not None:
            return fail(Unavailable("the cluster store is closed"))
        if self._commands.usable() is not None and self._bus.usable() is not None:
            return succeed(None)
        waiting: Deferred[None] = Deferred(self._waiting.remove)
        self._waiting.append(waiting)
        return waiting

    def _wake(self) -> None:
        if self._commands.usable() is None or self._bus.usable() is None:
            return
        waiting, self._waiting = self._waiting, []
        for each in waiting:
            each.callback(None)

    def _commands_ready(self, connection: Any) -> None:
        log.info("cluster store connected")
        # Written before any call can use the connection, so the first
        # EVALSHA of each script finds it loaded (NOSCRIPT still reloads).
        for script in _SCRIPTS.values():
            self.commands += 1
            connection.execute_command("SCRIPT", "LOAD", script.source).addErrback(_ignore)
        self._wake()

    def _commands_lost(self, connection: Any) -> None:
        if self._closing is not None:
            return
        log.warn("cluster store connection lost")
        # A reply that never came (a half-open connection) is noticed here
        # only: drop the bus too, so its listeners learn and listen again.
        bus = self._bus.usable()
        if bus is not None:
            bus.transport.abortConnection()

    def _bus_ready(self, connection: Any) -> None:
        self._wake()

    def _bus_lost(self, connection: Any) -> None:
        lost = [
            (channel, listener)
            for channel, listener in self._listeners.items()
            if listener.connection is connection
        ]
        for channel, listener in lost:
            del self._listeners[channel]
        for channel, listener in lost:
            try:
                listener.lost()
            except Exception:
                log.failure("the lost callback of {channel} failed", channel=channel)

    # -- commands -------------------------------------------------------------------------

    @property
    def prefix(self) -> str:
        """What every key of this cluster starts with (C{gf:} by default)."""
        return self._prefix

    def execute(self, *args: Any) -> Deferred[Any]:
        """
        One command on the command connection, for what shares it (the
        Redis store): L{Unavailable} at once while it is down, raw bytes back.
        """
        return self._send(*args)

    def _send(self, *args: Any) -> Deferred[Any]:
        """One command on the command connection, or Unavailable at once if it is down."""
        connection = self._commands.usable()
        if connection is None:
            return fail(Unavailable("the cluster store is unreachable"))
        self.commands += 1
        try:
            sent: Deferred[Any] = connection.execute_command(*args)
        except txredisapi.ConnectionError as error:
            return fail(Unavailable(f"the cluster store is unreachable: {error}"))
        return sent.addErrback(self._translate)

    def _run(self, name: str, *args: str | bytes) -> Deferred[Any]:
        """Run one script (EVALSHA; loaded again if this Redis forgot it)."""
        script = _SCRIPTS[name]
        evalsha = ("EVALSHA", script.sha, 0, self._prefix, *args)

        def reload(failure: Failure) -> Deferred[Any] | Failure:
            if _error_reply(failure).startswith("NOSCRIPT"):
                loaded = self._send("SCRIPT", "LOAD", script.source)
                return loaded.addCallback(lambda _: self._send(*evalsha))
            return failure

        return self._send(*evalsha).addErrback(reload)

    @staticmethod
    def _translate(failure: Failure) -> Failure:
        if failure.check(txredisapi.ConnectionError):
            raise Unavailable(f"the cluster store is unreachable: {failure.getErrorMessage()}")
        reply = _error_reply(failure)
        if reply.startswith(_TRANSIENT):
            raise Unavailable(f"the cluster store cannot serve now: {reply}")
        return failure

    @staticmethod
    def _node_refused(failure: Failure, node: str) -> Failure:
        """The scripts' refusals of a node, as MemoryCluster words them."""
        reply = _error_reply(failure)
        if reply.startswith("FENCED"):
            raise Fenced(f"node {node} was declared dead")
        if reply.startswith("NOLEASE"):
            raise Unavailable(f"node {node} holds no lease: beat first")
        return failure

    # -- membership ---------------------------------------------------------------------

    def beat(self, load: NodeLoad, ttl: float, since: float) -> Deferred[Beat]:
        def done(reply: list[Any]) -> Beat:
            stamp, loads, deaths = reply
            return Beat(
                now=float(stamp),
                nodes=tuple(NodeLoad(**orjson.loads(each)) for each in loads),
                deaths=tuple(_text(node) for node in deaths),
            )

        ran = self._run(
            "beat",
            load.node,
            repr(float(ttl)),
            repr(float(since)),
            orjson.dumps(attrs.asdict(load)),
            repr(float(self._death_memory)),
        )
        return ran.addErrback(self._node_refused, load.node).addCallback(done)

    def leave(self, node: str) -> Deferred[None]:
        return self._run("leave", node).addCallback(lambda _: None)

    # -- directory -------------------------------------------------------------------------

    def update(self, node: str, changes: list[Change]) -> Deferred[None]:
        try:
            encoded = orjson.dumps([_change(change) for change in changes])
        except TypeError as error:  # orjson.JSONEncodeError is one
            return fail(error)
        ran = self._run("update", node, encoded)
        return ran.addErrback(self._node_refused, node).addCallback(lambda _: None)

    def match(
        self, node: str, room_type: str, filter_key: str | None, player_id: str, new_room: RoomRecord
    ) -> Deferred[Reservation]:
        def done(reply: list[bytes]) -> Reservation:
            if reply[0] == b"found":
                return _reservation(_record(reply[1]), created=False)
            return _reservation(new_room, created=True)

        try:
            placing = orjson.dumps(_put_change(new_room))
        except TypeError as error:
            return fail(error)
        ran = self._run(
            "match",
            node,
            room_type,
            _flag(filter_key is not None),
            filter_key or "",
            player_id,
            repr(float(self._reservation_ttl)),
            placing,
        )
        return ran.addErrback(self._node_refused, node).addCallback(done)

    def reserve(self, node: str, room_id: str, player_id: str) -> Deferred[Reservation]:
        def done(reply: list[bytes]) -> Reservation:
            status = reply[0]
            if status == b"room_not_found":
                raise GameError(ROOM_NOT_FOUND, f"there is no room {room_id!r}")
            if status == b"room_locked":
                raise GameError(ROOM_LOCKED, f"room {room_id} is locked")
            if status == b"room_full":
                raise GameError(ROOM_FULL, f"room {room_id} is full")
            return _reservation(_record(reply[1]), created=False)

        ran = self._run("reserve", node, room_id, player_id, repr(float(self._reservation_ttl)))
        return ran.addErrback(self._node_refused, node).addCallback(done)

    def seat_of(self, player_id: str) -> Deferred[tuple[str, str] | None]:
        def done(reply: list[bytes] | None) -> tuple[str, str] | None:
            if reply is None:
                return None
            return (_text(reply[0]), _text(reply[1]))

        return self._run("seat_of", player_id).addCallback(done)

    def listing(self, room_type: str | None) -> Deferred[list[dict[str, Any]]]:
        def done(reply: list[bytes]) -> list[dict[str, Any]]:
            return [orjson.loads(raw)["entry"] for raw in reply]

        ran = self._run("listing", _flag(room_type is None), room_type or "")
        return ran.addCallback(done)

    # -- bus --------------------------------------------------------------------------------

    def _channel(self, node: str) -> bytes:
        return f"{self._prefix}bus:{node}".encode()

    def send(self, node: str, batch: bytes) -> Deferred[None]:
        return self._send("PUBLISH", self._channel(node), batch).addCallback(lambda _: None)

    def listen(
        self, node: str, receive: Callable[[bytes], None], lost: Callable[[], None]
    ) -> Deferred[None]:
        connection = self._bus.usable()
        if connection is None:
            return fail(Unavailable("the cluster store is unreachable"))
        channel = self._channel(node)
        self.commands += 1
        try:
            subscribed: Deferred[Any] = connection.execute_command("SUBSCRIBE", channel)
        except txredisapi.ConnectionError as error:
            return fail(Unavailable(f"the cluster store is unreachable: {error}"))

        def done(_: Any) -> None:
            # Registered once Redis confirms: a connection lost before that
            # fails this call instead of calling lost.
            if connection.connected:
                self._listeners[channel] = _Listener(receive, lost, connection)
            else:
                raise Unavailable("the cluster store went away while subscribing")

        return subscribed.addErrback(self._translate).addCallback(done)

    def _message(self, channel: bytes, message: bytes) -> None:
        listener = self._listeners.get(channel)
        if listener is None:
            return
        try:
            listener.receive(message)
        except Exception:
            log.failure("receiving a batch on {channel} failed", channel=channel)

    def close(self) -> Deferred[None]:
        """
        Drop both connections (what is unsent is lost) and stop reconnecting;
        no C{lost} is called. Closing again waits for the same close.
        """
        if self._closing is None:
            self._listeners.clear()
            waiting, self._waiting = self._waiting, []
            for each in waiting:
                each.errback(Unavailable("the cluster store is closed"))
            factories = [self._commands, self._bus]
            closing = gatherResults([each.disconnect() for each in factories], consumeErrors=True)
            self._closing = closing.addBoth(self._closed_now)
            # Not waiting for a Redis that stopped reading to take what is unsent.
            for factory in factories:
                for connection in list(factory.pool):
                    connection.transport.abortConnection()
        done: Deferred[None] = Deferred()
        self._closing.addCallback(done.callback)
        return done

    @staticmethod
    def _closed_now(result: object) -> None:
        if isinstance(result, Failure):
            log.failure("closing the cluster store's connections", result)
