"""
One process's part in a cluster: its lease, its rooms in the shared
directory, matchmaking across nodes, and the bus that carries the actions
of players connected here to rooms elsewhere and the rooms' output back.

A player stays on the node it connected to (its "home"). When its room
runs on another node, the room's node seats a stand-in Player whose link
is a L{BusLink}: everything the room sends it crosses the bus to the
home node, which writes it to the real connection. Per sender, batches
arrive in order, so per player the order is kept both ways. The state
patches' encoding the client asked for travels with its join or
reconnect: the room's node encodes compact patches for a stand-in as for
a connection of its own, and the home node writes them as they come.
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import attrs
import orjson
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gameframe.admin import operate
from gameframe.cluster.backend import (
    Change,
    Clear,
    Fenced,
    Gone,
    Put,
    Reservation,
    RoomRecord,
    Seat,
    Unavailable,
    Unseat,
)
from gameframe.cluster.backend import NodeLoad
from gameframe.cluster.placement import Placement, least_loaded
from gameframe.codec import GameError, encode
from gameframe.directory import LocalDirectory
from gameframe.interfaces import IPlayerLink, IRoomDirectory, IRoomHandle
from gameframe.player import Player
from gameframe.vocabulary import (
    ENCODING_JSON,
    ENCODINGS,
    INTERNAL_ERROR,
    INVALID_TOKEN,
    LEFT_ROOM_LOST,
    ROOM_NOT_FOUND,
    SERVER_SHUTDOWN,
    UNAVAILABLE,
    Message,
    left_message,
)

if TYPE_CHECKING:
    from gameframe._host import RoomHost
    from gameframe.service import RoomService
    from gameframe.store.base import SavedRoom

# Seconds between heartbeats, and how long a lease lasts without one.
BEAT_INTERVAL = 1.0
LEASE_TTL = 5.0
# Under load, a node's batches to the store and the other nodes leave at most this often (seconds).
BUS_GAP = 0.002
# The store's connection is still being made this long after start: no warning yet.
STARTUP_GRACE = 3.0
# A join or reconnect sent to another node that gets no answer in this time fails.
REMOTE_TIMEOUT = 10.0
# How long a disposed room's id is remembered, so a late join cannot bring it back.
ENDED_MEMORY = 60.0
# An admin operation sent to another node that gets no answer in this time fails (unavailable).
ADMIN_TIMEOUT = 5.0
# With a room store: players here whose room's node died or stopped wait this long
# (seconds) for the room to come back on another node before they get room_lost.
REATTACH_TIMEOUT = 30.0

# Bus item kinds. To a room's node: join, act, drop, reconnect (a join or
# reconnect ends with "compact" when the client asked for compact patches).
# Back home: deliver (with the recipients), seated, unseated, refused, close.
JOIN_ITEM = "join"
ACT_ITEM = "act"
DROP_ITEM = "drop"
RECONNECT_ITEM = "reconnect"
DELIVER_ITEM = "d"
SEATED_ITEM = "seated"
UNSEATED_ITEM = "unseated"
REFUSED_ITEM = "refused"
CLOSE_ITEM = "close"
# The admin API: an operation on another node's rooms, and its answer.
ADMIN_ITEM = "admin"
ADMIN_ANSWER_ITEM = "admin_answer"


class Outbox:
    """
    What this node sends one other node in this turn: items in order, each a
    JSON header and a payload. A message several players on that node get
    (a broadcast: the same bytes object) is one item listing its recipients.
    """

    def __init__(self) -> None:
        self.items: list[tuple[Any, bytes]] = []  # (header: a list, or encoded), payload

    def deliver(self, player_id: str, data: bytes) -> None:
        items = self.items
        if items:
            header, payload = items[-1]
            if payload is data and type(header) is list:
                header.append(player_id)
                return
        items.append(([DELIVER_ITEM, player_id], data))

    def add(self, header: list[Any], payload: bytes = b"") -> None:
        """One item; its header is encoded now, so what JSON cannot hold fails the caller."""
        self.items.append((orjson.dumps(header), payload))

    def batch(self, sender: str) -> bytes:
        """The sender's name, then a header line and a payload line per item."""
        lines = [sender.encode()]
        for header, payload in self.items:
            lines.append(header if type(header) is bytes else orjson.dumps(header))
            lines.append(payload)
        return b"\n".join(lines)


def read_batch(batch: bytes) -> tuple[str, list[tuple[list[Any], bytes]]]:
    lines = batch.split(b"\n")
    items = [(orjson.loads(lines[i]), lines[i + 1]) for i in range(1, len(lines) - 1, 2)]
    return lines[0].decode(), items


@implementer(IPlayerLink)
class BusLink:
    """
    The link of a stand-in Player on a room's node: what the room sends
    it goes over the bus to the player's home node.
    """

    congested = False
    # The state patches' encoding the player asked for at home (carried by
    # its join or reconnect): the room's sync encodes for it as for any link.
    encoding = ENCODING_JSON
    player: Player
    transport_name = "node"  # the admin API: connected through another node

    def __init__(
        self, node: ClusterNode, home: str, player_id: str, encoding: Any = ENCODING_JSON
    ) -> None:
        self._node = node
        self.home = home
        self.player_id = player_id
        if encoding in ENCODINGS:
            self.encoding = encoding

    @property
    def address(self) -> str:
        """The node the player is connected to."""
        return self.home

    def send(self, message: Mapping[str, Any]) -> None:
        self.send_encoded(encode(message))

    def send_encoded(self, data: bytes) -> None:
        self._node.outbox(self.home).deliver(self.player_id, data)

    def close(self, code: str, message: str, retry: bool = False) -> None:
        self._node.outbox(self.home).add([CLOSE_ITEM, self.player_id, code, message])

    def __repr__(self) -> str:
        return f"<BusLink {self.player_id} at {self.home}>"


@attrs.define
class Membership:
    """A player connected here whose room runs on another node."""

    room_id: str
    node: str


@attrs.define
class Waiting:
    """A join or reconnect sent to another node, waiting for C{seated} or C{refused}."""

    done: Deferred[Any]
    room_id: str
    node: str
    timer: IDelayedCall | None = None
    link: IPlayerLink | None = None  # a reconnect: the connection that asked
    user: Any = None
    reserved: bool = False  # a seat was reserved for it in the directory


@attrs.define
class AdminAsk:
    """An admin operation sent to another node, waiting for its answer."""

    done: Deferred[Any]
    node: str
    timer: IDelayedCall | None = None


def _with_encoding(item: list[Any], link: IPlayerLink | None) -> list[Any]:
    """A join or reconnect item, with the encoding its connection asked for if not JSON (the default)."""
    encoding = getattr(link, "encoding", ENCODING_JSON)
    if encoding != ENCODING_JSON:
        item.append(encoding)
    return item


def filter_key(filter_by: Iterable[str], options: Mapping[str, Any]) -> str:
    """The options matchmaking matches on, encoded: equal keys, equal JSON values."""
    return orjson.dumps([options.get(key) for key in filter_by]).decode()


@implementer(IRoomDirectory)
class ClusterNode(Service):
    """
    This process as one node of a cluster.

    @param clock: the reactor (or a C{task.Clock}).
    @param store: the shared store: directory, membership and bus in one
        (L{gameframe.cluster.redis.RedisCluster}, or
        L{gameframe.cluster.memory.MemoryCluster} in tests).
    @param name: the node's name (C{--node}); after being declared dead it
        rejoins as C{name.2-xxxx}, C{name.3-xxxx}... (C{xxxx} from this
        process's token).
    @param placement: chooses the node of a new room (default: L{least_loaded}).
    @param cpu: seconds of CPU this process used (injected in tests).
    @param flush_interval: seconds what goes to the store and the other
        nodes may wait, so more of it leaves in one command (C{--flush-interval});
        0: at the end of the reactor turn.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        store: Any,
        name: str,
        *,
        placement: Placement | None = None,
        lease_ttl: float = LEASE_TTL,
        beat_interval: float = BEAT_INTERVAL,
        cpu: Callable[[], float] = time.process_time,
        flush_interval: float = 0.0,
    ) -> None:
        self._clock = clock
        self.store = store
        self.name = name
        self.node_id = name
        self._incarnation = 1
        self._token = secrets.token_hex(8)  # this process, in its lease
        self._placement: Placement = placement or least_loaded
        self._lease_ttl = lease_ttl
        self._beat_interval = beat_interval
        self._cpu = cpu
        self._flush_interval = flush_interval
        self.local = LocalDirectory(node=name)
        self.available = False
        self.draining = False
        self.nodes: tuple[NodeLoad, ...] = ()
        self.service: RoomService | None = None
        self.members: dict[str, Membership] = {}
        self._waiting: dict[str, Waiting] = {}
        self._asks: dict[str, AdminAsk] = {}  # admin operations sent to other nodes, by id
        self._ask_count = 0
        self._stand_ins: dict[str, Player] = {}  # seated here, connected elsewhere
        self._joining: dict[str, Player] = {}  # stand-ins whose join is running
        self._creating: dict[str, list[Deferred[RoomHost]]] = {}
        self._ended: dict[str, float] = {}
        self._outboxes: dict[str, Outbox] = {}
        self._changes: list[Change] = []  # seats and disposals, in order
        self._dirty: dict[str, IRoomHandle] = {}  # rooms whose record changed this turn
        self._republish = True
        self._flush_call: IDelayedCall | None = None
        self._last_flush = float("-inf")
        self._beating = False
        self._listening = False
        self._warned = False
        self._started = clock.seconds()
        # Drops of players whose room is elsewhere, while the store was away.
        self._undelivered_drops: dict[str, list[str]] = {}
        self._live: set[str] = set()  # the nodes alive at the last heartbeat
        self._since = 0.0
        self._dead: set[str] = set()
        # With a room store: dead nodes whose saved rooms this node has yet to try to claim.
        self._unclaimed: set[str] = set()
        self._claiming = False
        # With a room store: nodes running rooms of players here that left the cluster, since when.
        self._away: dict[str, float] = {}
        self._cpu_mark = (clock.seconds(), cpu())
        self._loop = LoopingCall(self._beat)
        self._loop.clock = clock
        self.forwarded = 0  # messages sent to other nodes (for metrics and benches)
        self.forwarded_in = 0  # messages other nodes sent this one (for metrics)

    def attach(self, service: RoomService) -> None:
        self.service = service

    @property
    def saving(self) -> bool:
        """Whether rooms are saved (the service has a room store): a dead node's rooms come back."""
        return self.service is not None and self.service.store is not None

    def __repr__(self) -> str:
        return f"node {self.node_id}"

    # -- lifecycle ---------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._started = self._clock.seconds()
        self._loop.start(self._beat_interval, now=True)

    def drain(self) -> None:
        """This node is stopping: no new rooms are placed here, no one is matched into its rooms."""
        self.draining = True
        for room in self.local.rooms():
            self._mark(room)
        self._beat()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._loop.running:
            self._loop.stop()
        # Players still connected here leave their remote rooms' connections
        # as if dropped: those rooms hold or free their seats now. With a room
        # store they were told to come back: their seats are held for that.
        hold = self.service.restore_grace if self.saving and self.service is not None else 0.0
        for player_id, membership in list(self.members.items()):
            self.outbox(membership.node).add([DROP_ITEM, player_id, hold])
        self.members.clear()
        self._flush()
        self._settle_asks(None, "this node is stopping")

        async def stop() -> None:
            try:
                if self.available:
                    await self.store.leave(self.node_id)
            except Exception:
                self.log.failure("{node}: leaving the cluster failed", node=self)
            self.available = False
            await self.store.close()

        return Deferred.fromCoroutine(stop())

    # -- heartbeat: lease, loads, deaths, recovery -----------------------------------

    def _load(self) -> NodeLoad:
        now, used = self._clock.seconds(), self._cpu()
        then, used_then = self._cpu_mark
        self._cpu_mark = (now, used)
        cpu = (used - used_then) / (now - then) if now > then else 0.0
        service = self.service
        return NodeLoad(
            node=self.node_id,
            players=0 if service is None else len(service.players),
            rooms=len(self.local.rooms()),
            cpu=round(cpu, 3),
            draining=self.draining,
            token=self._token,
        )

    def _beat(self) -> None:
        """
        Renew the lease. A node listens on the bus before its lease says it
        is alive, so no node sends it anything it would not hear.
        """
        if self._beating:
            return
        self._beating = True
        if self._listening:
            ready: Deferred[None] = succeed(None)
        else:
            ready = self.store.listen(self.node_id, self._receive, self._lost)
            ready.addCallback(self._listened, self.node_id)
        beat = ready.addCallback(
            lambda _: self.store.beat(self._load(), self._lease_ttl, self._since)
        )
        beat.addCallbacks(self._beaten, self._beat_failed)
        beat.addErrback(lambda f: self.log.failure("{node}: heartbeat", f, node=self))
        beat.addBoth(self._beat_done)

    def _listened(self, _: object, node_id: str) -> None:
        self._listening = node_id == self.node_id

    def _beat_done(self, _: object) -> None:
        self._beating = False

    def _beaten(self, beat: Any) -> None:
        self.nodes = beat.nodes
        self._live = {load.node for load in beat.nodes}
        self._since = beat.now - self._beat_interval
        forgotten = self._clock.seconds() - ENDED_MEMORY
        for room_id, ended in list(self._ended.items()):
            if ended < forgotten:
                del self._ended[room_id]
        for node in beat.deaths:
            if node != self.node_id and node not in self._dead:
                self._node_died(node)
        if not self.available:
            self._recover()
        if self.saving:
            self._wait_for_rooms()
            self._claim()

    def _beat_failed(self, failure: Failure) -> None:
        if failure.check(Fenced):
            self._fenced()
            return
        failure.trap(Unavailable)
        self._lost()

    def _lost(self) -> None:
        """The store is out of reach: local-only until a heartbeat gets through."""
        starting = self._clock.seconds() - self._started < STARTUP_GRACE
        if self.available or not (self._warned or starting):
            self.log.warn("{node}: the cluster store is unreachable; serving local rooms only", node=self)
            self._warned = True
        self.available = False
        self._listening = False
        self._republish = True
        self._changes.clear()
        self._dirty.clear()
        self._outboxes.clear()
        self._settle_asks(None, "the cluster store is unreachable")

    def _recover(self) -> None:
        """The store answers again: publish every room, resume forwarding."""
        self.available = True
        self._warned = False
        self._publish_all()
        self.log.info("{node}: in the cluster", node=self)
        for node, player_ids in self._undelivered_drops.items():
            for player_id in player_ids:
                self.outbox(node).add([DROP_ITEM, player_id])
        self._undelivered_drops.clear()
        for player in list(self._stand_ins.values()):
            self._resync(player)

    def _resync(self, player: Player) -> None:
        """A stand-in may have missed output while the store was away: its full state again."""
        if player.link is None or player.room is None:
            return
        handle = self.local.get(player.room.room_id)
        if handle is None:
            return
        try:
            handle.resync(player, None)
        except GameError:
            pass  # a room without state

    def _fenced(self) -> None:
        """
        The others declared this node dead and acted on it: it rejoins as a
        new node. Players here in rooms elsewhere lost them; remote players in
        rooms here were told their rooms were lost, so their seats go.
        """
        old = self.node_id
        self._incarnation += 1
        # The process's token in the name: two live processes started under
        # one name each get their own, instead of declaring each other dead.
        self.node_id = f"{self.name}.{self._incarnation}-{self._token[:4]}"
        self.local.node = self.node_id
        self.log.warn("{old} was declared dead; rejoining as {new}", old=old, new=self.node_id)
        self.available = False
        self._listening = False
        self._outboxes.clear()
        self._changes.clear()
        self._dirty.clear()
        self._republish = True
        self._undelivered_drops.clear()  # their nodes dropped those seats already
        for player_id in list(self._waiting):
            self._settle(player_id, GameError(UNAVAILABLE, "this node lost the cluster: try again"))
        self._settle_asks(None, "this node lost the cluster")
        for player_id in list(self.members):
            self._lose_membership(player_id)
        if self.saving:
            self._abandon_rooms()
        for stand_in in list(self._stand_ins.values()):
            handle = None if stand_in.room is None else self.local.get(stand_in.room.room_id)
            if handle is not None and isinstance(stand_in.link, BusLink):
                stand_in.link = None
                handle.leave(stand_in, LEFT_ROOM_LOST)
        self._stand_ins.clear()

    def _node_died(self, node: str) -> None:
        self._dead.add(node)
        self.log.warn("{node}: node {dead} died", node=self, dead=node)
        self._outboxes.pop(node, None)
        if self.saving:
            # Its rooms come back on a live node, which re-seats the players here.
            self._unclaimed.add(node)
        else:
            for player_id, membership in list(self.members.items()):
                if membership.node == node:
                    self._lose_membership(player_id)
        for player_id, waiting in list(self._waiting.items()):
            if waiting.node == node:
                self._settle(player_id, GameError(ROOM_NOT_FOUND, "the room's node died"))
        self._settle_asks(node, f"node {node} died")
        service = self.service
        for stand_in in list(self._stand_ins.values()):
            link = stand_in.link
            if isinstance(link, BusLink) and link.home == node and service is not None:
                service.disconnect(stand_in, link)

    # -- failover with a room store: claiming saved rooms, re-seating their players ------

    def _claim(self) -> None:
        """
        Take over the rooms released by graceful stops and those of the nodes
        seen dead, and run them here; a failed claim is tried again at the next beat.
        """
        service = self.service
        if (
            service is None
            or service.store is None
            or self._claiming
            or not self.available
            or self.draining
            or service.stopping
        ):
            return
        store = service.store
        owners = ["", *sorted(self._unclaimed)]
        node_id = self.node_id
        self._claiming = True

        async def claim() -> None:
            try:
                rooms = await maybeDeferred(store.claim, node_id, owners)
            except Exception:
                self.log.warn("{node}: claiming saved rooms failed; trying again", node=self)
                return
            self._unclaimed.difference_update(owners)
            if rooms:
                self.log.info(
                    "{node}: took over {count} saved rooms", node=self, count=len(rooms)
                )
            for saved in rooms:
                await service.restore_room(saved)
                self._reattach(saved)

        def done(result: object) -> None:
            self._claiming = False

        claimed = Deferred.fromCoroutine(claim())
        claimed.addErrback(lambda f: self.log.failure("{node}: restoring claimed rooms", f, node=self))
        claimed.addBoth(done)

    def _reattach(self, saved: SavedRoom) -> None:
        """
        A room restored here: each saved seat whose player was connected
        through a live node (its C{home}) is taken back at once for that
        player, who gets C{joined} with a new token and the full state.
        """
        handle = self.local.get(saved.room_id)
        if handle is None or not handle.running:
            return
        for record in orjson.loads(saved.data).get("seats", ()):
            home = record.get("home")
            if not isinstance(home, str) or not home:
                continue
            if home != self.node_id and (home not in self._live or home in self._dead):
                continue  # its node is gone too: the player reconnects with its token
            try:
                self._reattach_seat(
                    handle, record["id"], record["token"], home, record.get("encoding", ENCODING_JSON)
                )
            except GameError:
                pass  # the seat went meanwhile
            except Exception:
                self.log.failure("{node}: re-seating a player of {room}", node=self, room=handle)

    def _reattach_seat(
        self, handle: IRoomHandle, player_id: str, token: str, home: str, encoding: Any = ENCODING_JSON
    ) -> None:
        if home != self.node_id:
            # Its home node takes it as a remote reconnect (seated item, then joined and state).
            bus = BusLink(self, home, player_id, encoding)
            handle.reconnect(player_id, token, bus, None, None)
            return
        service = self._require()
        here = service.players.get(player_id)
        membership = self.members.get(player_id)
        if (
            here is None
            or here.link is None
            or membership is None
            or membership.room_id != handle.room_id
        ):
            return
        del self.members[player_id]
        link, here.link = here.link, None
        service.players[player_id] = handle.reconnect(player_id, token, link, None, None)

    def _wait_for_rooms(self) -> None:
        """
        Players here whose room's node left the cluster keep their membership
        (their actions get C{unavailable}) until the room is back elsewhere;
        after C{REATTACH_TIMEOUT} seconds they get C{left} with C{room_lost}.
        """
        now = self._clock.seconds()
        away = {
            membership.node
            for membership in self.members.values()
            if membership.node not in self._live or membership.node in self._dead
        }
        for node in list(self._away):
            if node not in away:
                del self._away[node]
        for node in away:
            if now - self._away.setdefault(node, now) >= REATTACH_TIMEOUT:
                del self._away[node]
                for player_id, membership in list(self.members.items()):
                    if membership.node == node:
                        self._lose_membership(player_id)

    def _abandon_rooms(self) -> None:
        """
        Fenced with a room store: the others restore this node's rooms from
        the store, so the copies here stop without saving or deleting
        anything, and their players connected here reconnect with their tokens.
        """
        from gameframe._host import RoomHost

        for handle in list(self.local.rooms()):
            if not isinstance(handle, RoomHost):
                continue
            links = [
                player.link
                for player in handle.players.values()
                if player.link is not None and not isinstance(player.link, BusLink)
            ]
            handle.abandon()
            self._ended.pop(handle.room_id, None)
            for link in links:
                link.close(
                    SERVER_SHUTDOWN,
                    "this node lost its rooms to another node: reconnect with your token",
                    retry=True,
                )
            self.log.warn("{node}: {room} now runs on another node", node=self, room=handle)

    def _lose_membership(self, player_id: str) -> None:
        membership = self.members.pop(player_id)
        player = None if self.service is None else self.service.players.get(player_id)
        if player is not None:
            player.send(left_message(membership.room_id, LEFT_ROOM_LOST))

    # -- IRoomDirectory: this node's rooms, published to the store --------------------

    def register(self, room: IRoomHandle) -> None:
        self.local.register(room)

    def changed(self, room: IRoomHandle) -> None:
        self.local.changed(room)
        if self.local.get(room.room_id) is room:
            self._mark(room)

    def _mark(self, room: IRoomHandle) -> None:
        """The room's record is published at the end of the turn (once, however often it changed)."""
        if self.available:
            self._dirty[room.room_id] = room
            self._schedule()

    def unregister(self, room: IRoomHandle) -> None:
        if self.local.get(room.room_id) is room:
            self._ended[room.room_id] = self._clock.seconds()
            self._change(Gone(room.room_id))
        self.local.unregister(room)

    def get(self, room_id: str) -> IRoomHandle | None:
        return self.local.get(room_id)

    def rooms(self, room_type: str | None = None) -> list[IRoomHandle]:
        return self.local.rooms(room_type)

    def joinable(self, room_type: str) -> list[IRoomHandle]:
        return self.local.joinable(room_type)

    def listing(self, room_type: str | None = None) -> list[dict[str, Any]]:
        return self.local.listing(room_type)

    def seat(self, player_id: str, room_id: str) -> None:
        self.local.seat(player_id, room_id)
        self._change(Seat(room_id, player_id))
        host = self.local.get(room_id)
        player = None if host is None else host.players.get(player_id)  # type: ignore[attr-defined]
        if player is None:
            return
        if isinstance(player.link, BusLink):
            self._stand_ins[player_id] = player
            self.outbox(player.link.home).add([SEATED_ITEM, player_id, room_id])
        else:
            self._stand_ins.pop(player_id, None)  # it reconnected here directly

    def unseat(self, player_id: str, room_id: str) -> None:
        self.local.unseat(player_id, room_id)
        self._change(Unseat(room_id, player_id))
        stand_in = self._stand_ins.get(player_id)
        if stand_in is not None and stand_in.room is None:
            del self._stand_ins[player_id]
            if isinstance(stand_in.link, BusLink):
                self.outbox(stand_in.link.home).add([UNSEATED_ITEM, player_id, room_id])

    def room_of(self, player_id: str) -> IRoomHandle | None:
        return self.local.room_of(player_id)

    def _record(self, room: Any) -> RoomRecord:
        room_class = type(room.room)
        return RoomRecord(
            room_id=room.room_id,
            room_type=room.room_type,
            node=self.node_id,
            entry=self.local.public_entry(room.room_id) or {},
            options=room.options,
            filter_key=filter_key(room_class.filter_by, room.options),
            max_players=room.room.max_players,
            running=room.running,
            private=room.private,
            locked=room.locked_by_author or self.draining,
        )

    def _change(self, change: Change) -> None:
        if self.available:
            self._changes.append(change)
            self._schedule()

    def _publish_all(self) -> None:
        """Every room of this node and its seats, replacing what the store had."""
        changes: list[Change] = [Clear()]
        for room in self.local.rooms():
            changes.append(Put(self._record(room)))
            for player_id in room.seated_ids():  # type: ignore[attr-defined]
                changes.append(Seat(room.room_id, player_id))
        self._republish = False
        self._dirty.clear()
        self._changes[:0] = changes
        self._schedule()

    # -- the flush: directory changes and bus batches, once per turn --------------------

    def outbox(self, node: str) -> Outbox:
        outbox = self._outboxes.get(node)
        if outbox is None:
            outbox = self._outboxes[node] = Outbox()
            self._schedule()
        return outbox

    def _schedule(self) -> None:
        if self._flush_call is None:
            # At the end of this turn when the last flush is BUS_GAP old (an
            # idle node adds no delay); under load, BUS_GAP apart, so one
            # PUBLISH carries what came meanwhile.
            wait = self._flush_interval or max(
                0.0, self._last_flush + BUS_GAP - self._clock.seconds()
            )
            self._flush_call = self._clock.callLater(wait, self._flush)

    def _flush(self) -> None:
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        self._last_flush = self._clock.seconds()
        outboxes, self._outboxes = self._outboxes, {}
        changes, self._changes = self._changes, []
        dirty, self._dirty = self._dirty, {}
        if not self.available:
            return
        puts: list[Change] = [
            Put(self._record(room))
            for room_id, room in dirty.items()
            if self.local.get(room_id) is room
        ]
        if puts:
            # Before the seat changes: a new room's record exists before its first seat.
            changes = puts + changes if not changes or not isinstance(changes[0], Clear) else changes + puts
        if changes:
            self.store.update(self.node_id, changes).addErrback(self._store_failed)
        for node, outbox in outboxes.items():
            if outbox.items and node not in self._dead:
                self.forwarded += len(outbox.items)
                self.store.send(node, outbox.batch(self.node_id)).addErrback(self._store_failed)

    def _store_failed(self, failure: Failure) -> None:
        if failure.check(Fenced):
            self._fenced()
        elif failure.check(Unavailable):
            self._lost()
        else:
            self.log.failure("{node}: the cluster store failed", failure, node=self)

    # -- matchmaking across nodes (called by the RoomService) -----------------------------

    def _require(self) -> RoomService:
        assert self.service is not None, "ClusterNode.attach(service) first"
        return self.service

    def join_or_create(
        self, player: Player, room_type: str, options: dict[str, Any], request_id: Any, *, new: bool = False
    ) -> Any:
        """Seat the player in a matching room anywhere, or in a new room placed by policy."""
        service = self._require()
        if not self.available:
            return service.join_or_create_here(player, room_type, options, request_id, new=new)
        room_class = service.room_types[room_type]
        node = self._place(room_type)
        record = RoomRecord(
            room_id=service.new_room_id(),
            room_type=room_type,
            node=node,
            entry={},
            options=dict(options),
            filter_key=filter_key(room_class.filter_by, options),
            max_players=room_class.max_players,
            running=False,
        )
        key = None if new else record.filter_key
        reserving = self.store.match(self.node_id, room_type, key, player.id, record)
        return reserving.addCallbacks(
            lambda reservation: self._seat(player, reservation, options, request_id),
            self._unavailable_or_fail,
        )

    def _place(self, room_type: str) -> str:
        """The placement policy's choice, if it names a live node (else the default's)."""
        try:
            node = self._placement(self.nodes, self.node_id, room_type)
        except Exception:
            self.log.failure("{node}: the placement policy failed", node=self)
            node = None
        live = {load.node for load in self.nodes}
        if node != self.node_id and node not in live:
            if node is not None:
                self.log.warn(
                    "{node}: the placement policy chose {chosen!r}, not a live node",
                    node=self, chosen=node,
                )
            node = least_loaded(self.nodes, self.node_id, room_type)
        return node

    def join(self, player: Player, room_id: str, options: dict[str, Any], request_id: Any) -> Any:
        service = self._require()
        handle = self.local.get(room_id)
        if not self.available:
            if handle is None:
                raise GameError(UNAVAILABLE, "the cluster is unreachable: try again soon")
            return handle.join(player, options, request_id)
        reserving = self.store.reserve(self.node_id, room_id, player.id)
        return reserving.addCallbacks(
            lambda reservation: self._seat(player, reservation, options, request_id),
            self._unavailable_or_fail,
        )

    def _unavailable_or_fail(self, failure: Failure) -> None:
        if failure.check(Unavailable, Fenced):
            raise GameError(UNAVAILABLE, "the cluster is unreachable: try again soon")
        failure.raiseException()

    def _seat(
        self, player: Player, reservation: Reservation, options: dict[str, Any], request_id: Any
    ) -> Any:
        service = self._require()
        if player.link is None:  # gone while the seat was reserved
            self._change(Unseat(reservation.room_id, player.id))
            return None
        if reservation.node == self.node_id:
            try:
                hosting = self._host(reservation)
            except GameError:
                self._change(Unseat(reservation.room_id, player.id))
                raise
            joined = self._then(hosting, lambda host: host.join(player, options, request_id))
            return joined.addErrback(self._release, reservation.room_id, player.id)
        spec = [reservation.room_type, reservation.options]
        item = _with_encoding(
            [JOIN_ITEM, player.id, player.user, reservation.room_id, options, request_id, spec],
            player.link,
        )
        try:
            self.outbox(reservation.node).add(item)
        except TypeError:
            self._change(Unseat(reservation.room_id, player.id))
            raise
        waiting = self._wait(player.id, reservation.room_id, reservation.node)
        waiting.reserved = True
        return waiting.done

    def _release(self, failure: Failure, room_id: str, player_id: str) -> Failure:
        self._change(Unseat(room_id, player_id))
        return failure

    @staticmethod
    def _then(result: Any, then: Callable[[Any], Any]) -> Deferred[Any]:
        """C{then(result)} as a Deferred, whether C{result} is one or a value."""
        if isinstance(result, Deferred):
            return result.addCallback(then)
        return maybeDeferred(then, result)

    def _host(self, reservation: Reservation) -> Any:
        """The room's host here (created now if it was just placed here), or a Deferred of it."""
        host = self.local.get(reservation.room_id)
        if host is not None and host.running:
            return host
        room_id = reservation.room_id
        if room_id in self._creating:
            waiter: Deferred[RoomHost] = Deferred()
            self._creating.setdefault(room_id, []).append(waiter)
            return waiter
        if host is not None or room_id in self._ended or self.service is None:
            # Closing, or closed: a late reservation must not bring it back.
            raise GameError(ROOM_NOT_FOUND, f"there is no room {room_id!r}")
        if reservation.room_type not in self.service.room_types:
            raise GameError(ROOM_NOT_FOUND, f"this node has no room type {reservation.room_type!r}")
        self._creating[room_id] = []
        created = self.service.new_host(reservation.room_type, reservation.options, room_id)

        def ready(host: RoomHost) -> RoomHost:
            for waiter in self._creating.pop(room_id, []):
                waiter.callback(host)
            return host

        def failed(failure: Failure) -> Failure:
            for waiter in self._creating.pop(room_id, []):
                waiter.errback(GameError(ROOM_NOT_FOUND, f"room {room_id} could not be created"))
            return failure

        if isinstance(created, Deferred):
            return created.addCallbacks(ready, failed)
        return ready(created)

    def _wait(self, player_id: str, room_id: str, node: str) -> Waiting:
        waiting = Waiting(Deferred(), room_id, node)
        previous = self._waiting.pop(player_id, None)
        if previous is not None:
            self._settle_waiting(player_id, previous, GameError(ROOM_NOT_FOUND, "superseded"))
        self._waiting[player_id] = waiting
        waiting.timer = self._clock.callLater(
            REMOTE_TIMEOUT,
            self._settle,
            player_id,
            GameError(UNAVAILABLE, "the room's node did not answer: try again"),
        )
        return waiting

    def _settle(self, player_id: str, error: GameError | None) -> None:
        waiting = self._waiting.pop(player_id, None)
        if waiting is not None:
            self._settle_waiting(player_id, waiting, error)

    def _settle_waiting(self, player_id: str, waiting: Waiting, error: GameError | None) -> None:
        if waiting.timer is not None and waiting.timer.active():
            waiting.timer.cancel()
        if error is None:
            waiting.done.callback(None)
            return
        if waiting.reserved:
            self._change(Unseat(waiting.room_id, player_id))
        waiting.done.errback(error)

    def reconnect(self, player: Player, player_id: str, secret: str, request_id: Any) -> Any:
        """A token whose seat is not here: find its room's node and reconnect through it."""
        if not self.available:
            raise GameError(UNAVAILABLE, "the cluster is unreachable: try again soon")

        def found(where: tuple[str, str] | None) -> Any:
            if where is None or where[1] == self.node_id:
                raise GameError(INVALID_TOKEN, "reconnect: the token is unknown or expired")
            room_id, node = where
            item = _with_encoding(
                [RECONNECT_ITEM, player_id, secret, player.user, request_id], player.link
            )
            self.outbox(node).add(item)
            waiting = self._wait(player_id, room_id, node)
            waiting.link = player.link
            waiting.user = player.user
            return waiting.done

        return self.store.seat_of(player_id).addCallbacks(found, self._unavailable_or_fail)

    def room_listing(self, room_type: str | None) -> Any:
        """Every node's listed rooms (this node's alone while the store is away)."""
        if not self.available:
            return succeed(self.local.listing(room_type))

        def local_only(failure: Failure) -> list[dict[str, Any]]:
            failure.trap(Unavailable)
            return self.local.listing(room_type)

        return self.store.listing(room_type).addErrback(local_only)

    # -- players here in rooms elsewhere ------------------------------------------------

    def is_remote(self, player_id: str) -> bool:
        return player_id in self.members

    def forward(self, player: Player, message: Message) -> None:
        """A room action (or leave, sync) of a player whose room runs on another node."""
        if not self.available:
            raise GameError(
                UNAVAILABLE, "your room is on another node and the cluster is unreachable now",
                message.get("id"),
            )
        membership = self.members[player.id]
        if membership.node not in self._live:
            # Its node has not been back on the bus since the store returned.
            raise GameError(
                UNAVAILABLE, "your room's node is unreachable now", message.get("id")
            )
        self.outbox(membership.node).add([ACT_ITEM, player.id], encode(message))

    def dropped(self, player: Player) -> None:
        """The connection of a player here closed: its remote room holds or frees its seat."""
        membership = self.members.pop(player.id, None)
        node = membership.node if membership is not None else None
        waiting = self._waiting.get(player.id)
        if node is None and waiting is not None and waiting.link is None:
            node = waiting.node
        if node is None:
            return
        if self.available:
            self.outbox(node).add([DROP_ITEM, player.id])
        else:  # told when the store is back, so the seat is not held for ever
            self._undelivered_drops.setdefault(node, []).append(player.id)

    # -- the bus: what other nodes send this one ------------------------------------------

    def _receive(self, batch: bytes) -> None:
        try:
            sender, items = read_batch(batch)
        except Exception:
            self.log.failure("{node}: an unreadable batch", node=self)
            return
        if sender in self._dead:
            return
        self._live.add(sender)  # it is on the bus: it listens before it sends
        self.forwarded_in += len(items)
        for header, payload in items:
            try:
                self._item(sender, header, payload)
            except Exception:
                self.log.failure("{node}: handling {kind} from {sender}", node=self, kind=header[0], sender=sender)

    def _item(self, sender: str, header: list[Any], payload: bytes) -> None:
        kind = header[0]
        service = self._require()
        if kind == DELIVER_ITEM:
            players = service.players
            for player_id in header[1:]:
                player = players.get(player_id)
                if player is not None and player.link is not None:
                    player.link.send_encoded(payload)
        elif kind == ACT_ITEM:
            stand_in = self._stand_in(sender, header[1])
            if stand_in is not None:
                service.receive(stand_in, orjson.loads(payload))
        elif kind == JOIN_ITEM:
            self._remote_join(sender, *header[1:])
        elif kind == DROP_ITEM:
            stand_in = self._stand_in(sender, header[1])
            if stand_in is not None:
                hold = header[2] if len(header) > 2 else 0.0
                service.disconnect(stand_in, stand_in.link, hold)
        elif kind == RECONNECT_ITEM:
            self._remote_reconnect(sender, *header[1:])
        elif kind == SEATED_ITEM:
            self._seated(sender, header[1], header[2])
        elif kind == UNSEATED_ITEM:
            membership = self.members.get(header[1])
            if membership is not None and membership.room_id == header[2]:
                del self.members[header[1]]
        elif kind == REFUSED_ITEM:
            _, player_id, code, text, request_id = header
            self._settle(player_id, GameError(code, text, request_id))
        elif kind == ADMIN_ITEM:
            self._admin_asked(sender, header[1], header[2], header[3], payload)
        elif kind == ADMIN_ANSWER_ITEM:
            self._admin_answered(header[1], header[2], header[3], payload)
        elif kind == CLOSE_ITEM:
            _, player_id, code, text = header
            self.members.pop(player_id, None)
            player = service.players.get(player_id)
            if player is not None and player.link is not None:
                player.link.close(code, text)

    def _stand_in(self, home: str, player_id: str) -> Player | None:
        stand_in = self._stand_ins.get(player_id)
        if stand_in is None:
            stand_in = self._joining.get(player_id)
        link = None if stand_in is None else stand_in.link
        if isinstance(link, BusLink) and link.home == home:
            return stand_in
        return None

    def _remote_join(
        self,
        home: str,
        player_id: str,
        user: Any,
        room_id: str,
        options: dict[str, Any],
        request_id: Any,
        spec: list[Any],
        encoding: Any = ENCODING_JSON,
    ) -> None:
        service = self._require()
        stand_in = Player(id=player_id, user=user)
        stand_in.link = BusLink(self, home, player_id, encoding)
        stand_in.link.player = stand_in
        self._joining[player_id] = stand_in

        def refuse(failure: Failure) -> None:
            error = failure.value
            if not isinstance(error, GameError):
                self.log.failure("{node}: a remote join failed", failure, node=self)
                error = GameError(INTERNAL_ERROR, "the room failed to seat you")
            rid = request_id if error.request_id is None else error.request_id
            self.outbox(home).add([REFUSED_ITEM, player_id, error.code, error.message, rid])

        def done(result: object) -> object:
            if self._joining.get(player_id) is stand_in:
                del self._joining[player_id]
            return result

        if service.stopping:
            refuse(Failure(GameError(SERVER_SHUTDOWN, "the room's node is shutting down")))
            done(None)
            return
        reservation = Reservation(room_id, self.node_id, spec[0], spec[1], created=False)
        try:
            hosting = self._host(reservation)
        except GameError:
            refuse(Failure())
            done(None)
            return
        joined = self._then(hosting, lambda host: host.join(stand_in, options, request_id))
        joined.addErrback(refuse).addBoth(done)

    def _remote_reconnect(
        self,
        home: str,
        player_id: str,
        secret: str,
        user: Any,
        request_id: Any,
        encoding: Any = ENCODING_JSON,
    ) -> None:
        handle = self.local.room_of(player_id)
        if handle is None:
            self.outbox(home).add(
                [REFUSED_ITEM, player_id, INVALID_TOKEN, "reconnect: the token is unknown or expired", request_id]
            )
            return
        link = BusLink(self, home, player_id, encoding)
        try:
            handle.reconnect(player_id, secret, link, request_id, user)
        except GameError as error:
            self.outbox(home).add([REFUSED_ITEM, player_id, error.code, error.message, request_id])

    def _seated(self, node: str, player_id: str, room_id: str) -> None:
        """A room elsewhere seated a player of this node (a join or a reconnect)."""
        service = self._require()
        waiting = self._waiting.pop(player_id, None)
        if waiting is None:
            # A room restored elsewhere took back a player of this node: only
            # if it is still here and still waits for that room.
            membership = self.members.get(player_id)
            if player_id in service.players and membership is not None and membership.room_id == room_id:
                membership.node = node
            else:
                self.outbox(node).add([DROP_ITEM, player_id])
            return
        if waiting.timer is not None and waiting.timer.active():
            waiting.timer.cancel()
        if waiting.link is not None:
            # A reconnect: this connection now speaks for the seat's player.
            link = waiting.link
            lobby = link.player
            if lobby is None or lobby.link is not link:
                # The connection closed while the room took it back: drop it there.
                self.outbox(node).add([DROP_ITEM, player_id])
                waiting.done.callback(None)
                return
            service.players.pop(lobby.id, None)
            lobby.link = None
            back = Player(id=player_id, link=link, user=waiting.user)
            link.player = back
            service.players[player_id] = back
        if player_id in service.players:
            self.members[player_id] = Membership(room_id, node)
        # else: its connection closed meanwhile; the drop sent then frees the seat.
        waiting.done.callback(None)

    # -- the admin API: operations on the rooms of other nodes ----------------------------

    def other_nodes(self) -> list[str]:
        """The other live nodes, as of the last heartbeat."""
        return [
            load.node
            for load in self.nodes
            if load.node != self.node_id and load.node not in self._dead
        ]

    def ask(self, node: str, operation: str, room_id: str, args: Any) -> Deferred[Any]:
        """
        Run an admin operation (L{gameframe.admin.operate}) on another node:
        a Deferred of its answer, or of its GameError; C{unavailable} if the
        node does not answer within C{ADMIN_TIMEOUT} seconds.
        """
        if not self.available or node in self._dead:
            return fail(GameError(UNAVAILABLE, f"node {node} cannot be reached now"))
        self._ask_count += 1
        ask_id = str(self._ask_count)
        self.outbox(node).add([ADMIN_ITEM, ask_id, operation, room_id], orjson.dumps(args))
        asking = self._asks[ask_id] = AdminAsk(Deferred(), node)
        asking.timer = self._clock.callLater(
            ADMIN_TIMEOUT,
            self._admin_settle,
            ask_id,
            GameError(UNAVAILABLE, f"node {node} did not answer"),
        )
        return asking.done

    def _admin_settle(self, ask_id: str, error: GameError | None, answer: Any = None) -> None:
        asking = self._asks.pop(ask_id, None)
        if asking is None:
            return
        if asking.timer is not None and asking.timer.active():
            asking.timer.cancel()
        if error is None:
            asking.done.callback(answer)
        else:
            asking.done.errback(error)

    def _settle_asks(self, node: str | None, why: str) -> None:
        """The asks to C{node} (None: to every node) will get no answer: unavailable."""
        for ask_id, asking in list(self._asks.items()):
            if node is None or asking.node == node:
                self._admin_settle(ask_id, GameError(UNAVAILABLE, why))

    def _admin_asked(
        self, asker: str, ask_id: str, operation: str, room_id: str, payload: bytes
    ) -> None:
        def answered(result: Any) -> None:
            self.outbox(asker).add([ADMIN_ANSWER_ITEM, ask_id, None, ""], orjson.dumps(result))

        def refused(failure: Failure) -> None:
            error = failure.value
            if not isinstance(error, GameError):
                self.log.failure("{node}: an admin {operation} failed", failure, node=self, operation=operation)
                error = GameError(INTERNAL_ERROR, f"the admin {operation} failed")
            self.outbox(asker).add([ADMIN_ANSWER_ITEM, ask_id, error.code, error.message])

        done = maybeDeferred(
            operate, self.local, self.node_id, operation, room_id, orjson.loads(payload)
        )
        done.addCallback(answered).addErrback(refused)

    def _admin_answered(self, ask_id: str, code: str | None, message: str, payload: bytes) -> None:
        if code is None:
            self._admin_settle(ask_id, None, orjson.loads(payload))
        else:
            self._admin_settle(ask_id, GameError(code, message))
