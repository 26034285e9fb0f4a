"""The TCP protocol and factory: JSON Lines framing, limits, one player session per connection."""

from __future__ import annotations

import ipaddress

from math import inf

from twisted.internet.interfaces import IAddress, IPushProducer, ISSLTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from gameframe._link import (
    DEFAULT_MAX_FRAME,
    DEFAULT_MAX_PENDING,
    DEFAULT_MAX_PENDING_MESSAGES,
    LINGER,
    BufferedLink,
    LinkFactory,
)
from gameframe._sendpath import writer_for

__all__ = [
    "DEFAULT_MAX_FRAME",
    "DEFAULT_MAX_PENDING",
    "DEFAULT_MAX_PENDING_MESSAGES",
    "LINGER",
    "GameFactory",
    "GameProtocol",
]


def peer_host(transport: object) -> str | None:
    """
    The IP address of a transport's peer; None for peers without one (UNIX
    sockets). An IPv4 client of a dual-stack IPv6 endpoint (C{::ffff:a.b.c.d})
    is its IPv4 address, so it counts once against C{--max-per-address}.
    """
    get_peer = getattr(transport, "getPeer", None)
    host = getattr(get_peer(), "host", None) if get_peer is not None else None
    if not isinstance(host, str):
        return None
    if host.startswith("::ffff:"):
        try:
            mapped = ipaddress.IPv6Address(host.split("%", 1)[0]).ipv4_mapped
        except ValueError:
            return host
        if mapped is not None:
            return str(mapped)
    return host


def tune_socket(transport: object) -> None:
    """No Nagle delay (game messages are small and late ones are stale), TCP keepalive on."""
    set_no_delay = getattr(transport, "setTcpNoDelay", None)
    if set_no_delay is not None:
        set_no_delay(True)
    set_keep_alive = getattr(transport, "setTcpKeepAlive", None)
    if set_keep_alive is not None:
        set_keep_alive(True)


class GameProtocol(BufferedLink, Protocol):
    """
    One TCP connection: one UTF-8 JSON object per line, in both directions.
    On a plain TCP socket, output is sent directly when the socket is idle
    (L{SocketWriter}); otherwise (TLS, tests) through the transport.

    Lines longer than the frame limit and bytes that are not UTF-8 end the
    connection with an C{error}; every other bad input gets an C{error}
    and the connection goes on. Each line counts against the message rate
    before it is decoded; a partial line is timed for the frame timeout.
    A client that stops reading while more than C{max_pending} bytes wait
    for it is disconnected.
    """

    transport_name = "tcp"

    _inbox = b""
    _direct = True  # send on the socket directly when it can (see SocketWriter)

    # -- connection lifecycle ------------------------------------------------

    def connectionMade(self) -> None:
        transport = self.transport
        assert transport is not None
        tune_socket(transport)
        writer = writer_for(
            transport,
            self._max_pending,
            self._overflow,
            self._direct,
            max_messages=self._max_messages,
        )
        self._opened(writer, peer_host(transport))

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        self._closed()

    # -- input -----------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        self._last_seen = now = self._clock.seconds()
        self._service.metrics.bytes_received += len(data)
        inbox = self._inbox
        buffer = inbox + data if inbox else data
        start = 0
        limit = self._max_frame
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            line = buffer[start:end]
            start = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > limit:
                self._too_large()
                return
            self._frame_received(line)
            if self._closing:
                return
            if self._resume is not None:
                # Over the rate: every whole line left in this chunk would be
                # dropped too; skip them in one search, not line by line.
                skipped, start = start, buffer.rfind(b"\n") + 1
                self._service.metrics.rate_limited += buffer.count(b"\n", skipped, start)
        self._inbox = rest = buffer[start:]
        if not rest:
            self._frame_started = inf
            return
        if start or not inbox:
            self._frame_started = now  # a new line began in this chunk
        # A partial line may end with the CR of its CRLF, which is not counted.
        if len(rest) - rest.endswith(b"\r") > limit:
            self._too_large()

    # -- BufferedLink ----------------------------------------------------------

    def _reading_transport(self) -> IPushProducer | None:
        return self.transport  # type: ignore[return-value]

    def _frame(self, messages: list[bytes]) -> bytes:
        messages.append(b"")
        return b"\n".join(messages)

    def _frame_parts(self, messages: list[bytes]) -> list[bytes]:
        parts: list[bytes] = []
        for message in messages:
            parts += (message, b"\n")
        return parts

    def _disconnect(self, abort: bool) -> None:
        assert self.transport is not None
        if abort:
            self.transport.abortConnection()  # type: ignore[attr-defined]
        else:
            self._inbox = b""
            self._frame_started = inf
            if self._writer is not None:
                self._writer.detach()  # a registered producer would keep it open
            half_close = getattr(self.transport, "loseWriteConnection", None)
            if half_close is None or ISSLTransport.providedBy(self.transport):
                # TLS: its loseConnection sends what is buffered (the refusal
                # of a connection still in its handshake included), then its
                # close_notify; closing the TCP write side under it would not.
                self.transport.loseConnection()
                return
            # Close our side only and read (and drop) what the client still
            # sends until it closes too: closing with unread input would make
            # the kernel reset the connection, and the client could lose our
            # last message (the error saying why). _linger bounds the wait.
            half_close()


class GameFactory(LinkFactory, Factory):
    """
    Makes a L{GameProtocol} for each TCP connection, all sharing one
    L{RoomService}, one flush per reactor turn (or every C{flush_interval}
    seconds: fewer sends, more latency), the L{Limits} and a
    L{ConnectionGate} (pass the same C{gate} to a server's WebSocket
    factory so C{max_connections} counts both).

    Twisted calls L{startFactory} when the first port using it starts
    listening and L{stopFactory} when the last stops: the timeout sweep
    runs in between.
    """

    def buildProtocol(self, addr: IAddress | None) -> GameProtocol:
        protocol = GameProtocol(self)
        protocol.factory = self
        return protocol

    def startFactory(self) -> None:
        self.start_sweeping()

    def stopFactory(self) -> None:
        self.stop_sweeping()
