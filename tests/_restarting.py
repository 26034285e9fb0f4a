"""
A small real server on 127.0.0.1 that restarts the way a gameframe server
with a room store does (issue 10): it says C{disconnect} with C{"retry":
true}, stops listening, and, started again on the same port, gives the seat
back to a C{reconnect} with the latest token. For the clients' tests of
reconnecting by themselves.
"""

from __future__ import annotations

import itertools
import json
from typing import Any, Iterator

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineOnlyReceiver

HOST = "127.0.0.1"
PLAYER = "p1"
ROOM_ID = "R1"


class _Player(LineOnlyReceiver):
    """One connection: welcome, then the lobby calls the tests use."""

    delimiter = b"\n"
    factory: RestartingServer

    def connectionMade(self) -> None:
        self.factory.connections.add(self)
        self.write({"action": "welcome", "server": "gameframe", "player_id": self.factory.fresh_id()})

    def connectionLost(self, reason: Any = None) -> None:
        self.factory.connections.discard(self)

    def write(self, message: dict[str, Any]) -> None:
        self.sendLine(json.dumps(message).encode())

    def lineReceived(self, line: bytes) -> None:
        message = json.loads(line)
        action, request_id = message["action"], message.get("id")
        server = self.factory
        if action == "join_or_create":
            self.seat(request_id)
        elif action == "reconnect":
            server.claims.append(message["token"])
            if message["token"] != server.token:
                self.write(
                    {
                        "action": "error",
                        "code": "invalid_token",
                        "message": "no seat holds this token",
                        "id": request_id,
                    }
                )
            else:
                self.seat(request_id)
        elif action == "ping":
            self.write({"action": "pong", "t": message.get("t"), "id": request_id})
        else:
            server.actions.append(message)
            self.write({"action": "result", "result": server.turn, "id": request_id})

    def seat(self, request_id: Any) -> None:
        """Answer a join or a reconnect: joined with a fresh token, then the full state."""
        server = self.factory
        server.token = f"T{next(server.tokens)}"
        self.write(
            {
                "action": "joined",
                "room": "tictactoe",
                "room_id": ROOM_ID,
                "player_id": PLAYER,
                "players": [PLAYER],
                "token": server.token,
                "id": request_id,
            }
        )
        self.write({"action": "state", "seq": server.turn, "state": {"turn": server.turn}})


class RestartingServer(Factory):
    """
    The server: L{start} listens (on the same port each time), L{restart}
    says goodbye with C{retry} and stops listening, L{forget} loses the
    seats (as a server past its C{--restore-grace}).

    @ivar claims: the tokens every C{reconnect} carried, in order.
    @ivar actions: the room actions received.
    """

    protocol = _Player

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self.port = 0
        self._listening: IListeningPort | None = None
        self.connections: set[_Player] = set()
        self.tokens: Iterator[int] = itertools.count(1)
        self._ids: Iterator[int] = itertools.count(1)
        self.token: str | None = None
        self.claims: list[str] = []
        self.actions: list[dict[str, Any]] = []
        self.turn = 0

    def fresh_id(self) -> str:
        return f"lobby{next(self._ids)}"

    @property
    def listening(self) -> bool:
        return self._listening is not None

    def start(self) -> None:
        self._listening = self._reactor.listenTCP(self.port, self, interface=HOST)
        self.port = self._listening.getHost().port

    def restart(self, retry: bool = True) -> Deferred[None]:
        """
        Stop as a server with a store does: every player gets C{disconnect}
        C{server_shutdown} (with C{retry} unless told), the connections
        close, and nothing listens; fires once the port is closed.
        """
        self.turn += 1
        for player in list(self.connections):
            goodbye = {"action": "disconnect", "code": "server_shutdown", "message": "restarting"}
            if retry:
                goodbye["retry"] = True
            player.write(goodbye)
            player.transport.loseConnection()
        return self.stop()

    def drop(self) -> None:
        """Every connection breaks, without any C{disconnect} message."""
        for player in list(self.connections):
            player.transport.abortConnection()

    def forget(self) -> None:
        """The seats are gone: every token is refused from now on."""
        self.token = None

    def stop(self) -> Deferred[None]:
        listening, self._listening = self._listening, None
        if listening is None:
            return succeed(None)
        return maybeDeferred(listening.stopListening)

    def close_all(self) -> None:
        for player in list(self.connections):
            player.transport.abortConnection()
