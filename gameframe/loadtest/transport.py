"""Where the players connect: the target URL, the loopback check, and a connection over TCP or WebSocket."""

from __future__ import annotations

import ipaddress
from typing import Any, Callable
from urllib.parse import urlsplit

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure
from twisted.web.websocket import WebSocketClientEndpoint, WebSocketTransport

from gameframe.txclient import GameClientProtocol

__all__ = ["Connect", "Target", "connector", "is_loopback"]

#: Opens one connection: a Deferred of the protocol once the server's welcome came.
Connect = Callable[[], "Deferred[GameClientProtocol]"]

SCHEMES = ("tcp", "ws", "wss")


@attrs.frozen
class Target:
    """A parsed C{--url}: C{tcp://HOST:PORT}, C{ws://HOST:PORT/PATH} or C{wss://...}."""

    url: str
    scheme: str
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Target:
        """@raise ValueError: with a message fit for the command line."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES:
            raise ValueError(
                f"--url {url!r}: use tcp://HOST:PORT, ws://HOST:PORT/ws or wss://HOST/ws"
            )
        host = parts.hostname
        if not host:
            raise ValueError(f"--url {url!r} has no host")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"--url {url!r}: bad port") from None
        if port is None:
            if scheme == "tcp":
                raise ValueError(f"--url {url!r}: tcp:// needs a port (tcp://{host}:7000)")
            port = 443 if scheme == "wss" else 80
        if scheme == "tcp" and parts.path not in ("", "/"):
            raise ValueError(f"--url {url!r}: a tcp:// URL has no path")
        return cls(url, scheme, host, port)

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """Whether C{host} is this machine: C{localhost} or a loopback address (no DNS lookup)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def connector(reactor: Any, target: Target, timeout: float, mirror: bool = True) -> Connect:
    """
    A function that opens one connection to C{target} (the TCP connect
    bounded by C{timeout}); with C{mirror} false the connections do not
    keep the room's state: applying every patch is most of a client's work
    in a state-synced room, and a player that never reads its state is
    spared it.
    """
    if target.scheme == "tcp":

        def over_tcp() -> Deferred[GameClientProtocol]:
            client = GameClientProtocol(mirror=mirror)
            endpoint = HostnameEndpoint(reactor, target.host, target.port, timeout=timeout)
            return _welcomed(client, endpoint.connect(_Given(client)))

        return over_tcp
    websocket = WebSocketClientEndpoint.new(
        reactor, target.url, connectTimeout=max(1, round(timeout))
    )

    def over_websocket() -> Deferred[GameClientProtocol]:
        client = GameClientProtocol(mirror=mirror)
        handshake = Deferred.fromCoroutine(websocket.connect(_Given(client, _WebSocketBridge)))
        return _welcomed(client, handshake)

    return over_websocket


def _welcomed(client: GameClientProtocol, attempt: Deferred[Any]) -> Deferred[GameClientProtocol]:
    """
    A Deferred of C{client} once the server's welcome has arrived; it fails
    if the connection C{attempt} fails or the connection closes first.
    Cancelling it abandons the attempt and aborts the connection if made.
    """

    def cancel(_: Deferred[GameClientProtocol]) -> None:
        attempt.cancel()
        transport = client.transport
        if transport is not None:
            transport.abortConnection()  # type: ignore[attr-defined]

    result: Deferred[GameClientProtocol] = Deferred(cancel)

    def failed(failure: Failure) -> None:
        if not result.called:
            result.errback(failure)

    def welcomed(protocol: GameClientProtocol) -> None:
        if not result.called:
            result.callback(protocol)

    attempt.addErrback(failed)
    client.welcomed.addCallbacks(welcomed, failed)
    return result


class _Given(Factory):
    """
    A client factory (for an endpoint, or a WebSocket endpoint) whose one
    connection is C{client}, bare or wrapped by C{wrap}.
    """

    def __init__(
        self, client: GameClientProtocol, wrap: Callable[[GameClientProtocol], Any] | None = None
    ) -> None:
        self._client = client
        self._wrap = wrap

    def buildProtocol(self, addr: Any) -> Any:
        if self._wrap is not None:
            return self._wrap(self._client)
        return self._client


# -- WebSocket: a GameClientProtocol whose lines travel as text frames ----------------------


class _TextFrames:
    """
    What a L{GameClientProtocol} writes to, over a WebSocket: each write is
    one JSON line (the client writes one message per call), sent as one
    text frame without its newline.
    """

    def __init__(self, websocket: WebSocketTransport, tcp: Any) -> None:
        self._websocket = websocket
        self._tcp = tcp

    def write(self, data: bytes) -> None:
        self._websocket.sendTextMessage(data.rstrip(b"\n").decode())

    def writeSequence(self, data: list[bytes]) -> None:
        for line in data:
            self.write(line)

    def loseConnection(self) -> None:
        self._websocket.loseConnection(1000)

    def abortConnection(self) -> None:
        self._tcp.abortConnection()

    def setTcpNoDelay(self, enabled: bool) -> None:
        self._tcp.setTcpNoDelay(enabled)

    def getPeer(self) -> Any:
        return self._tcp.getPeer()

    def getHost(self) -> Any:
        return self._tcp.getHost()


class _WebSocketBridge:
    """
    The C{WebSocketProtocol} that carries one L{GameClientProtocol}: every
    text frame is one message, handed to the client as one JSON line, so
    the session, requests and state mirror are the TCP client's own.
    """

    def __init__(self, client: GameClientProtocol) -> None:
        self.client = client
        self._websocket: WebSocketTransport | None = None

    def negotiationStarted(self, transport: WebSocketTransport) -> None:
        self._websocket = transport

    def negotiationFinished(self) -> None:
        websocket = self._websocket
        assert websocket is not None
        tcp = websocket.transport  # type: ignore[attr-defined]
        self.client.makeConnection(_TextFrames(websocket, tcp))

    def textMessageReceived(self, message: str) -> None:
        # gameframe sends compact JSON, so a frame never holds a raw newline.
        self.client.dataReceived(message.encode() + b"\n")

    def bytesMessageReceived(self, data: bytes | bytearray) -> None:
        pass  # gameframe sends text frames only

    def pongReceived(self, payload: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        self.client.connectionLost(reason)
