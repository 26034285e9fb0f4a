"""
The cluster's shared store in memory, on an injected clock: the fake a
multi-node test harness runs on (and the reference the Redis scripts match).
"""

from __future__ import annotations

import math
from typing import Any, Callable

from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from gameframe._async import answers
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


@implementer(IClusterDirectory, IMembership, INodeBus)
class MemoryCluster:
    """
    One shared store for every node of a test cluster. L{down} and L{up}
    play the store going away and coming back (empty, like a restarted
    Redis without persistence).
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self.is_down = False
        self._listeners: dict[str, tuple[Callable[[bytes], None], Callable[[], None]]] = {}
        self.sent_batches = 0
        self._wipe()

    def _wipe(self) -> None:
        self._leases: dict[str, tuple[float, NodeLoad]] = {}
        self._deaths: dict[str, float] = {}
        self._rooms: dict[str, RoomRecord] = {}
        self._seats: dict[str, dict[str, float]] = {}  # room id -> player id -> expiry
        self._seat_index: dict[str, str] = {}  # player id -> room id
        self._by_type: dict[str, dict[str, None]] = {}
        self._open: dict[tuple[str, str], dict[str, None]] = {}
        self._node_rooms: dict[str, dict[str, None]] = {}

    # -- the store going away -------------------------------------------------------

    def down(self) -> None:
        """The store is unreachable: every call fails, every listener is lost."""
        self.is_down = True
        listeners, self._listeners = self._listeners, {}
        for _, lost in listeners.values():
            self._clock.callLater(0, lost)

    def up(self, empty: bool = True) -> None:
        """The store is back (empty: it lost everything, as a restarted Redis does)."""
        self.is_down = False
        if empty:
            self._wipe()

    def _check(self) -> None:
        if self.is_down:
            raise Unavailable("the cluster store is down")

    def _check_node(self, node: str) -> None:
        self._check()
        if node in self._deaths:
            raise Fenced(f"node {node} was declared dead")
        if node not in self._leases:
            raise Unavailable(f"node {node} holds no lease: beat first")

    def _alive(self, node: str) -> bool:
        lease = self._leases.get(node)
        return lease is not None and lease[0] > self._clock.seconds()

    # -- membership -------------------------------------------------------------------

    @answers
    def beat(self, load: NodeLoad, ttl: float, since: float) -> Beat:
        self._check()
        if load.node in self._deaths:
            raise Fenced(f"node {load.node} was declared dead")
        now = self._clock.seconds()
        held = self._leases.get(load.node)
        if held is not None and held[1].token != load.token:
            self._declare_dead(load.node, now)
            raise Fenced(f"another process held the name {load.node}")
        self._leases[load.node] = (now + ttl, load)
        for node, (expiry, _) in list(self._leases.items()):
            if expiry <= now:
                self._declare_dead(node, now)
        for node, when in list(self._deaths.items()):
            if when < now - DEATH_MEMORY:
                del self._deaths[node]
        return Beat(
            now=now,
            nodes=tuple(load for _, load in self._leases.values()),
            deaths=tuple(node for node, when in self._deaths.items() if when >= since),
        )

    def _declare_dead(self, node: str, now: float) -> None:
        del self._leases[node]
        self._deaths[node] = now
        self._clear(node)

    @answers
    def leave(self, node: str) -> None:
        self._check()
        self._leases.pop(node, None)
        self._clear(node)

    # -- directory ----------------------------------------------------------------------

    @answers
    def update(self, node: str, changes: list[Change]) -> None:
        self._check_node(node)
        for change in changes:
            if isinstance(change, Put):
                self._put(change.record)
            elif isinstance(change, Gone):
                self._gone(change.room_id)
            elif isinstance(change, Seat):
                if change.room_id in self._rooms:
                    self._seats[change.room_id][change.player_id] = math.inf
                    self._seat_index[change.player_id] = change.room_id
            elif isinstance(change, Unseat):
                self._unseat(change.room_id, change.player_id)
            elif isinstance(change, Clear):
                self._clear(node)

    def _put(self, record: RoomRecord) -> None:
        room_id = record.room_id
        self._rooms[room_id] = record
        self._seats.setdefault(room_id, {})
        self._by_type.setdefault(record.room_type, {})[room_id] = None
        self._node_rooms.setdefault(record.node, {})[room_id] = None
        key = (record.room_type, record.filter_key)
        if record.matchable:
            self._open.setdefault(key, {})[room_id] = None
        else:
            self._open.get(key, {}).pop(room_id, None)

    def _gone(self, room_id: str) -> None:
        record = self._rooms.pop(room_id, None)
        if record is None:
            return
        for player_id in self._seats.pop(room_id, {}):
            if self._seat_index.get(player_id) == room_id:
                del self._seat_index[player_id]
        self._by_type.get(record.room_type, {}).pop(room_id, None)
        self._open.get((record.room_type, record.filter_key), {}).pop(room_id, None)
        self._node_rooms.get(record.node, {}).pop(room_id, None)

    def _unseat(self, room_id: str, player_id: str) -> None:
        self._seats.get(room_id, {}).pop(player_id, None)
        if self._seat_index.get(player_id) == room_id:
            del self._seat_index[player_id]

    def _clear(self, node: str) -> None:
        for room_id in list(self._node_rooms.pop(node, {})):
            self._gone(room_id)

    def _free_seat(self, room_id: str, player_id: str) -> bool:
        """Reserve a seat if one is free (lapsed reservations first freed)."""
        record = self._rooms[room_id]
        seats = self._seats[room_id]
        now = self._clock.seconds()
        for held, expiry in list(seats.items()):
            if expiry <= now:
                del seats[held]
        if record.max_players is not None and len(seats) >= record.max_players:
            return False
        seats[player_id] = now + RESERVATION_TTL
        return True

    @staticmethod
    def _reservation(record: RoomRecord, created: bool) -> Reservation:
        return Reservation(
            room_id=record.room_id,
            node=record.node,
            room_type=record.room_type,
            options=record.options,
            created=created,
        )

    @answers
    def match(
        self, node: str, room_type: str, filter_key: str | None, player_id: str, new_room: RoomRecord
    ) -> Reservation:
        self._check_node(node)
        if filter_key is not None:
            for room_id in self._open.get((room_type, filter_key), {}):
                record = self._rooms[room_id]
                if self._alive(record.node) and self._free_seat(room_id, player_id):
                    return self._reservation(record, created=False)
        self._put(new_room)
        self._free_seat(new_room.room_id, player_id)
        return self._reservation(new_room, created=True)

    @answers
    def reserve(self, node: str, room_id: str, player_id: str) -> Reservation:
        self._check_node(node)
        record = self._rooms.get(room_id)
        if record is None or not self._alive(record.node):
            raise GameError(ROOM_NOT_FOUND, f"there is no room {room_id!r}")
        if record.locked:
            raise GameError(ROOM_LOCKED, f"room {room_id} is locked")
        if not self._free_seat(room_id, player_id):
            raise GameError(ROOM_FULL, f"room {room_id} is full")
        return self._reservation(record, created=False)

    @answers
    def seat_of(self, player_id: str) -> tuple[str, str] | None:
        self._check()
        room_id = self._seat_index.get(player_id)
        record = None if room_id is None else self._rooms.get(room_id)
        if record is None or not self._alive(record.node):
            return None
        return (record.room_id, record.node)

    @answers
    def listing(self, room_type: str | None) -> list[dict[str, Any]]:
        self._check()
        if room_type is None:
            ids: list[str] = [i for of_type in self._by_type.values() for i in of_type]
        else:
            ids = list(self._by_type.get(room_type, {}))
        records = [self._rooms[i] for i in ids]
        return [
            dict(record.entry)
            for record in records
            if record.running and not record.private and self._alive(record.node)
        ]

    # -- bus --------------------------------------------------------------------------

    @answers
    def send(self, node: str, batch: bytes) -> None:
        self._check()
        self.sent_batches += 1
        listener = self._listeners.get(node)
        if listener is not None:
            self._clock.callLater(0, self._deliver, node, listener, batch)

    def _deliver(
        self, node: str, listener: tuple[Callable[[bytes], None], Callable[[], None]], batch: bytes
    ) -> None:
        if self._listeners.get(node) is listener:
            listener[0](batch)

    @answers
    def listen(
        self, node: str, receive: Callable[[bytes], None], lost: Callable[[], None]
    ) -> None:
        self._check()
        self._listeners[node] = (receive, lost)

    @answers
    def close(self) -> None:
        pass

    def forget(self, node: str) -> None:
        """Stop delivering to C{node} (its process died)."""
        self._listeners.pop(node, None)
