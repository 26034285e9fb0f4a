"""Fakes for room authors: test a Room in memory, instantly, on a fake clock."""

from __future__ import annotations

import itertools
from typing import Any, Callable, Mapping

import orjson
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from zope.interface import implementer

from gameframe._host import RoomHost
from gameframe.codec import Message, encode
from gameframe.cluster.memory import MemoryCluster
from gameframe.cluster.node import ClusterNode
from gameframe.cluster.placement import Placement
from gameframe.directory import LocalDirectory
from gameframe.interfaces import IPlayerLink
from gameframe.mirror import StateMirror
from gameframe.player import Player
from gameframe.room import Room
from gameframe.service import RoomService
from gameframe.store.base import IRoomStore
from gameframe.store.memory import MemoryPlayerStorage, MemoryRoomStore
from gameframe.vocabulary import disconnect_message

__all__ = [
    "ClusterHarness",
    "FakeClient",
    "FakeLink",
    "Harness",
    "LocalDirectory",
    "MemoryCluster",
    "MemoryPlayerStorage",
    "MemoryRoomStore",
    "host_of",
]


@implementer(IPlayerLink)
class FakeLink:
    """
    A connection that records what it was sent, decoded, as a client would
    see it (so anything a room sends must really encode to JSON).
    """

    player: Player
    congested = False
    encoding = "json"

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.closed: tuple[str, str] | None = None
        self.mirror = StateMirror()

    def send(self, message: Mapping[str, Any]) -> None:
        self.send_encoded(encode(message))

    def send_encoded(self, data: bytes) -> None:
        if self.closed is None:
            message = orjson.loads(data)
            self.messages.append(message)
            self.mirror.handle(message)

    def close(self, code: str, message: str, retry: bool = False) -> None:
        if self.closed is None:
            extra = {"retry": True} if retry else {}
            self.messages.append(disconnect_message(code, message, **extra))
            self.closed = (code, message)


class FakeClient:
    """
    One connected player, driven by a test: send actions, read what arrived.

    Everything runs synchronously; time moves only with L{Harness.advance}.
    """

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.link = FakeLink()
        harness.service.connect(self.link)
        self._ids = itertools.count(1)

    @property
    def player(self) -> Player:
        """The player this connection speaks for."""
        return self.link.player

    @property
    def player_id(self) -> str:
        return self.player.id

    @property
    def state(self) -> Any:
        """
        This client's mirror of its room's state: the full state it got,
        with every patch since applied, as a real client would keep it.
        AssertionError if a patch arrived out of sequence.
        """
        if self.link.mirror.stale:
            raise AssertionError(f"{self.player_id} saw a gap in the patches' seq")
        return self.link.mirror.state

    @property
    def token(self) -> str | None:
        """The reconnection token of the newest C{joined}."""
        joined = self.received("joined")
        return joined[-1]["token"] if joined else None

    @property
    def messages(self) -> list[Message]:
        """Every message received, oldest first."""
        return self.link.messages

    def received(self, action: str | None = None) -> list[Message]:
        """The messages received, or only those with this action."""
        return [m for m in self.messages if action is None or m["action"] == action]

    def last(self, action: str | None = None) -> Message:
        """The newest message (with this action); AssertionError if none."""
        found = self.received(action)
        if not found:
            raise AssertionError(
                f"{self.player_id} received no {action or 'message'}; got {self.messages}"
            )
        return found[-1]

    def clear(self) -> None:
        """Forget what was received so far."""
        del self.messages[:]

    def send(self, action: str, /, **fields: Any) -> None:
        """Send one message, as a client would."""
        self.harness.service.receive(self.player, {"action": action, **fields})
        self.harness.settle()

    def request(self, action: str, /, **fields: Any) -> Message:
        """
        Send a message with a fresh C{id} and return the reply echoing it
        (C{result}, C{joined}, C{error}...). AssertionError if none came yet.
        """
        request_id = f"t{next(self._ids)}"
        self.send(action, id=request_id, **fields)
        for message in reversed(self.messages):
            if message.get("id") == request_id:
                return message
        raise AssertionError(f"no reply to {action} yet; got {self.messages}")

    def join_or_create(self, room: str, **options: Any) -> Message:
        return self.request("join_or_create", room=room, options=options)

    def create(self, room: str, **options: Any) -> Message:
        return self.request("create", room=room, options=options)

    def join(self, room_id: str, **options: Any) -> Message:
        return self.request("join", room_id=room_id, options=options)

    def leave(self) -> Message:
        return self.request("leave")

    def disconnect(self) -> None:
        """The connection drops (the room's L{Room.on_drop} may hold the seat)."""
        self.harness.service.disconnect(self.player, self.link)
        self.harness.settle()

    drop = disconnect

    def reconnect(self) -> FakeClient:
        """
        A new connection sends C{reconnect} with this client's token; the new
        client (check its C{last("joined")} or C{last("error")}).
        """
        token = self.token
        client = self.harness.connect()
        client.request("reconnect", token=token)
        return client


def step_through(clock: Clock, seconds: float, settle: Callable[[], None]) -> None:
    """
    Move C{clock} forward by C{seconds}, stopping at each timer due on the
    way (as a real reactor would), and C{settle} at every stop.
    """
    target = clock.seconds() + seconds
    while True:
        settle()
        due = [c.getTime() for c in clock.getDelayedCalls()]
        step = min(due, default=target)
        if step > target:
            break
        clock.advance(max(0.0, step - clock.seconds()))
        if step == target:
            break
    clock.advance(max(0.0, target - clock.seconds()))
    settle()


def host_of(room: Room) -> RoomHost:
    """The framework's engine behind a room (for tests that look under the hood)."""
    host: RoomHost = room._Room__host  # type: ignore[attr-defined]
    return host


class Harness:
    """
    A RoomService on a C{task.Clock}, with fake clients (keyword arguments
    go to the RoomService: C{authenticate=}, C{require_auth=}, ...)::

        kit = Harness({"tictactoe": TicTacToe})
        alice, bob = kit.connect(), kit.connect()
        alice.join_or_create("tictactoe")
        bob.join_or_create("tictactoe")
        alice.request("place", cell=4)
    """

    def __init__(
        self,
        rooms: Mapping[str, type[Room]] | type[Room],
        clock: Clock | None = None,
        **service_options: Any,
    ) -> None:
        if isinstance(rooms, type):
            rooms = {rooms.__name__.lower(): rooms}
        self.clock = clock if clock is not None else Clock()
        self._rooms = rooms
        self._service_options = service_options
        self.service = RoomService(self.clock, rooms, **service_options)

    def restart(self) -> None:
        """
        A deploy: the server stops gracefully (its rooms are saved, its
        players told C{disconnect} with C{"retry": true}) and a new one
        starts on the same room store and clock, its saved rooms restored.
        Clients come back with L{FakeClient.reconnect}. Needs a store::

            kit = Harness(MyRoom, store=MemoryRoomStore())
        """
        if self.service.store is None:
            raise AssertionError("restart needs a room store: Harness(..., store=MemoryRoomStore())")
        storage = self.service.storage  # player storage outlives the server too
        self.service.stopService()
        self.settle()
        options = {"storage": storage, **self._service_options}
        self.service = RoomService(self.clock, self._rooms, **options)
        self.service.startService()
        self.settle()

    def connect(self) -> FakeClient:
        """A new player connects (and receives its welcome)."""
        return FakeClient(self)

    def settle(self) -> None:
        """Let what is due now happen (one process: everything already did)."""

    def advance(self, seconds: float) -> None:
        """
        Move the fake clock forward by C{seconds}, stopping at each timer
        due on the way, as a real reactor would: a room ticking 20 times a
        second ticks 20 times in C{advance(1)}.
        """
        step_through(self.clock, seconds, self.settle)

    def advance_ticks(self, ticks: int = 1, room: Room | None = None) -> None:
        """
        Run C{ticks} simulation ticks of C{room} (by default the only live
        room), one clock step at a time, with the patch clock keeping up.
        """
        if room is None:
            if len(self.service.rooms) != 1:
                raise AssertionError("name the room: there is not exactly one")
            (room,) = self.service.rooms.values()
        rate = host_of(room).tick_rate
        if not rate:
            raise AssertionError(f"{room} has no tick_rate")
        self.advance(ticks / rate + 1e-9)  # float-safe: the last tick is due

    @staticmethod
    def ticks(room: Room) -> int:
        """How many times the room's C{on_tick} ran."""
        return host_of(room).ticks

    @staticmethod
    def tick_overruns(room: Room) -> int:
        """Ticks the room skipped because one ran late (each late tick's C{dt} covers them)."""
        return host_of(room).tick_overruns

    def room(self, room_id: str) -> Room:
        """A live room by id."""
        return self.service.rooms[room_id]

    def room_of(self, client: FakeClient) -> Room:
        """The room a client's player is in; AssertionError if none."""
        if client.player.room is None:
            raise AssertionError(f"{client.player_id} is not in a room")
        return client.player.room


class NodeHarness(Harness):
    """One node of a L{ClusterHarness}: a Harness whose service is in the cluster."""

    def __init__(
        self,
        cluster: ClusterHarness,
        rooms: Mapping[str, type[Room]],
        name: str,
        **service_options: Any,
    ) -> None:
        self.cluster_harness = cluster
        self.name = name
        self.clock = cluster.clock
        self.store = _NodeStore(cluster.store)
        # Its way to the shared room store, cut like the cluster store's when it is killed.
        self.room_store = None if cluster.room_store is None else _NodeStore(cluster.room_store)
        if self.room_store is not None:
            service_options = {"store": self.room_store, **service_options}
        self.node = ClusterNode(
            self.clock,
            self.store,
            name,
            placement=cluster.placement,
            flush_interval=cluster.flush_interval,
        )
        self.service = RoomService(
            self.clock, rooms, node=name, cluster=self.node, **service_options
        )
        self.clients: list[FakeClient] = []

    def connect(self) -> FakeClient:
        client = FakeClient(self)
        self.clients.append(client)
        return client

    def settle(self) -> None:
        self.cluster_harness.settle()

    def advance(self, seconds: float) -> None:
        self.cluster_harness.advance(seconds)


class _NodeStore:
    """One node's way to the shared store; cut when the node is killed (a dead process does nothing)."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.dead = False

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._store, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.dead:
                return Deferred()  # never answers
            return target(*args, **kwargs)

        return call


class ClusterHarness:
    """
    Several nodes on one in-memory cluster store and one C{task.Clock}: test a
    cluster in one process, instantly::

        kit = ClusterHarness({"chat": Chat}, nodes=["a", "b"])
        alice, bob = kit.node("a").connect(), kit.node("b").connect()
        alice.join_or_create("chat")
        bob.join_or_create("chat")   # the same room, forwarded across nodes

    Requests settle the bus before they return. L{kill} plays a node's
    process dying (kill -9); C{store.down()}/C{store.up()} play Redis going
    away and coming back. With C{room_store} (a L{gameframe.store.memory.MemoryRoomStore}) every
    node saves its rooms there, and a dead node's rooms come back on another.
    """

    def __init__(
        self,
        rooms: Mapping[str, type[Room]] | type[Room],
        nodes: Any = ("n1", "n2", "n3"),
        clock: Clock | None = None,
        placement: Placement | None = None,
        flush_interval: float = 0.0,
        room_store: IRoomStore | None = None,
        **service_options: Any,
    ) -> None:
        if isinstance(rooms, type):
            rooms = {rooms.__name__.lower(): rooms}
        self.clock = clock if clock is not None else Clock()
        self.placement = placement
        self.flush_interval = flush_interval
        self.store = MemoryCluster(self.clock)
        self.room_store = room_store
        self.nodes: dict[str, NodeHarness] = {}
        for name in nodes:
            self.nodes[name] = NodeHarness(self, rooms, name, **service_options)
        for node in self.nodes.values():
            node.node.startService()
        self.settle()

    def node(self, name: str) -> NodeHarness:
        return self.nodes[name]

    def settle(self) -> None:
        """
        Run everything due now (bus deliveries, flushes) until nothing is left;
        with a C{flush_interval}, move the clock on to each node's pending flush.
        """
        for _ in range(10_000):
            now = self.clock.seconds()
            if any(call.getTime() <= now for call in self.clock.getDelayedCalls()):
                self.clock.advance(0)
                continue
            flushes = [
                call.getTime()
                for node in self.nodes.values()
                if not node.store.dead
                and (call := node.node._flush_call) is not None
                and call.active()
            ]
            if not flushes:
                return
            self.clock.advance(min(flushes) - now)
        raise AssertionError("the cluster did not settle: something reschedules itself at once")

    def advance(self, seconds: float) -> None:
        """Move the clock forward, stopping at every timer due on the way, settling each time."""
        step_through(self.clock, seconds, self.settle)

    def rooms(self) -> dict[str, Room]:
        """Every live room on every live node, by room id."""
        found: dict[str, Room] = {}
        for node in self.nodes.values():
            if not node.store.dead:
                found.update(node.service.rooms)
        return found

    def kill(self, name: str) -> None:
        """
        The node's process dies at once (kill -9): its clients' connections
        drop without a word, it never beats, sends or answers again.
        """
        node = self.nodes[name]
        node.store.dead = True
        if node.room_store is not None:
            node.room_store.dead = True
        self.store.forget(node.node.node_id)
        if node.node._loop.running:
            node.node._loop.stop()
        for client in node.clients:
            if client.link.closed is None:
                client.link.closed = ("killed", "the node died")
