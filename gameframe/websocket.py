"""The WebSocket transport on twisted.web.websocket: one JSON message per text frame, same sessions as TCP."""

from __future__ import annotations

import struct
from math import inf
from typing import Any, Callable, Iterable, cast

from twisted.internet.interfaces import IPushProducer, IReactorTime, ITransport
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Request
from twisted.web.websocket import WebSocketResource, WebSocketTransport

from gameframe._limits import ConnectionGate, Limits
from gameframe._link import (
    DEFAULT_MAX_FRAME,
    DEFAULT_MAX_PENDING,
    DEFAULT_MAX_PENDING_MESSAGES,
    BufferedLink,
    LinkFactory,
)
from gameframe._sendpath import writer_for
from gameframe._wsframes import FrameReader
from gameframe.protocol import peer_host, tune_socket
from gameframe.service import RoomService
from gameframe.vocabulary import BAD_MESSAGE, error_message

DEFAULT_PING_INTERVAL = 20.0

# The headers of unmasked, final text frames of 0 to 125 bytes, made once.
_SHORT_HEADERS = tuple(bytes((0x81, size)) for size in range(126))


def text_frame_header(size: int) -> bytes:
    """The header of an unmasked, final RFC 6455 text frame (what a server sends)."""
    if size < 126:
        return _SHORT_HEADERS[size]
    if size < 65536:
        return struct.pack("!BBH", 0x81, 126, size)
    return struct.pack("!BBQ", 0x81, 127, size)


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final RFC 6455 text frame holding C{payload}."""
    return text_frame_header(len(payload)) + payload


class WebSocketLink(BufferedLink):
    """
    One WebSocket player: the same session contract as a TCP connection.

    Incoming bytes pass through a L{FrameReader} first: whole text frames
    are parsed there, everything else goes on to Twisted's WebSocket code
    (wsproto). Messages are capped at the frame limit (Twisted buffers a
    whole message before delivering it, so the sizes the headers declare
    are read first and a client that declares more is cut off).
    The same count of the raw bytes times the frame timeout: from the first
    byte of a message (or a control frame) to its last. Each data message,
    text or binary, counts against the message rate. Outgoing messages are
    framed here and written to the TCP transport, several frames per write.
    No extension (permessage-deflate) is ever negotiated.
    """

    transport_name = "websocket"

    _ws: WebSocketTransport
    _tcp: ITransport

    def __init__(
        self,
        factory: WebSocketGameFactory,
        request: Request,
    ) -> None:
        super().__init__(factory)
        self._request = request
        self._ponged = True

    # -- WebSocketProtocol -----------------------------------------------------

    def negotiationStarted(self, transport: WebSocketTransport) -> None:
        self._ws = transport
        self._tcp = transport.transport  # type: ignore[attr-defined]
        # Every byte Twisted's WebSocket code writes from now on (pongs,
        # close frames) takes our write path too, in order with our frames:
        # so our frames may go straight to the socket without ever landing
        # inside one of its frames.
        transport.transport = _OwnedWrites(self._tcp, self)  # type: ignore[attr-defined]
        self._cap_incoming()

    def negotiationFinished(self) -> None:
        # The HTTP channel registered itself as the connection's producer;
        # after the upgrade the WebSocket session's writer takes its place.
        # The 101 response may still sit in the transport: queue behind it.
        self._tcp.unregisterProducer()  # type: ignore[attr-defined]
        tune_socket(self._tcp)
        writer = writer_for(
            self._tcp,
            self._max_pending,
            self._overflow,
            drained=False,
            max_messages=self._max_messages,
        )
        self._opened(writer, peer_host(self._tcp))

    def _write_raw(self, data: bytes) -> None:
        """Bytes Twisted's WebSocket code writes: after ours, on our write path."""
        if self._writer is None:
            self._tcp.write(data)
        else:
            self._out.flush()
            self._writer.write(data)

    def _close_written(self) -> None:
        """
        Twisted's WebSocket code wrote a close frame and is closing: send
        nothing more (and drop the connection if the client never closes).
        """
        if not self._closing:
            self._closing = True
        self._linger()

    def textMessageReceived(self, message: str) -> None:
        if self._closing:
            return
        if len(message) > self._max_frame and len(message.encode()) > self._max_frame:
            self._too_large()
            return
        self._frame_received(message)

    def bytesMessageReceived(self, data: bytes | bytearray) -> None:
        if self._closing or not self._counted():
            return
        self._service.metrics.error(BAD_MESSAGE)
        self.send(error_message(BAD_MESSAGE, "send JSON in text frames, not binary"))

    def _reading_transport(self) -> IPushProducer | None:
        return getattr(self, "_tcp", None)

    def pongReceived(self, payload: bytes) -> None:
        self._ponged = True

    def connectionLost(self, reason: Failure) -> None:
        self._closed()

    # -- limits and liveness ---------------------------------------------------

    def _cap_incoming(self) -> None:
        """
        Read what the client sends before Twisted's WebSocket parser does:
        whole text frames are parsed here (L{FrameReader}: wsproto's pure
        Python parsing cost half again a TCP message), the rest goes on to
        Twisted unchanged. A data message declared larger than the frame
        limit is cut off before anything buffers it (Twisted buffers whole
        messages, uncapped); as over TCP, the messages before it in the same
        read are handled first. Note when bytes arrive and when an incomplete
        message began (the idle and frame timeouts). The channel hands
        reads to the WebSocket parser through its C{dataReceived}, which it
        replaced during the upgrade.
        """
        channel = self._request.channel
        deliver: Callable[[bytes], None] = channel.dataReceived
        clock = self._clock
        metrics = self._service.metrics

        def text(message: str) -> bool:
            self._frame_received(message)
            return not self._closing

        def raw(data: bytes) -> bool:
            deliver(data)
            return not self._closing

        reader = FrameReader(self._max_frame, text, raw)

        def counted(data: bytes) -> None:
            if self._closing:
                return
            self._last_seen = now = clock.seconds()
            metrics.bytes_received += len(data)
            ended = reader.ended
            if not reader.feed(data):
                self._too_large()
                return
            if not reader.partial:
                self._frame_started = inf
            elif reader.ended != ended or self._frame_started == inf:
                self._frame_started = now  # a new message began in this chunk

        channel.dataReceived = counted  # type: ignore[method-assign]

    def _ping(self) -> None:
        """Called every ping interval: a peer that did not answer the last ping is dead."""
        if self._closing:
            return
        if not self._ponged:
            self.log.info("{player} did not answer a ping, closing", player=self._who())
            self._abort()
            return
        self._ponged = False
        self._ws.ping(b"gf")

    # -- BufferedLink ----------------------------------------------------------

    def _frame_parts(self, messages: list[bytes]) -> list[bytes]:
        parts: list[bytes] = []
        for message in messages:
            parts += (text_frame_header(len(message)), message)
        return parts

    def _disconnect(self, abort: bool) -> None:
        if abort:
            self._tcp.abortConnection()  # type: ignore[attr-defined]
        else:
            self._ws.loseConnection(1000)  # a close frame, then _OwnedWrites closes


class WebSocketGameFactory(LinkFactory):
    """
    Makes a L{WebSocketLink} for each WebSocket connection into the
    RoomService, refusing browsers from origins not allowed.

    @param allowed_origins: the C{Origin} headers accepted; empty: any.
    @param limits: as for L{GameFactory}; C{gate}: share the TCP factory's
        so that C{max_connections} counts both.
    """

    def __init__(
        self,
        service: RoomService,
        clock: IReactorTime,
        max_frame: int = DEFAULT_MAX_FRAME,
        max_pending: int = DEFAULT_MAX_PENDING,
        allowed_origins: Iterable[str] = (),
        ping_interval: float = DEFAULT_PING_INTERVAL,
        flush_interval: float | None = None,
        limits: Limits = Limits(),
        gate: ConnectionGate | None = None,
        max_pending_messages: int = DEFAULT_MAX_PENDING_MESSAGES,
    ) -> None:
        super().__init__(
            service,
            clock,
            max_frame,
            max_pending,
            flush_interval,
            limits=limits,
            gate=gate,
            max_pending_messages=max_pending_messages,
        )
        self.allowed_origins = frozenset(o.rstrip("/") for o in allowed_origins)
        self._pinger = LoopingCall(self._ping_all)
        self._pinger.clock = clock
        self._ping_interval = ping_interval

    def start(self) -> None:
        """
        Start pinging connections and sweeping them for timeouts (the web
        service does this when it starts).
        """
        if self._ping_interval and not self._pinger.running:
            self._pinger.start(self._ping_interval, now=False)
        self.start_sweeping()

    def stop(self) -> None:
        if self._pinger.running:
            self._pinger.stop()
        self.stop_sweeping()

    def _ping_all(self) -> None:
        for link in list(self.links):
            try:
                cast(WebSocketLink, link)._ping()
            except Exception:
                # One connection's trouble must not stop the pings to the others.
                self.log.failure("pinging {player} failed", player=link._who())

    def origin_allowed(self, request: Request) -> bool:
        if not self.allowed_origins:
            return True
        origin = request.getHeader("origin")
        # Non-browser clients send no Origin; browsers always do.
        return origin is None or origin.rstrip("/") in self.allowed_origins

    def buildProtocol(self, request: Request) -> WebSocketLink:
        return WebSocketLink(self, request)


class GameWebSocketResource(Resource):
    """The C{/ws} resource: the Origin check, then Twisted's WebSocket upgrade."""

    isLeaf = True

    def __init__(self, factory: WebSocketGameFactory) -> None:
        super().__init__()
        self.factory = factory
        self._upgrade = WebSocketResource(factory)

    def render_GET(self, request: Request) -> Any:
        if not self.factory.origin_allowed(request):
            request.setResponseCode(403)
            request.setHeader(b"content-type", b"text/plain")
            return b"origin not allowed\n"
        version = request.getHeader(b"sec-websocket-version")
        if version is not None and version.strip() != b"13":
            # RFC 6455 4.4: name the version this server speaks.
            request.setResponseCode(426)
            request.setHeader(b"sec-websocket-version", b"13")
            request.setHeader(b"content-type", b"text/plain")
            return b"WebSocket version 13 only\n"
        return self._upgrade.render_GET(request)


class _OwnedWrites:
    """
    The TCP transport as Twisted's WebSocket code sees it after the upgrade:
    writes go through the link's write path; closing first lets go of the
    writer (a registered pull producer would keep the connection open).
    """

    def __init__(self, transport: ITransport, link: WebSocketLink) -> None:
        self._transport = transport
        self._link = link

    def write(self, data: bytes) -> None:
        self._link._write_raw(data)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self._link._write_raw(b"".join(data))

    def loseConnection(self) -> None:
        # After a close frame no data frame may follow (RFC 6455 5.5.1),
        # whoever began the close: the client, a protocol error, or us.
        self._link._close_written()
        writer = self._link._writer
        if writer is not None:
            writer.detach()
        self._transport.loseConnection()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
