"""The contracts between gameframe's parts (zope.interface)."""

from __future__ import annotations

from typing import Any, Mapping

from zope.interface import Attribute, Interface


class IPlayerLink(Interface):
    """
    What the rest of gameframe sees of one player's connection, whatever its
    transport (TCP, WebSocket, or a test fake).

    A link may also have an C{encoding} attribute (not required: links
    without one get JSON Patches): how the client asked for its state
    patches, C{"json"} (RFC 6902, the default) or C{"compact"}
    (L{gameframe.compact}). The RoomService sets it from the request that
    seats the player.
    """

    player = Attribute(
        "The Player this connection speaks for; the RoomService sets it on"
        " connect, and again when a reconnect moves the connection to a held seat."
    )

    congested = Attribute(
        "True while the connection's socket is backed up (the client is not"
        " reading what was sent): state patches are skipped for it, and it gets"
        " one full state when it drains."
    )

    def send(message: Mapping[str, Any]) -> None:
        """Encode one message and send it."""

    def send_encoded(data: bytes) -> None:
        """
        Send one message that is already encoded (UTF-8 JSON, no framing).

        Broadcasts encode once and hand the same bytes to every link.
        """

    def close(code: str, message: str, retry: bool = False) -> None:
        """
        Tell the peer why with a final C{disconnect} message, then close.
        C{retry}: the message says C{"retry": true} (the server is
        restarting and the player's seat is kept: reconnect with the token).
        """


class IRoomHandle(Interface):
    """
    What the RoomService sees of one room, wherever it runs: the seam a
    cluster puts a remote room behind.
    """

    room_id = Attribute("The room's id, unique across the server (or cluster).")
    room_type = Attribute("The room type name it was created as.")
    options = Attribute("The options it was created with (matchmaking filters read them).")
    running = Attribute("Whether it is open: created, and not disposing or disposed.")

    def join(player: Any, options: dict[str, Any], request_id: Any) -> Any:
        """
        Seat C{player} (C{on_auth}, then C{on_join}); on success the player
        gets C{joined}, its full state and what was sent meanwhile. L{None}
        or a Deferred that fires when done; raises or fails with GameError.
        """

    def dispatch(player: Any, message: dict[str, Any]) -> Any:
        """Run a room action for a seated player: its result, or a Deferred of it."""

    def drop(player: Any, hold: float = 0.0) -> None:
        """
        The player's connection dropped: hold its seat, or let it leave
        (C{hold}: hold it at least that many seconds, whatever the room says).
        """

    def reconnect(
        player_id: str, secret: str, link: IPlayerLink, request_id: Any, user: Any
    ) -> Any:
        """
        Give a held seat to a new connection if C{secret} is the seat's
        token: the Player it now speaks for. GameError C{invalid_token} if
        not; C{unauthorized} if the connection authenticated as another
        C{user} than the seat's player.
        """

    def leave(player: Any, reason: str) -> Any:
        """Take the player out of the room: a Deferred that fires once C{on_leave} ran."""

    def resync(player: Any, request_id: Any) -> None:
        """Send the player the full state of its view again."""

    def describe() -> dict[str, Any]:
        """The room's listing entry (as in the C{list} reply)."""


class IRoomDirectory(Interface):
    """
    Where the rooms are and what their listings say. Rooms tell it of every
    change (lock, unlock, metadata, seats); nothing polls. In memory for one
    process; the cluster's lives in Redis.
    """

    def register(room: IRoomHandle) -> None:
        """A room was created (not listed nor matched until it is running)."""

    def changed(room: IRoomHandle) -> None:
        """Something in the room's listing changed: read C{describe()} again."""

    def unregister(room: IRoomHandle) -> None:
        """The room is gone."""

    def get(room_id: str) -> IRoomHandle | None:
        """A live room by id (running or not yet), or None."""

    def rooms(room_type: str | None = None) -> list[IRoomHandle]:
        """The live rooms (of one type)."""

    def joinable(room_type: str) -> list[IRoomHandle]:
        """Rooms of a type open to matchmaking: running, public, not locked, not full."""

    def listing(room_type: str | None = None) -> list[dict[str, Any]]:
        """The public running rooms' listing entries (of one type, or all)."""

    def seat(player_id: str, room_id: str) -> None:
        """A player has a seat (seated or held) in a room: where a reconnect goes."""

    def unseat(player_id: str, room_id: str) -> None:
        """The player's seat in that room is gone."""

    def room_of(player_id: str) -> IRoomHandle | None:
        """The room that holds a seat for the player, if any."""
