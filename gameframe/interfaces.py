"""The contracts between gameframe's parts (zope.interface)."""

from __future__ import annotations

from typing import Any, Mapping

from zope.interface import Attribute, Interface


class IPlayerLink(Interface):
    """
    What the rest of gameframe sees of one player's connection, whatever its
    transport (TCP, WebSocket, or a test fake).
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

    def close(code: str, message: str) -> None:
        """
        Tell the peer why with a final C{disconnect} message, then close.
        """
