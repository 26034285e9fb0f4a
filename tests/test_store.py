"""
The store's contract: the memory, SQLite and Redis backends pass the same
tests of saved rooms and player storage; then what only one of them does
(SQLite's file outliving its process, Redis going away).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, TypeVar

import attrs
import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, gatherResults

from gameframe import VersionConflict
from gameframe.cluster.backend import Unavailable
from gameframe.cluster.redis import RedisCluster
from gameframe.store import IPlayerStorage, IRoomStore, SavedRoom
from gameframe.store.memory import MemoryPlayerStorage, MemoryRoomStore
from gameframe.store.open import StoreSpec, open_stores, parse_store
from gameframe.store.redis import RedisStore
from gameframe.store.sqlite import SqliteStore
from tests._redis import RunningRedis
from zope.interface.verify import verifyObject

T = TypeVar("T")
E = TypeVar("E", bound=Exception)

TIMEOUT = 10.0  # no wait in these tests may take longer


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def bounded(waiting: Deferred[T], timeout: float = TIMEOUT) -> Deferred[T]:
    """Fail with TimeoutError instead of hanging."""
    return waiting.addTimeout(timeout, _reactor())


async def refused(call: Awaitable[Any], kind: type[E]) -> E:
    """The exception C{call} failed with (it must fail with C{kind}; else AssertionError)."""
    try:
        result = await call
    except kind as error:
        return error
    raise AssertionError(f"{call!r} gave {result!r}, not {kind.__name__}")


def room(room_id: str, node: str = "a", version: int = 1, data: bytes = b"{}") -> SavedRoom:
    return SavedRoom(room_id=room_id, room_type="duel", node=node, version=version, data=data)


# -- the three backends behind one harness ------------------------------------------------


@attrs.define
class Opened:
    """The two stores of one backend connection."""

    rooms: Any
    storage: Any
    closer: Any


class MemoryBackend:
    """One pair of dicts: every 'connection' is the same object."""

    def __init__(self) -> None:
        self.opened = Opened(MemoryRoomStore(), MemoryPlayerStorage(), None)

    async def open(self) -> Opened:
        return self.opened

    async def close(self) -> None:
        await self.opened.rooms.close()
        await self.opened.storage.close()


@attrs.define
class SqliteBackend:
    """SQLite files in tmp_path: each open is another connection (and thread) on the same file."""

    path: Path
    stores: list[SqliteStore] = attrs.Factory(list)

    async def open(self) -> Opened:
        store = SqliteStore(self.path, _reactor())
        self.stores.append(store)
        return Opened(store.rooms, store.storage, store)

    async def close(self) -> None:
        for store in self.stores:
            await bounded(store.close())


@attrs.define
class RedisBackend:
    """A real redis-server: each open is another node's connection to it."""

    server: RunningRedis
    stores: list[RedisStore] = attrs.Factory(list)

    async def open(self) -> Opened:
        store = RedisStore.from_url(self.server.url)
        self.stores.append(store)
        await bounded(store.when_connected())
        return Opened(store.rooms, store.storage, store)

    async def close(self) -> None:
        for store in self.stores:
            await bounded(store.close())


Backend = Any  # MemoryBackend | SqliteBackend | RedisBackend


@pytest.fixture(params=["memory", "sqlite", "redis"])
def unopened(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "memory":
        return MemoryBackend()
    if request.param == "sqlite":
        return SqliteBackend(tmp_path / "store.sqlite")
    return RedisBackend(request.getfixturevalue("redis_server"))


@pytest_twisted.async_yield_fixture
async def backend(unopened: Backend) -> AsyncIterator[Backend]:
    try:
        yield unopened
    finally:
        await unopened.close()


@pytest_twisted.async_yield_fixture
async def stores(backend: Backend) -> AsyncIterator[Opened]:
    yield await backend.open()


# -- saved rooms ----------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_both_provide_their_interfaces(stores: Opened) -> None:
    assert verifyObject(IRoomStore, stores.rooms)
    assert verifyObject(IPlayerStorage, stores.storage)


@pytest_twisted.ensureDeferred
async def test_a_saved_room_loads_back(stores: Opened) -> None:
    rooms = stores.rooms
    assert await rooms.load("r1") is None
    data = bytes(range(256)) + "é".encode()
    assert await rooms.save(room("r1", data=data)) is True
    assert await rooms.load("r1") == room("r1", data=data)
    assert await rooms.save(room("r1", version=2, data=b"later")) is True
    assert await rooms.load("r1") == room("r1", version=2, data=b"later")


@pytest_twisted.ensureDeferred
async def test_versions_only_grow(stores: Opened) -> None:
    rooms = stores.rooms
    assert await rooms.save(room("r1", version=5, data=b"five")) is True
    assert await rooms.save(room("r1", version=4, data=b"four")) is False
    assert await rooms.save(room("r1", version=5, data=b"five again")) is False
    assert await rooms.load("r1") == room("r1", version=5, data=b"five")


@pytest_twisted.ensureDeferred
async def test_another_nodes_room_is_not_written(stores: Opened) -> None:
    rooms = stores.rooms
    assert await rooms.save(room("r1", "a", 1, b"a's")) is True
    assert await rooms.save(room("r1", "b", 2, b"b's")) is False
    assert await rooms.delete("r1", "b") is False
    assert await rooms.release("r1", "b") is False
    assert await rooms.load("r1") == room("r1", "a", 1, b"a's")


@pytest_twisted.ensureDeferred
async def test_delete_forgets_the_room(stores: Opened) -> None:
    rooms = stores.rooms
    await rooms.save(room("r1", "a"))
    await rooms.save(room("r2", "a"))
    assert await rooms.delete("r1", "a") is True
    assert await rooms.load("r1") is None
    assert await rooms.delete("r1", "a") is False
    assert await rooms.claim("b") == [room("r2", "b")]


@pytest_twisted.ensureDeferred
async def test_a_released_room_is_claimed_by_another_node(stores: Opened) -> None:
    rooms = stores.rooms
    await rooms.save(room("r1", "a", 3))
    await rooms.save(room("r2", "a", 1))
    assert await rooms.release("r1", "a") is True
    assert await rooms.load("r1") == room("r1", "", 3)
    # Released: only rooms owned by "" are claimed.
    assert await rooms.claim("b", [""]) == [room("r1", "b", 3)]
    assert await rooms.load("r1") == room("r1", "b", 3)
    assert await rooms.load("r2") == room("r2", "a", 1)
    # The old owner's writes are refused now; the new owner's go on.
    assert await rooms.save(room("r1", "a", 4)) is False
    assert await rooms.delete("r1", "a") is False
    assert await rooms.save(room("r1", "b", 4)) is True


@pytest_twisted.ensureDeferred
async def test_any_node_may_save_a_released_room(stores: Opened) -> None:
    rooms = stores.rooms
    await rooms.save(room("r1", "a", 1))
    await rooms.release("r1", "a")
    assert await rooms.save(room("r1", "b", 2)) is True
    assert await rooms.load("r1") == room("r1", "b", 2)


@pytest_twisted.ensureDeferred
async def test_a_dead_owners_rooms_are_claimed(stores: Opened) -> None:
    rooms = stores.rooms
    for room_id, node in [("r3", "dead"), ("r1", "dead"), ("r2", "alive"), ("r4", "other")]:
        await rooms.save(room(room_id, node))
    claimed = await rooms.claim("c", ["dead", "gone"])
    assert claimed == [room("r1", "c"), room("r3", "c")]
    assert await rooms.claim("c", ["dead"]) == []
    assert await rooms.load("r2") == room("r2", "alive")
    # None: every room not already the claimer's.
    assert await rooms.claim("c") == [room("r2", "c"), room("r4", "c")]
    assert await rooms.claim("c") == []


@pytest_twisted.ensureDeferred
async def test_two_claims_at_once_never_share_a_room(backend: Backend) -> None:
    first, second = await backend.open(), await backend.open()
    for number in range(20):
        await first.rooms.save(room(f"r{number:02}", "dead"))
    # Both asked before either answers.
    claims = [first.rooms.claim("b", ["dead"]), second.rooms.claim("c", ["dead"])]
    got_b, got_c = await bounded(gatherResults(claims))
    ids_b = {each.room_id for each in got_b}
    ids_c = {each.room_id for each in got_c}
    assert not ids_b & ids_c
    assert ids_b | ids_c == {f"r{number:02}" for number in range(20)}
    for each in got_b:
        assert (await second.rooms.load(each.room_id)).node == "b"


# -- player storage -------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_read_what_was_written(stores: Opened) -> None:
    storage = stores.storage
    assert await storage.read("ann", "profile", "main") is None
    value = {"name": "Ann ✓", "levels": [1, 2, {"boss": None}], "ratio": 0.5, "on": True}
    version = await storage.write("ann", "profile", "main", value)
    assert isinstance(version, str) and version
    assert await storage.read("ann", "profile", "main") == (value, version)
    # Owners and collections are apart.
    assert await storage.read("bob", "profile", "main") is None
    assert await storage.read("ann", "inventory", "main") is None


@pytest_twisted.ensureDeferred
async def test_every_write_changes_the_version(stores: Opened) -> None:
    storage = stores.storage
    seen = {await storage.write("ann", "c", "k", number) for number in range(3)}
    assert len(seen) == 3
    # Deleted and written again: a version held from before does not match.
    old = await storage.write("ann", "c", "k", "old")
    await storage.delete("ann", "c", "k")
    await storage.write("ann", "c", "k", "new")
    await refused(storage.write("ann", "c", "k", "stale", old), VersionConflict)


@pytest_twisted.ensureDeferred
async def test_versions_guard_writes(stores: Opened) -> None:
    storage = stores.storage
    first = await storage.write("ann", "c", "k", 1, "*")
    conflict = await refused(storage.write("ann", "c", "k", 2, "*"), VersionConflict)
    assert (conflict.owner, conflict.collection, conflict.key, conflict.wanted) == (
        "ann",
        "c",
        "k",
        "*",
    )
    second = await storage.write("ann", "c", "k", 2, first)
    await refused(storage.write("ann", "c", "k", 3, first), VersionConflict)
    assert await storage.read("ann", "c", "k") == (2, second)
    third = await storage.write("ann", "c", "k", 3)
    assert await storage.read("ann", "c", "k") == (3, third)
    # A version named for an object that is not there is a conflict too.
    await refused(storage.write("ann", "c", "other", 1, third), VersionConflict)
    assert await storage.read("ann", "c", "other") is None


@pytest_twisted.ensureDeferred
async def test_write_many_writes_all_or_nothing(stores: Opened) -> None:
    storage = stores.storage
    gold = await storage.write("ann", "inventory", "gold", 100)
    versions = await storage.write_many(
        [
            ("ann", "inventory", "gold", 90, gold),
            ("ann", "inventory", "sword", {"damage": 7}, "*"),
            ("bob", "inventory", "gold", 10),
        ]
    )
    assert len(versions) == 3 and len(set(versions)) == 3
    assert await storage.read("ann", "inventory", "gold") == (90, versions[0])
    assert await storage.read("ann", "inventory", "sword") == ({"damage": 7}, versions[1])
    assert await storage.read("bob", "inventory", "gold") == (10, versions[2])
    # One stale version: nothing of the batch is written.
    conflict = await refused(
        storage.write_many(
            [
                ("bob", "inventory", "gold", 20, versions[2]),
                ("ann", "inventory", "shield", 1),
                ("ann", "inventory", "gold", 0, gold),
            ]
        ),
        VersionConflict,
    )
    assert (conflict.owner, conflict.key, conflict.wanted) == ("ann", "gold", gold)
    assert await storage.read("bob", "inventory", "gold") == (10, versions[2])
    assert await storage.read("ann", "inventory", "shield") is None
    assert await storage.read("ann", "inventory", "gold") == (90, versions[0])


@pytest_twisted.ensureDeferred
async def test_write_many_sees_its_own_earlier_writes(stores: Opened) -> None:
    storage = stores.storage
    # The second write of one key is checked against the first's result.
    await refused(
        storage.write_many([("ann", "c", "k", 1, "*"), ("ann", "c", "k", 2, "*")]),
        VersionConflict,
    )
    assert await storage.read("ann", "c", "k") is None
    first, second = await storage.write_many([("ann", "c", "k", 1, "*"), ("ann", "c", "k", 2)])
    assert first != second
    assert await storage.read("ann", "c", "k") == (2, second)


@pytest_twisted.ensureDeferred
async def test_list_is_sorted_by_key(stores: Opened) -> None:
    storage = stores.storage
    written = {}
    for key in ["b", "a", "é", "Z", "a:b", "ab"]:
        written[key] = await storage.write("ann", "c", key, {"key": key})
    await storage.write("ann", "other", "x", 1)
    await storage.write("ann:c", "", "y", 1)  # an owner and collection that look alike
    listed = await storage.list("ann", "c")
    assert listed == [(key, {"key": key}, written[key]) for key in sorted(written)]
    assert await storage.list("nobody", "c") == []


@pytest_twisted.ensureDeferred
async def test_delete_with_and_without_a_version(stores: Opened) -> None:
    storage = stores.storage
    version = await storage.write("ann", "c", "k", 1)
    await refused(storage.delete("ann", "c", "k", "not-it"), VersionConflict)
    await refused(storage.delete("ann", "c", "k", "*"), VersionConflict)
    assert await storage.read("ann", "c", "k") == (1, version)
    assert await storage.delete("ann", "c", "k", version) is True
    assert await storage.read("ann", "c", "k") is None
    assert await storage.delete("ann", "c", "k") is False
    await storage.write("ann", "c", "k", 2)
    assert await storage.delete("ann", "c", "k") is True
    assert await storage.list("ann", "c") == []


@pytest_twisted.ensureDeferred
async def test_values_round_trip_as_json(stores: Opened) -> None:
    storage = stores.storage
    values = [
        None,
        0,
        -(2**53),
        1.25,
        "",
        "ünïcødé ✓ 𝄞 with spaces and \"quotes\"",
        [],
        {},
        {"nested": {"deeper": [{"a": [1, None, True, "x"]}]}, "ключ": "значение"},
    ]
    for number, value in enumerate(values):
        await storage.write("ann", "json", f"k{number}", value)
    for number, value in enumerate(values):
        stored = await storage.read("ann", "json", f"k{number}")
        assert stored is not None and stored[0] == value


@pytest_twisted.ensureDeferred
async def test_what_json_cannot_hold_is_refused(stores: Opened) -> None:
    storage = stores.storage
    await refused(storage.write("ann", "c", "k", {1, 2}), TypeError)
    await refused(storage.write_many([("ann", "c", "k", 1), ("ann", "c", "j", object())]), TypeError)
    await refused(storage.write_many([("ann", "c")]), ValueError)
    assert await storage.list("ann", "c") == []


# -- SQLite ------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_sqlite_keeps_everything_across_close_and_open(tmp_path: Path) -> None:
    path = tmp_path / "kept.sqlite"
    store = SqliteStore(path, _reactor())
    await store.rooms.save(room("r1", "a", 7, b"\x00snapshot"))
    version = await store.storage.write("ann", "wins", "tictactoe", {"wins": 3})
    await bounded(store.close())

    again = SqliteStore(path, _reactor())
    try:
        assert await again.rooms.load("r1") == room("r1", "a", 7, b"\x00snapshot")
        assert await again.storage.read("ann", "wins", "tictactoe") == ({"wins": 3}, version)
        assert await again.storage.write("ann", "wins", "tictactoe", {"wins": 4}) != version
    finally:
        await bounded(again.close())
    with sqlite3.connect(path) as direct:
        assert direct.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest_twisted.ensureDeferred
async def test_sqlite_answers_from_its_own_thread(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "threaded.sqlite", _reactor())
    try:
        saving = store.rooms.save(room("r1"))
        reading = store.storage.read("ann", "c", "k")
        # Nothing ran on the reactor's thread: the answers come later.
        assert not saving.called and not reading.called
        assert await bounded(saving) is True
        assert await bounded(reading) is None
    finally:
        await bounded(store.close())


@pytest_twisted.ensureDeferred
async def test_a_closed_sqlite_store_refuses_calls(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "closed.sqlite", _reactor())
    await store.rooms.save(room("r1"))
    await bounded(store.rooms.close())
    # The file stays open for the player storage until it closes too.
    assert await store.storage.write("ann", "c", "k", 1)
    await refused(store.rooms.load("r1"), RuntimeError)
    await bounded(store.storage.close())
    await refused(store.storage.read("ann", "c", "k"), RuntimeError)
    # Closing again is harmless.
    await bounded(store.close())


# -- Redis -------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_redis_down_fails_fast(redis_server: RunningRedis) -> None:
    store = RedisStore.from_url(redis_server.url)
    try:
        await bounded(store.when_connected())
        await store.rooms.save(room("r1"))
        redis_server.stop()
        # The first call may be the one that finds the connection gone.
        await refused(bounded(store.rooms.load("r1")), Unavailable)
        calls = [
            store.rooms.save(room("r2")),
            store.rooms.claim("b"),
            store.rooms.load("r1"),
            store.storage.read("ann", "c", "k"),
            store.storage.write("ann", "c", "k", 1),
            store.storage.list("ann", "c"),
        ]
        for call in calls:
            assert call.called  # at once, not after a timeout
            await refused(call, Unavailable)
    finally:
        await bounded(store.close())


@pytest_twisted.ensureDeferred
async def test_redis_store_shares_the_clusters_connection_and_prefix(
    redis_server: RunningRedis,
) -> None:
    cluster = RedisCluster.from_url(redis_server.url, prefix="game1:")
    try:
        await bounded(cluster.when_connected())
        stores = open_stores(StoreSpec("redis"), _reactor(), cluster)
        assert stores.rooms is not None
        await stores.rooms.save(room("r1"))
        await stores.storage.write("ann", "c", "k", 1)
        keys = redis_server.command("KEYS", "*").decode()
        assert "game1:saved:room:r1" in keys and "game1:storage:3:ann:c" in keys
        assert "gf:" not in keys
        await bounded(stores.close())
        # The cluster's connection is the cluster's: closing the stores keeps it.
        assert (await bounded(cluster.execute("PING"))) in (b"PONG", "PONG")
    finally:
        await bounded(cluster.close())


@pytest_twisted.ensureDeferred
async def test_redis_scripts_load_again_after_a_flush(redis_server: RunningRedis) -> None:
    store = RedisStore.from_url(redis_server.url)
    try:
        await bounded(store.when_connected())
        await store.storage.write("ann", "c", "k", 1)
        redis_server.command("SCRIPT", "FLUSH")
        assert await store.storage.write("ann", "c", "k", 2)
        assert await store.rooms.save(room("r1")) is True
    finally:
        await bounded(store.close())


# -- choosing a store ----------------------------------------------------------------------


def test_parse_store_reads_the_two_forms(tmp_path: Path) -> None:
    assert parse_store("redis") == StoreSpec("redis")
    assert parse_store(f"sqlite:{tmp_path}/game.sqlite") == StoreSpec(
        "sqlite", tmp_path / "game.sqlite"
    )


@pytest.mark.parametrize(
    "value, words",
    [
        ("", "--store is sqlite:PATH or redis, not ''"),
        ("postgres:x", "--store is sqlite:PATH or redis, not 'postgres:x'"),
        ("redis:x", "--store is sqlite:PATH or redis, not 'redis:x'"),
        ("sqlite", "--store is sqlite:PATH or redis, not 'sqlite'"),
        ("sqlite:", "--store sqlite:PATH needs a file path after 'sqlite:'"),
        ("sqlite:/no/such/dir/x.sqlite", "the directory '/no/such/dir' does not exist"),
    ],
)
def test_parse_store_refuses_other_values(value: str, words: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_store(value)
    assert words in str(raised.value)
    assert "\n" not in str(raised.value)


def test_parse_store_refuses_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is a directory"):
        parse_store(f"sqlite:{tmp_path}")


@pytest_twisted.ensureDeferred
async def test_without_a_store_player_storage_is_in_memory() -> None:
    stores = open_stores(None, _reactor())
    assert stores.rooms is None
    assert isinstance(stores.storage, MemoryPlayerStorage)
    version = await stores.storage.write("ann", "c", "k", 1)
    assert await stores.storage.read("ann", "c", "k") == (1, version)
    await stores.close()


def test_redis_store_needs_the_cluster() -> None:
    with pytest.raises(ValueError, match="give --redis too"):
        open_stores(StoreSpec("redis"), _reactor())


@pytest_twisted.ensureDeferred
async def test_open_stores_opens_the_sqlite_file(tmp_path: Path) -> None:
    stores = open_stores(parse_store(f"sqlite:{tmp_path}/opened.sqlite"), _reactor())
    assert stores.rooms is not None
    try:
        assert await stores.rooms.save(room("r1")) is True
    finally:
        await bounded(stores.close())
    assert (tmp_path / "opened.sqlite").exists()
