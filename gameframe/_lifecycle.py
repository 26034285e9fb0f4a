"""Lifecycles as explicit machines: a room's phases and a seat's, with the only legal moves."""

from __future__ import annotations

import enum
from typing import Generic, Mapping, TypeVar

P = TypeVar("P", bound=enum.Enum)


class IllegalTransition(RuntimeError):
    """A lifecycle was asked to move where it cannot: a framework bug, never an author's."""


class RoomPhase(enum.Enum):
    CREATING = "creating"  # on_create is running
    RUNNING = "running"  # open for players, ticking
    DISPOSING = "disposing"  # players told, on_leave/on_dispose running
    DISPOSED = "disposed"
    # The server stopped with a store: saved for the next run, not disposed
    # (no on_leave, no on_dispose; the seats live on in the saved room).
    SUSPENDED = "suspended"


class SeatPhase(enum.Enum):
    JOINING = "joining"  # on_auth/on_join running; no joined sent yet
    SEATED = "seated"  # in the room, connected
    DROPPED = "dropped"  # connection lost, seat held for a reconnect
    GONE = "gone"  # out of the room for good


ROOM_MOVES: Mapping[RoomPhase, frozenset[RoomPhase]] = {
    RoomPhase.CREATING: frozenset({RoomPhase.RUNNING, RoomPhase.DISPOSING}),
    RoomPhase.RUNNING: frozenset({RoomPhase.DISPOSING, RoomPhase.SUSPENDED}),
    RoomPhase.DISPOSING: frozenset({RoomPhase.DISPOSED}),
    RoomPhase.DISPOSED: frozenset(),
    RoomPhase.SUSPENDED: frozenset(),
}

SEAT_MOVES: Mapping[SeatPhase, frozenset[SeatPhase]] = {
    SeatPhase.JOINING: frozenset({SeatPhase.SEATED, SeatPhase.GONE}),
    SeatPhase.SEATED: frozenset({SeatPhase.DROPPED, SeatPhase.GONE}),
    SeatPhase.DROPPED: frozenset({SeatPhase.SEATED, SeatPhase.GONE}),
    SeatPhase.GONE: frozenset(),
}


class Lifecycle(Generic[P]):
    """
    One phase and a table of legal moves: L{move} is the only way to change
    the phase, and a move the table does not list raises.

    An enum and a table rather than automat: the phases are few, the moves
    carry no outputs of their own (the host does the work around them), and
    reading C{phase} on the hot path is one attribute load.
    """

    __slots__ = ("phase", "_moves")

    def __init__(self, start: P, moves: Mapping[P, frozenset[P]]) -> None:
        self.phase = start
        self._moves = moves

    def move(self, to: P) -> None:
        if to not in self._moves[self.phase]:
            raise IllegalTransition(f"{self.phase.name} -> {to.name}")
        self.phase = to

    def can_move(self, to: P) -> bool:
        return to in self._moves[self.phase]
