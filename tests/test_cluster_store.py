"""
The cluster store's contract: MemoryCluster (on task.Clock) and RedisCluster
(on a real redis-server) pass the same tests; then what only Redis can do
(reconnecting, reloading its scripts, racing nodes on one server).
"""

from __future__ import annotations

import signal
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

import attrs
import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import Clock, deferLater

import gameframe.cluster.redis as redis_module
from gameframe.cluster.backend import (
    RESERVATION_TTL,
    Beat,
    Clear,
    Fenced,
    Gone,
    NodeLoad,
    Put,
    Reservation,
    RoomRecord,
    Seat,
    Unavailable,
    Unseat,
)
from gameframe.cluster.backend import DEATH_MEMORY
from gameframe.cluster.memory import MemoryCluster
from gameframe.cluster.redis import RedisCluster, _parse_url
from gameframe.codec import GameError
from gameframe.vocabulary import ROOM_FULL, ROOM_LOCKED, ROOM_NOT_FOUND
from tests._redis import RunningRedis

T = TypeVar("T")
E = TypeVar("E", bound=Exception)

TIMEOUT = 10.0  # no wait in these tests may take longer
EVENTUALLY = 5.0  # how long Redis may take to let a short lease or reservation lapse
LONG = 1000.0  # a lease that lasts the test
SHORT = 0.05  # a lease (or reservation) that lapses at once
RETRYABLE = (AssertionError, GameError, Fenced)


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def bounded(waiting: Deferred[T], timeout: float = TIMEOUT) -> Deferred[T]:
    """Fail with TimeoutError instead of hanging."""
    return waiting.addTimeout(timeout, _reactor())


def record(
    room_id: str,
    node: str = "a",
    *,
    room_type: str = "duel",
    filter_key: str = "f",
    max_players: int | None = 2,
    running: bool = True,
    private: bool = False,
    locked: bool = False,
) -> RoomRecord:
    return RoomRecord(
        room_id=room_id,
        room_type=room_type,
        node=node,
        entry={"room_id": room_id, "room_type": room_type, "node": node, "clients": 0, "ü": [1.5]},
        options={"mode": room_id, "nested": {"k": None}},
        filter_key=filter_key,
        max_players=max_players,
        running=running,
        private=private,
        locked=locked,
    )


def load(node: str, **fields: Any) -> NodeLoad:
    return NodeLoad(node=node, **fields)


# -- the two stores behind one harness --------------------------------------------------


class MemoryBackend:
    """MemoryCluster on a task.Clock: time passes when a test says so."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)  # not at 0: a time like a real clock's
        self.store: Any = MemoryCluster(self.clock)

    async def start(self) -> None:
        pass

    async def peer(self, **options: Any) -> Any:
        """Another process on the same store (memory: the same object)."""
        return self.store

    async def eventually(self, attempt: Callable[[], Awaitable[T]], advance: float) -> T:
        """Let C{advance} seconds pass, then C{attempt} must succeed."""
        self.clock.advance(advance)
        return await attempt()

    async def settle(self, check: Callable[[], bool]) -> None:
        """Let what is in flight arrive; then C{check} holds."""
        self.clock.advance(0)
        assert check()

    async def down(self) -> None:
        self.store.down()

    async def up(self) -> None:
        self.store.up()

    async def close(self) -> None:
        pass


@attrs.define
class RedisBackend:
    """RedisCluster on a real redis-server: time is real, waits are bounded polls."""

    server: RunningRedis
    stores: list[RedisCluster] = attrs.Factory(list)

    @property
    def store(self) -> RedisCluster:
        return self.stores[0]

    async def start(self) -> None:
        await self.peer()

    async def peer(self, **options: Any) -> RedisCluster:
        store = RedisCluster.from_url(self.server.url, **options)
        self.stores.append(store)
        await bounded(store.when_connected())
        return store

    async def eventually(self, attempt: Callable[[], Awaitable[T]], advance: float) -> T:
        """Retry C{attempt} (every 10 ms, for at most EVENTUALLY seconds) until it succeeds."""
        deadline = _reactor().seconds() + EVENTUALLY
        while True:
            try:
                return await attempt()
            except RETRYABLE:
                if _reactor().seconds() > deadline:
                    raise
            await deferLater(_reactor(), 0.01, lambda: None)

    async def settle(self, check: Callable[[], bool]) -> None:
        async def attempt() -> None:
            assert check()

        await self.eventually(attempt, 0)

    async def down(self) -> None:
        self.server.stop()

    async def up(self) -> None:
        self.server.start()
        for store in self.stores:
            await bounded(store.when_connected())

    async def close(self) -> None:
        for store in self.stores:
            await bounded(store.close())


Backend = Any  # MemoryBackend | RedisBackend


@pytest.fixture(params=["memory", "redis"])
def unstarted(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        return MemoryBackend()
    return RedisBackend(request.getfixturevalue("redis_server"))


@pytest_twisted.async_yield_fixture
async def backend(unstarted: Backend) -> AsyncIterator[Backend]:
    await unstarted.start()
    try:
        yield unstarted
    finally:
        await unstarted.close()


async def refused(call: Awaitable[Any], kind: type[E]) -> E:
    """The exception C{call} failed with (it must fail with C{kind}; else AssertionError)."""
    try:
        result = await call
    except kind as error:
        return error
    raise AssertionError(f"{call!r} gave {result!r}, not {kind.__name__}")


async def beat(store: Any, node: str, ttl: float = LONG, since: float = 0.0) -> Beat:
    result: Beat = await store.beat(load(node), ttl, since)
    return result


def nodes(result: Beat) -> set[str]:
    return {each.node for each in result.nodes}


# -- membership -------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_beat_says_who_is_alive(backend: Backend) -> None:
    store = backend.store
    first = await store.beat(load("a", players=3, rooms=2, cpu=0.25, draining=True), LONG, 0.0)
    assert isinstance(first.now, float)
    assert first.nodes == (load("a", players=3, rooms=2, cpu=0.25, draining=True),)
    assert first.deaths == ()
    second = await store.beat(load("b", players=1), LONG, 0.0)
    assert set(second.nodes) == {
        load("a", players=3, rooms=2, cpu=0.25, draining=True),
        load("b", players=1),
    }
    assert second.now >= first.now
    # A beat renews the node's lease and replaces its load.
    third = await store.beat(load("a", players=4), LONG, 0.0)
    assert set(third.nodes) == {load("a", players=4), load("b", players=1)}


@pytest_twisted.ensureDeferred
async def test_a_lapsed_lease_is_a_death_and_its_rooms_go(backend: Backend) -> None:
    store = backend.store
    await beat(store, "a")
    await beat(store, "b")
    await store.update("a", [Put(record("r1", "a")), Seat("r1", "p1")])
    await store.update("b", [Put(record("r2", "b", max_players=None))])
    await beat(store, "a", ttl=SHORT)

    async def reaped() -> Beat:
        result = await beat(store, "b")
        assert "a" in result.deaths
        return result

    death = await backend.eventually(reaped, SHORT)
    assert nodes(death) == {"b"}
    assert await store.listing(None) == [record("r2", "b").entry]
    assert await store.seat_of("p1") is None
    error = await refused(store.reserve("b", "r1", "p2"), GameError)
    assert error.code == ROOM_NOT_FOUND
    # Matchmaking never finds the dead node's room: r2 (b's) takes the player.
    reservation = await store.match("b", "duel", "f", "p2", record("new", "b"))
    assert (reservation.room_id, reservation.created) == ("r2", False)
    # Deaths are reported since a time: the death's beat is at its time.
    assert "a" in (await beat(store, "b", since=death.now)).deaths
    assert (await beat(store, "b", since=death.now + 60)).deaths == ()


@pytest_twisted.ensureDeferred
async def test_a_dead_node_is_fenced(backend: Backend) -> None:
    store = backend.store
    await beat(store, "a", ttl=SHORT)

    async def reaped() -> None:
        assert "a" in (await beat(store, "b")).deaths

    await backend.eventually(reaped, SHORT)
    await refused(beat(store, "a"), Fenced)
    await refused(store.update("a", [Put(record("r1", "a"))]), Fenced)
    await refused(store.match("a", "duel", "f", "p1", record("r1", "a")), Fenced)
    await refused(store.reserve("a", "r1", "p1"), Fenced)
    assert await store.listing(None) == []
    # Leaving is never refused (there is nothing left to remove).
    await store.leave("a")
    await refused(beat(store, "a"), Fenced)


@pytest_twisted.ensureDeferred
async def test_another_process_under_a_live_name_kills_the_name(backend: Backend) -> None:
    store = backend.store
    await store.beat(load("a", token="first"), LONG, 0.0)
    await store.update("a", [Put(record("r1", "a")), Seat("r1", "p1")])
    # The same process renews its lease as often as it likes.
    await store.beat(load("a", token="first"), LONG, 0.0)
    # A restarted process under the same name: the first one is dead, its
    # rooms are gone, and the newcomer must take another name.
    await refused(store.beat(load("a", token="second"), LONG, 0.0), Fenced)
    seen = await beat(store, "b")
    assert "a" in seen.deaths and nodes(seen) == {"b"}
    assert await store.listing(None) == []
    assert await store.seat_of("p1") is None
    await store.beat(load("a.2", token="second"), LONG, 0.0)


@pytest_twisted.ensureDeferred
async def test_a_death_is_forgotten_after_the_death_memory(backend: Backend) -> None:
    store = await backend.peer(death_memory=0.2)
    await beat(store, "a", ttl=SHORT)

    async def reaped() -> None:
        assert "a" in (await beat(store, "b")).deaths

    await backend.eventually(reaped, SHORT)
    await refused(beat(store, "a"), Fenced)

    async def forgotten() -> Beat:
        assert "a" not in (await beat(store, "b")).deaths
        return await beat(store, "a")

    back = await backend.eventually(forgotten, DEATH_MEMORY + 1)
    assert nodes(back) == {"a", "b"}


@pytest_twisted.ensureDeferred
async def test_leave_removes_the_rooms_without_a_death(backend: Backend) -> None:
    store = backend.store
    await beat(store, "a")
    await beat(store, "b")
    await store.update("a", [Put(record("r1", "a")), Put(record("r2", "a")), Seat("r1", "p1")])
    await store.update("b", [Put(record("r3", "b"))])
    await store.leave("a")
    result = await beat(store, "b")
    assert nodes(result) == {"b"} and result.deaths == ()
    assert await store.listing(None) == [record("r3", "b").entry]
    assert await store.seat_of("p1") is None
    # It holds no lease now; it may take one again.
    await refused(store.update("a", []), Unavailable)
    assert nodes(await beat(store, "a")) == {"a", "b"}


# -- directory updates --------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_update_needs_a_lease(backend: Backend) -> None:
    store = backend.store
    await refused(store.update("a", [Put(record("r1", "a"))]), Unavailable)
    await refused(store.match("a", "duel", "f", "p1", record("r1", "a")), Unavailable)
    await refused(store.reserve("a", "r1", "p1"), Unavailable)
    await beat(store, "a")
    await store.update("a", [Put(record("r1", "a"))])
    assert await store.listing("duel") == [record("r1", "a").entry]


@pytest_twisted.ensureDeferred
async def test_put_seat_unseat_gone(backend: Backend) -> None:
    store = backend.store
    await beat(store, "a")
    await store.update("a", [Put(record("r1", "a")), Seat("r1", "p1"), Seat("nowhere", "p9")])
    assert await store.seat_of("p1") == ("r1", "a")
    assert await store.seat_of("p9") is None  # a seat in no room is not kept
    await store.update("a", [Unseat("r1", "p1")])
    assert await store.seat_of("p1") is None
    # Seats count against max_players, and never lapse.
    await store.update("a", [Seat("r1", "p1"), Seat("r1", "p2")])
    error = await refused(store.reserve("a", "r1", "p3"), GameError)
    assert error.code == ROOM_FULL
    await store.update("a", [Unseat("r1", "p2")])
    assert (await store.reserve("a", "r1", "p3")).room_id == "r1"
    # Unseating from another room leaves the seat where it is.
    await store.update("a", [Put(record("r2", "a")), Unseat("r2", "p1")])
    assert await store.seat_of("p1") == ("r1", "a")
    # A Put updates the record in place (its seats stay).
    changed = attrs.evolve(record("r1", "a"), entry={"room_id": "r1", "clients": 1})
    await store.update("a", [Put(changed)])
    assert await store.listing("duel") == [{"room_id": "r1", "clients": 1}, record("r2", "a").entry]
    assert await store.seat_of("p1") == ("r1", "a")
    await store.update("a", [Gone("r1"), Gone("never")])
    assert await store.seat_of("p1") is None
    assert await store.listing(None) == [record("r2", "a").entry]
    error = await refused(store.reserve("a", "r1", "p1"), GameError)
    assert error.code == ROOM_NOT_FOUND


@pytest_twisted.ensureDeferred
async def test_clear_forgets_only_the_nodes_rooms(backend: Backend) -> None:
    store = backend.store
    await beat(store, "a")
    await beat(store, "b")
    await store.update("a", [Put(record("r1", "a")), Put(record("r2", "a")), Seat("r1", "p1")])
    await store.update("b", [Put(record("r3", "b"))])
    await store.update("a", [Clear(), Put(record("r2", "a"))])
    assert await store.listing("duel") == [record("r3", "b").entry, record("r2", "a").entry]
    assert await store.seat_of("p1") is None


@pytest_twisted.ensureDeferred
async def test_listing_per_type_and_all(backend: Backend) -> None:
    store = backend.store
    await beat(store, "a")
    await beat(store, "b")
    await store.update(
        "a",
        [
            Put(record("d1", "a")),
            Put(record("c1", "a", room_type="chat")),
            Put(record("hidden", "a", private=True)),
            Put(record("placed", "a", running=False)),
            Put(record("full", "a", locked=True)),
        ],
    )
    await store.update("b", [Put(record("d2", "b")), Put(record("c2", "b", room_type="chat"))])
    duel = [record("d1", "a").entry, record("full", "a").entry, record("d2", "b").entry]
    chat = [record("c1", "a", room_type="chat").entry, record("c2", "b", room_type="chat").entry]
    assert await store.listing("duel") == duel
    assert await store.listing("chat") == chat
    assert await store.listing(None) == duel + chat  # types in the order they first appeared
    assert await store.listing("nothing") == []
    # A room that starts running is listed; one made private is not.
    await store.update("a", [Put(record("placed", "a")), Put(record("d1", "a", private=True))])
    assert await store.listing("duel") == [
        record("placed", "a").entry,
        record("full", "a").entry,
        record("d2", "b").entry,
    ]


# -- matchmaking -----------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_match_reserves_in_a_matching_room(backend: Backend) -> None:
    store = backend.store
    await beat(store, "a")
    await beat(store, "b")
    await store.update("a", [Put(record("r1", "a", max_players=3))])
    reservation = await store.match("b", "duel", "f", "p1", record("new", "b"))
    assert reservation == Reservation(
        room_id="r1", node="a", room_type="duel", options=record("r1").options, created=False
    )
    # Another filter key, or another type with that key: a new room.
    other = await store.match("b", "duel", "g", "p2", record("n2", "b", filter_key="g"))
    assert other == Reservation(
        room_id="n2", node="b", room_type="duel", options=record("n2").options, created=True
    )
    chat = await store.match("b", "chat", "f", "p3", record("n3", "b", room_type="chat"))
    assert (chat.room_id, chat.created) == ("n3", True)
    # No filter key: always a new room, even with free seats about.
    alone = await store.match("b", "duel", None, "p4", record("n4", "b"))
    assert (alone.room_id, alone.created) == ("n4", True)
    # A placed room (not running yet) is matched like a running one.
    await store.update("b", [Put(record("n6", "b", filter_key="h", running=False))])
    assert (await store.match("a", "duel", "h", "p5", record("n5", "a"))).room_id == "n6"


@pytest_twisted.ensureDeferred
async def test_match_respects_max_players_and_order(backend: Backend) -> None:
    store = backend.store
    await beat(store, "a")
    await store.update("a", [Put(record("r1", "a")), Put(record("r2", "a")), Seat("r1", "p0")])
    # r1 first (one seat is taken), then r2, then a new room.
    got = [await store.match("a", "duel", "f", p, record(f"n-{p}", "a")) for p in ["p1", "p2", "p3", "p4"]]
    assert [(r.room_id, r.created) for r in got] == [
        ("r1", False),
        ("r2", False),
        ("r2", False),
        ("n-p4", True),
    ]
    # The new room is open with one seat left, then it is full too.
    assert (await store.match("a", "duel", "f", "p5", record("x", "a"))).room_id == "n-p4"
    assert (await store.match("a", "duel", "f", "p6", record("y", "a"))).created
    # No limit: one room takes everyone.
    await store.update("a", [Put(record("big", "a", filter_key="g", max_players=None))])
    for i in range(20):
        assert (await store.match("a", "duel", "g", f"q{i}", record(f"z{i}", "a"))).room_id == "big"


@pytest_twisted.ensureDeferred
async def test_match_skips_rooms_not_matchable(backend: Backend) -> None:
    store = backend.store
    await beat(store, "a")
    await store.update(
        "a", [Put(record("private", "a", private=True)), Put(record("locked", "a", locked=True))]
    )
    placed = await store.match("a", "duel", "f", "p1", record("new", "a"))
    assert (placed.room_id, placed.created) == ("new", True)
    # Unlocked, it is matchable again (after the rooms that stayed open).
    await store.update("a", [Put(record("locked", "a"))])
    assert (await store.match("a", "duel", "f", "p2", record("x", "a"))).room_id == "new"
    assert (await store.match("a", "duel", "f", "p3", record("y", "a"))).room_id == "locked"


@pytest_twisted.ensureDeferred
async def test_rooms_of_a_node_whose_lease_lapsed_are_skipped_before_it_is_reaped(
    backend: Backend,
) -> None:
    store = backend.store
    await beat(store, "a", ttl=SHORT)
    await store.update("a", [Put(record("r1", "a")), Seat("r1", "p1")])
    await store.update("a", [Put(record("r2", "a", room_type="chat"))])

    async def lapsed() -> None:
        error = await refused(store.reserve("a", "r1", "p2"), GameError)
        assert error.code == ROOM_NOT_FOUND

    await backend.eventually(lapsed, SHORT)
    assert await store.listing(None) == []
    assert await store.seat_of("p1") is None
    placed = await store.match("a", "duel", "f", "p2", record("new", "a"))
    assert placed.created
    # No one reaped it: the node still holds its (lapsed) lease, its updates are taken.
    await store.update("a", [Put(record("r3", "a"))])
    assert nodes(await beat(store, "a")) == {"a"}
    assert await store.listing(None) == [
        record(room_id, "a", room_type=room_type).entry
        for room_id, room_type in [("r1", "duel"), ("new", "duel"), ("r3", "duel"), ("r2", "chat")]
    ]


@pytest_twisted.ensureDeferred
async def test_reserve_refusals(backend: Backend) -> None:
    store = backend.store
    await beat(store, "a")
    await store.update(
        "a",
        [
            Put(record("locked", "a", locked=True)),
            Put(record("one", "a", max_players=1)),
            Put(record("private", "a", private=True)),
        ],
    )
    missing = await refused(store.reserve("a", "nope", "p1"), GameError)
    assert (missing.code, missing.message) == (ROOM_NOT_FOUND, "there is no room 'nope'")
    locked = await refused(store.reserve("a", "locked", "p1"), GameError)
    assert (locked.code, locked.message) == (ROOM_LOCKED, "room locked is locked")
    assert (await store.reserve("a", "one", "p1")).room_id == "one"
    full = await refused(store.reserve("a", "one", "p2"), GameError)
    assert (full.code, full.message) == (ROOM_FULL, "room one is full")
    # Private rooms are joined by id.
    assert await store.reserve("a", "private", "p3") == Reservation(
        room_id="private",
        node="a",
        room_type="duel",
        options=record("private").options,
        created=False,
    )


@pytest_twisted.ensureDeferred
async def test_a_reservation_lapses_and_frees_its_seat(backend: Backend) -> None:
    store = backend.store
    quick = await backend.peer(reservation_ttl=SHORT)
    await beat(store, "a")
    await store.update("a", [Put(record("r1", "a")), Seat("r1", "p0")])
    assert (await quick.reserve("a", "r1", "p1")).room_id == "r1"
    full = await refused(store.reserve("a", "r1", "p2"), GameError)
    assert full.code == ROOM_FULL

    async def freed() -> Reservation:
        result: Reservation = await store.reserve("a", "r1", "p2")
        return result

    assert (await backend.eventually(freed, RESERVATION_TTL)).room_id == "r1"
    # The seated player kept the other seat.
    full = await refused(store.reserve("a", "r1", "p3"), GameError)
    assert full.code == ROOM_FULL
    assert await store.seat_of("p0") == ("r1", "a")


@pytest_twisted.ensureDeferred
async def test_concurrent_matches_fill_rooms_exactly(backend: Backend) -> None:
    # Three processes (on Redis: three connections), all 50 calls in flight at once.
    stores = [backend.store, await backend.peer(), await backend.peer()]
    for node in ["n0", "n1", "n2"]:
        await beat(backend.store, node)
    waiting = [
        stores[i % 3].match(
            f"n{i % 3}",
            "arena",
            "f",
            f"p{i}",
            record(f"r{i}", f"n{i % 3}", room_type="arena", max_players=10),
        )
        for i in range(50)
    ]
    got: list[Reservation] = await bounded(gatherResults(waiting))
    per_room: dict[str, int] = {}
    for reservation in got:
        per_room[reservation.room_id] = per_room.get(reservation.room_id, 0) + 1
    assert len(per_room) == 5
    assert sorted(per_room.values()) == [10] * 5
    assert sum(r.created for r in got) == 5


# -- the store going away, and the bus ------------------------------------------------------


@attrs.define
class Inbox:
    got: list[bytes] = attrs.Factory(list)
    lost: int = 0

    def receive(self, batch: bytes) -> None:
        self.got.append(batch)

    def on_lost(self) -> None:
        self.lost += 1


@pytest_twisted.ensureDeferred
async def test_the_bus_delivers_batches_in_order(backend: Backend) -> None:
    store = backend.store
    a, b = Inbox(), Inbox()
    await store.listen("a", a.receive, a.on_lost)
    await store.listen("b", b.receive, b.on_lost)
    batches = [b'{"n": %d}\n{"x": "\xc3\xa9"}\n' % i for i in range(30)] + [b"", b"\x00\xff", b"12"]
    batches.append(b"$3\r\nbig\r\n*1\r\n" + b"\n".join(b"line %d" % i for i in range(30_000)))
    for batch in batches:
        await store.send("a", batch)
    await store.send("b", b"for b")
    await store.send("nobody", b"lost")
    await backend.settle(lambda: len(a.got) == len(batches) and len(b.got) == 1)
    assert a.got == batches and b.got == [b"for b"]
    # Listening again replaces the receiver.
    again = Inbox()
    await store.listen("a", again.receive, again.on_lost)
    await store.send("a", b"once")
    await backend.settle(lambda: again.got == [b"once"])
    assert a.got == batches
    assert (a.lost, b.lost, again.lost) == (0, 0, 0)


@pytest_twisted.ensureDeferred
async def test_the_store_going_away(backend: Backend) -> None:
    store = backend.store
    await beat(store, "a")
    await store.update("a", [Put(record("r1", "a")), Seat("r1", "p1")])
    inbox = Inbox()
    await store.listen("a", inbox.receive, inbox.on_lost)
    await backend.down()
    await refused(beat(store, "a"), Unavailable)
    await backend.settle(lambda: inbox.lost == 1)
    # Every call fails at once while it is away.
    calls = [
        store.beat(load("a"), LONG, 0.0),
        store.leave("a"),
        store.update("a", []),
        store.match("a", "duel", "f", "p2", record("r2", "a")),
        store.reserve("a", "r1", "p2"),
        store.seat_of("p1"),
        store.listing(None),
        store.send("a", b"x"),
        store.listen("a", inbox.receive, inbox.on_lost),
    ]
    for call in calls:
        assert call.called
        await refused(call, Unavailable)
    await backend.up()
    # Back, empty: a beat takes the lease again, the node publishes again.
    assert nodes(await beat(store, "a")) == {"a"}
    assert await store.listing(None) == []
    assert await store.seat_of("p1") is None
    await store.update("a", [Put(record("r1", "a"))])
    assert await store.listing(None) == [record("r1", "a").entry]
    await store.listen("a", inbox.receive, inbox.on_lost)
    await store.send("a", b"again")
    await backend.settle(lambda: inbox.got == [b"again"])
    assert inbox.lost == 1


# -- Redis only ------------------------------------------------------------------------------


def test_redis_urls() -> None:
    assert _parse_url("redis://127.0.0.1:7000/3") == ("127.0.0.1", 7000, 3, None, None)
    assert _parse_url("redis://example.org") == ("example.org", 6379, 0, None, None)
    assert _parse_url("redis://:s%40cret@h:1/") == ("h", 1, 0, None, "s@cret")
    assert _parse_url("redis://me:pw@h/2") == ("h", 6379, 2, "me", "pw")
    for bad in ["http://h:1/0", "redis://h:1/x", "redis:///0", "redis://h:port/0"]:
        with pytest.raises(ValueError):
            _parse_url(bad)


@pytest_twisted.async_yield_fixture
async def redis(redis_server: RunningRedis) -> AsyncIterator[RedisBackend]:
    backend = RedisBackend(redis_server)
    await backend.start()
    try:
        yield backend
    finally:
        await backend.close()


@pytest_twisted.ensureDeferred
async def test_redis_reloads_scripts_it_forgot(redis: RedisBackend) -> None:
    await beat(redis.store, "a")
    assert redis.server.command("SCRIPT", "FLUSH").startswith(b"+OK")
    assert nodes(await beat(redis.store, "a")) == {"a"}
    await redis.store.update("a", [Put(record("r1", "a"))])
    assert await redis.store.listing(None) == [record("r1", "a").entry]


@pytest_twisted.ensureDeferred
async def test_redis_prefixes_keep_clusters_apart(redis: RedisBackend) -> None:
    other = await redis.peer()
    await beat(redis.store, "a")
    await redis.store.update("a", [Put(record("r1", "a"))])
    separate = RedisCluster.from_url(redis.server.url, prefix="other:")
    redis.stores.append(separate)
    await bounded(separate.when_connected())
    assert nodes(await beat(separate, "b")) == {"b"}
    assert await separate.listing(None) == []
    assert await other.listing(None) == [record("r1", "a").entry]
    keys = redis.server.command("KEYS", "*")
    assert b"gf:room:r1" in keys and b"other:leases" in keys


@pytest_twisted.ensureDeferred
async def test_redis_that_stops_answering_fails_calls_within_the_reply_timeout(
    redis_server: RunningRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_module, "REPLY_TIMEOUT", 0.2)
    backend = RedisBackend(redis_server)
    await backend.start()
    store = backend.store
    process = redis_server.process
    assert process is not None
    try:
        await beat(store, "a")
        inbox = Inbox()
        await store.listen("a", inbox.receive, inbox.on_lost)
        process.send_signal(signal.SIGSTOP)
        try:
            await refused(bounded(store.beat(load("a"), LONG, 0.0)), Unavailable)
            await backend.settle(lambda: inbox.lost == 1)
        finally:
            process.send_signal(signal.SIGCONT)
        await bounded(store.when_connected())
        assert nodes(await beat(store, "a")) == {"a"}
        await store.listen("a", inbox.receive, inbox.on_lost)
        await store.send("a", b"back")
        await backend.settle(lambda: inbox.got == [b"back"])
    finally:
        await backend.close()


@pytest_twisted.ensureDeferred
async def test_redis_close_stops_everything(redis: RedisBackend) -> None:
    store = redis.store
    inbox = Inbox()
    await store.listen("a", inbox.receive, inbox.on_lost)
    await bounded(store.close())
    await refused(store.beat(load("a"), LONG, 0.0), Unavailable)
    await refused(store.listen("a", inbox.receive, inbox.on_lost), Unavailable)
    await refused(store.when_connected(), Unavailable)
    assert inbox.lost == 0
    # Only the connection asking is left.
    await redis.settle(lambda: redis.server.command("CLIENT", "LIST").count(b" cmd=") == 1)
