"""
What a cluster keeps in its shared store (Redis, or memory in tests): the
three seams (directory, membership, bus) and the records they pass.

Every call returns a Deferred. One that cannot reach the store fails with
L{Unavailable}; a write from a node the others declared dead fails with
L{Fenced}. Reservation refusals fail with a L{GameError} whose code is the
wire protocol's (C{room_not_found}, C{room_full}, C{room_locked}).
"""

from __future__ import annotations

from typing import Any, Callable, Union

import attrs
from twisted.internet.defer import Deferred
from zope.interface import Interface

# A room's seat reservation that no node confirmed lapses after this many seconds.
RESERVATION_TTL = 30.0
# How long a dead node's name is remembered (it may not come back under it).
DEATH_MEMORY = 3600.0


class Unavailable(Exception):
    """The shared store cannot be reached now."""


class Fenced(Exception):
    """The other nodes declared this node dead: it must rejoin as a new node."""


@attrs.frozen
class NodeLoad:
    """One live node, as its last heartbeat described it."""

    node: str
    players: int = 0
    rooms: int = 0
    cpu: float = 0.0  # share of one core its process used since the last beat
    draining: bool = False
    # Random per process: the same name beating with another token is a new
    # process (a restart): the name's previous holder is declared dead.
    token: str = ""


@attrs.frozen
class Beat:
    """What a heartbeat learned: the live nodes, and the nodes declared dead since C{since}."""

    now: float
    nodes: tuple[NodeLoad, ...]
    deaths: tuple[str, ...]


@attrs.frozen
class RoomRecord:
    """One room as its node publishes it."""

    room_id: str
    room_type: str
    node: str
    entry: dict[str, Any]  # the public listing entry (node included)
    options: dict[str, Any]  # what it was created with: a node that must create it reads them
    filter_key: str  # its filter_by options, encoded: matchmaking matches on equality
    max_players: int | None
    running: bool  # False: placed by matchmaking, its node has not created it yet
    private: bool = False
    locked: bool = False  # locked by the room's author (full is counted from the seats)

    @property
    def matchable(self) -> bool:
        return not self.private and not self.locked


@attrs.frozen
class Put:
    """Create or update a room's record."""

    record: RoomRecord


@attrs.frozen
class Gone:
    """The room is disposed: its record, index entries and seats go."""

    room_id: str


@attrs.frozen
class Seat:
    """A player holds a seat (seated, or dropped and held) in a room: where its reconnect goes."""

    room_id: str
    player_id: str


@attrs.frozen
class Unseat:
    """The player's seat (or reservation) in the room is gone."""

    room_id: str
    player_id: str


@attrs.frozen
class Clear:
    """Forget every room of the node (before it publishes them all again)."""


Change = Union[Put, Gone, Seat, Unseat, Clear]


@attrs.frozen
class Reservation:
    """A seat reserved for a player: the room, where it runs, and how to create it if needed."""

    room_id: str
    node: str
    room_type: str
    options: dict[str, Any]
    created: bool  # this call placed a new room


class IClusterDirectory(Interface):
    """Where every node's rooms are, their listings, and their seats."""

    def update(node: str, changes: list[Change]) -> Deferred[None]:
        """Apply one node's changes, in order, atomically. Fails with Fenced or Unavailable."""

    def match(
        node: str, room_type: str, filter_key: str | None, player_id: str, new_room: RoomRecord
    ) -> Deferred[Reservation]:
        """
        Reserve a seat for C{player_id} in a matchable running-or-placed room of
        C{room_type} with that C{filter_key} on a live node, with a free seat;
        if there is none (or C{filter_key} is None: always), place C{new_room}
        and reserve its first seat. Atomic across every node.
        """

    def reserve(node: str, room_id: str, player_id: str) -> Deferred[Reservation]:
        """Reserve a seat in one room (join by id): GameError if gone, full or locked."""

    def seat_of(player_id: str) -> Deferred[tuple[str, str] | None]:
        """The (room id, node) holding a seat for the player, if any."""

    def listing(room_type: str | None) -> Deferred[list[dict[str, Any]]]:
        """The listed (public, running) rooms of one type, or of all, on live nodes."""


class IMembership(Interface):
    """Node leases: who is alive, and who was declared dead."""

    def beat(load: NodeLoad, ttl: float, since: float) -> Deferred[Beat]:
        """
        Renew this node's lease for C{ttl} seconds (taking it if absent),
        declare dead every node whose lease lapsed (their rooms leave the
        directory), and say who is alive and who died since C{since}.
        Fails with Fenced if this node was declared dead, or if the name's
        lease is held with another C{token} (an earlier process under the
        same name: it is declared dead now, and the caller must rejoin under
        a new name).
        """

    def leave(node: str) -> Deferred[None]:
        """A node stops cleanly: its lease and rooms go (no one is told it died)."""


class INodeBus(Interface):
    """Node-to-node messages: one batch per destination per flush, in order per sender."""

    def send(node: str, batch: bytes) -> Deferred[None]:
        """Send one batch to a node (lost if the node is not listening)."""

    def listen(node: str, receive: Callable[[bytes], None], lost: Callable[[], None]) -> Deferred[None]:
        """
        Start receiving the batches sent to C{node}; fires once listening.
        C{lost} is called if listening stops (the store went away): listen again.
        """

    def close() -> Deferred[None]:
        """Stop listening and drop the connections."""
