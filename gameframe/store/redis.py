"""
Saved rooms and player storage on the cluster's Redis, over its command
connection: every conditional write is one Lua script, so each call is
atomic across the nodes, and any node can restore any room.

Key layout (C{P} is the cluster's prefix, C{gf:} by default)::

    P saved:room:<id>     hash    type node version data (one saved room)
    P saved:rooms         set     every saved room's id
    P saved:owner:<node>  set     the ids of the rooms <node> owns
                                  (P saved:owner: holds the released ones)
    P storage:<n>:<owner>:<collection>
                          hash    key -> "<version> <JSON value>"
                                  (n is the owner's length in bytes, so no
                                  two (owner, collection) pairs share a key)
    P storage:version     string  the counter versions are drawn from
"""

from __future__ import annotations

from typing import Any, Iterable

import orjson
from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure
from zope.interface import implementer

from gameframe._lua import Script
from gameframe.cluster.redis import RedisCluster
from gameframe.store._shared import SharedConnection
from gameframe.store.base import (
    IPlayerStorage,
    IRoomStore,
    SavedRoom,
    Version,
    VersionConflict,
    WritesOne,
    decode_value,
    encode_value,
    writes_of,
)

# -- the scripts -----------------------------------------------------------------------
#
# ARGV[1] is always the prefix. A script that refuses returns before it
# writes anything.

_LIBRARY = r"""
local P = ARGV[1]
local ROOMS = P .. 'saved:rooms'
local function room_key(id) return P .. 'saved:room:' .. id end
local function owner_key(node) return P .. 'saved:owner:' .. node end

-- The version of a stored object (its field is "<version> <JSON>"), or false.
local function stored_version(key, field)
  local raw = redis.call('HGET', key, field)
  if not raw then return false end
  return string.sub(raw, 1, string.find(raw, ' ', 1, true) - 1)
end

-- Whether an object at `stored` may be written: has is '1' when a version was named.
local function matches(stored, has, wanted)
  if has ~= '1' then return true end
  if wanted == '*' then return stored == false end
  return stored == wanted
end
"""

# ARGV: prefix, room id, type, node, version, data
_SAVE = r"""
local id, node = ARGV[2], ARGV[4]
local key = room_key(id)
local held = redis.call('HMGET', key, 'node', 'version')
if held[1] then
  if (held[1] ~= node and held[1] ~= '') or tonumber(held[2]) >= tonumber(ARGV[5]) then
    return 0
  end
  redis.call('SREM', owner_key(held[1]), id)
end
redis.call('HSET', key, 'type', ARGV[3], 'node', node, 'version', ARGV[5], 'data', ARGV[6])
redis.call('SADD', owner_key(node), id)
redis.call('SADD', ROOMS, id)
return 1
"""

# ARGV: prefix, room id, node
_RELEASE = r"""
local id, node = ARGV[2], ARGV[3]
if redis.call('HGET', room_key(id), 'node') ~= node then return 0 end
redis.call('HSET', room_key(id), 'node', '')
redis.call('SMOVE', owner_key(node), owner_key(''), id)
return 1
"""

# ARGV: prefix, room id, node
_DELETE_ROOM = r"""
local id, node = ARGV[2], ARGV[3]
if redis.call('HGET', room_key(id), 'node') ~= node then return 0 end
redis.call('DEL', room_key(id))
redis.call('SREM', owner_key(node), id)
redis.call('SREM', ROOMS, id)
return 1
"""

# ARGV: prefix, node, 'all' (every room not the node's) or 'of' then the owners
_CLAIM = r"""
local node = ARGV[2]
local ids = {}
if ARGV[3] == 'all' then
  for _, id in ipairs(redis.call('SMEMBERS', ROOMS)) do
    if redis.call('HGET', room_key(id), 'node') ~= node then ids[#ids + 1] = id end
  end
else
  for i = 4, #ARGV do
    for _, id in ipairs(redis.call('SMEMBERS', owner_key(ARGV[i]))) do ids[#ids + 1] = id end
  end
end
local claimed = {}
for _, id in ipairs(ids) do
  local room = redis.call('HMGET', room_key(id), 'node', 'type', 'version', 'data')
  if room[1] ~= node then
    redis.call('SMOVE', owner_key(room[1]), owner_key(node), id)
    redis.call('HSET', room_key(id), 'node', node)
  end
  claimed[#claimed + 1] = {id, room[2], room[3], room[4]}
end
return claimed
"""

# ARGV: prefix, then per write: hash key, field, has version ('1'/'0'), version, JSON
# Checked in order against what the writes before them leave, then all written.
_WRITE = r"""
local staged, versions, writes = {}, {}, {}
for b = 2, #ARGV, 5 do
  local key, field = ARGV[b], ARGV[b + 1]
  staged[key] = staged[key] or {}
  local stored = staged[key][field]
  if stored == nil then stored = stored_version(key, field) end
  if not matches(stored, ARGV[b + 2], ARGV[b + 3]) then
    return {'conflict', tostring((b - 2) / 5)}
  end
  local version = tostring(redis.call('INCR', P .. 'storage:version'))
  staged[key][field] = version
  versions[#versions + 1] = version
  writes[#writes + 1] = {key, field, version .. ' ' .. ARGV[b + 4]}
end
for _, write in ipairs(writes) do redis.call('HSET', write[1], write[2], write[3]) end
return {'ok', versions}
"""

# ARGV: prefix, hash key, field, has version ('1'/'0'), version
_DELETE_OBJECT = r"""
if not matches(stored_version(ARGV[2], ARGV[3]), ARGV[4], ARGV[5]) then return {'conflict'} end
return {'ok', redis.call('HDEL', ARGV[2], ARGV[3])}
"""


_SCRIPTS = {
    name: Script.of(_LIBRARY, body)
    for name, body in [
        ("save", _SAVE),
        ("release", _RELEASE),
        ("delete_room", _DELETE_ROOM),
        ("claim", _CLAIM),
        ("write", _WRITE),
        ("delete_object", _DELETE_OBJECT),
    ]
}


def _text(value: bytes) -> str:
    return value.decode("utf-8")


def _version_arguments(version: Version) -> tuple[str, str]:
    return ("0", "") if version is None else ("1", version)


def _unpack(raw: bytes) -> tuple[Any, str]:
    """A stored object's field: its value and version."""
    version, _, data = raw.partition(b" ")
    return decode_value(data), _text(version)


class RedisStore:
    """
    Both stores on one Redis: L{rooms} (an L{IRoomStore}) and L{storage}
    (an L{IPlayerStorage}), sharing a L{RedisCluster}'s command connection
    and its key prefix. A call made while Redis is unreachable fails at
    once with L{Unavailable<gameframe.cluster.backend.Unavailable>}, as the
    cluster's calls do. The store closes the cluster when both facets have
    closed only if it made it (L{from_url}).
    """

    def __init__(self, cluster: RedisCluster, *, owns_cluster: bool = False) -> None:
        self._cluster = cluster
        self._prefix = cluster.prefix
        self._connection = SharedConnection(
            cluster.close if owns_cluster else (lambda: succeed(None)), holders=2
        )
        self.rooms = RedisRoomStore(self)
        self.storage = RedisPlayerStorage(self)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "gf:") -> RedisStore:
        """
        A store with connections of its own to C{redis://host[:port][/db]}
        (for tests and tools; a node shares its cluster's). Made in the
        background: L{when_connected} fires once they are up.
        """
        return cls(RedisCluster.from_url(url, prefix=prefix), owns_cluster=True)

    def when_connected(self) -> Deferred[None]:
        """Fires once the connection is up (now, if it is)."""
        return self._cluster.when_connected()

    def room_key(self, room_id: str) -> str:
        """The hash holding one saved room."""
        return f"{self._prefix}saved:room:{room_id}"

    def storage_key(self, owner: str, collection: str) -> str:
        """The hash holding one owner's collection."""
        return f"{self._prefix}storage:{len(owner.encode())}:{owner}:{collection}"

    def execute(self, holder: object, *args: Any) -> Deferred[Any]:
        """One command for C{holder} (refused once it closed)."""
        if not self._connection.holds(holder):
            return fail(RuntimeError("the Redis store is closed"))
        return self._cluster.execute(*args)

    def run(self, holder: object, name: str, *args: str | bytes) -> Deferred[Any]:
        """One script for C{holder} (EVALSHA; loaded again if this Redis forgot it)."""
        script = _SCRIPTS[name]
        evalsha = ("EVALSHA", script.sha, 0, self._prefix, *args)

        def reload(failure: Failure) -> Deferred[Any] | Failure:
            if "NOSCRIPT" in failure.getErrorMessage():
                loaded = self.execute(holder, "SCRIPT", "LOAD", script.source)
                return loaded.addCallback(lambda _: self.execute(holder, *evalsha))
            return failure

        return self.execute(holder, *evalsha).addErrback(reload)

    def let_go(self, holder: object) -> Deferred[None]:
        return self._connection.let_go(holder)

    def close(self) -> Deferred[None]:
        """Close both facets."""
        self.rooms.close()
        return self.storage.close()


@implementer(IRoomStore)
class RedisRoomStore:
    """The saved rooms of a L{RedisStore}."""

    def __init__(self, store: RedisStore) -> None:
        self._store = store

    def _flag(self, name: str, *args: str | bytes) -> Deferred[bool]:
        return self._store.run(self, name, *args).addCallback(lambda reply: reply == 1)

    def save(self, room: SavedRoom) -> Deferred[bool]:
        return self._flag(
            "save", room.room_id, room.room_type, room.node, str(int(room.version)), room.data
        )

    def release(self, room_id: str, node: str) -> Deferred[bool]:
        return self._flag("release", room_id, node)

    def delete(self, room_id: str, node: str) -> Deferred[bool]:
        return self._flag("delete_room", room_id, node)

    def claim(self, node: str, owners: Iterable[str] | None = None) -> Deferred[list[SavedRoom]]:
        which = ("all",) if owners is None else ("of", *sorted(set(owners)))

        def done(reply: list[list[bytes]]) -> list[SavedRoom]:
            rooms = [
                SavedRoom(_text(room_id), _text(room_type), node, int(version), data)
                for room_id, room_type, version, data in reply
            ]
            return sorted(rooms, key=lambda room: room.room_id)

        return self._store.run(self, "claim", node, *which).addCallback(done)

    def load(self, room_id: str) -> Deferred[SavedRoom | None]:
        def done(reply: list[bytes | None]) -> SavedRoom | None:
            room_type, node, version, data = reply
            if room_type is None or node is None or version is None or data is None:
                return None
            return SavedRoom(room_id, _text(room_type), _text(node), int(version), data)

        key = self._store.room_key(room_id)
        loaded = self._store.execute(self, "HMGET", key, "type", "node", "version", "data")
        return loaded.addCallback(done)

    def close(self) -> Deferred[None]:
        return self._store.let_go(self)


@implementer(IPlayerStorage)
class RedisPlayerStorage(WritesOne):
    """The player storage of a L{RedisStore}."""

    def __init__(self, store: RedisStore) -> None:
        self._store = store

    def read(self, owner: str, collection: str, key: str) -> Deferred[tuple[Any, str] | None]:
        def done(raw: bytes | None) -> tuple[Any, str] | None:
            return None if raw is None else _unpack(raw)

        read = self._store.execute(self, "HGET", self._store.storage_key(owner, collection), key)
        return read.addCallback(done)

    def write_many(self, writes: Iterable[tuple[Any, ...]]) -> Deferred[list[str]]:
        try:
            checked = writes_of(writes)
            arguments: list[str | bytes] = []
            for write in checked:
                arguments += [
                    self._store.storage_key(write.owner, write.collection),
                    write.key,
                    *_version_arguments(write.version),
                    encode_value(write.value),
                ]
        except (TypeError, ValueError) as error:
            return fail(error)
        if not checked:
            return succeed([])

        def done(reply: list[Any]) -> list[str]:
            if reply[0] == b"conflict":
                refused = checked[int(reply[1])]
                raise VersionConflict(
                    refused.owner, refused.collection, refused.key, refused.version
                )
            return [_text(version) for version in reply[1]]

        return self._store.run(self, "write", *arguments).addCallback(done)

    def list(self, owner: str, collection: str) -> Deferred[list[tuple[str, Any, str]]]:
        def done(reply: list[bytes]) -> list[tuple[str, Any, str]]:
            objects = []
            for field, raw in zip(reply[::2], reply[1::2]):
                value, version = _unpack(raw)
                objects.append((_text(field), value, version))
            # Sorted by code point, as SQLite and the memory store sort.
            return sorted(objects, key=lambda each: each[0])

        listed = self._store.execute(self, "HGETALL", self._store.storage_key(owner, collection))
        return listed.addCallback(done)

    def delete(
        self, owner: str, collection: str, key: str, version: Version = None
    ) -> Deferred[bool]:
        def done(reply: list[Any]) -> bool:
            if reply[0] == b"conflict":
                raise VersionConflict(owner, collection, key, version)
            return bool(reply[1] == 1)

        ran = self._store.run(
            self,
            "delete_object",
            self._store.storage_key(owner, collection),
            key,
            *_version_arguments(version),
        )
        return ran.addCallback(done)

    def close(self) -> Deferred[None]:
        return self._store.let_go(self)
