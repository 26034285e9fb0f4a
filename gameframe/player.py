"""Player: one participant's identity, author data and link (no secrets, no engine state)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import attrs

from gameframe.codec import encode
from gameframe.interfaces import IPlayerLink

if TYPE_CHECKING:
    from gameframe.room import Room


@attrs.define(eq=False, repr=False)
class Player:
    """
    A player: stable for its whole stay, across reconnections.

    @ivar id: the public player id other players see.
    @ivar link: the connection, or L{None} while the player is dropped and
        its seat is held.
    @ivar room: the room the player is in, if any.
    @ivar data: free for the room author (a name, a team, a score...).
    @ivar user: the identity the server-wide C{--auth} callable returned for
        this connection's C{authenticate} (L{None}: not authenticated).
    @ivar auth: what the room's L{Room.on_auth} returned when it joined.

    The reconnection token is the engine's secret, kept in the room's seat,
    never on the player: printing or logging a player shows no secret.
    """

    id: str
    link: IPlayerLink | None = attrs.field(default=None, repr=False)
    room: Room | None = attrs.field(default=None, repr=False)
    data: dict[str, Any] = attrs.Factory(dict)
    user: Any = attrs.field(default=None, repr=False)
    auth: Any = attrs.field(default=None, repr=False)
    # Messages held back (encoded) while joining or dropped; None: send at once.
    _held: list[bytes] | None = attrs.field(default=None, repr=False, alias="_held")
    _held_limit: int = attrs.field(default=0, repr=False, alias="_held_limit")

    @property
    def connected(self) -> bool:
        """Whether a connection is attached right now."""
        return self.link is not None

    def send(self, message: Mapping[str, Any]) -> None:
        """Send one message to this player."""
        self.send_encoded(encode(message))

    def send_encoded(self, data: bytes) -> None:
        """Send one pre-encoded message to this player (or hold it)."""
        held = self._held
        if held is not None:
            if self._held_limit and len(held) >= self._held_limit:
                del held[0]
            held.append(data)
        elif self.link is not None:
            self.link.send_encoded(data)

    def hold(self, limit: int = 0) -> None:
        """Hold outgoing messages (at most C{limit}, oldest dropped; 0: no limit)."""
        if self._held is None:
            self._held = []
        self._held_limit = limit

    def release(self, *first: bytes) -> None:
        """
        Send C{first}, then the held messages in order, and go back to
        sending at once.
        """
        held, self._held = self._held, None
        if self.link is not None:
            for data in first:
                self.link.send_encoded(data)
            for data in held or ():
                self.link.send_encoded(data)

    def __repr__(self) -> str:
        return f"<Player {self.id}>"

    def discard_held(self) -> None:
        """Forget the held messages and go back to sending at once."""
        self._held = None
