"""The TCP protocol and factory: JSON Lines framing, limits, one player session per connection."""

from __future__ import annotations

from twisted.internet.interfaces import IAddress, IDelayedCall
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from gameframe._link import DEFAULT_MAX_FRAME, DEFAULT_MAX_PENDING, BufferedLink, LinkFactory
from gameframe._sendpath import writer_for

# Seconds a closing connection waits for the client to close its side.
LINGER = 5.0

__all__ = ["DEFAULT_MAX_FRAME", "DEFAULT_MAX_PENDING", "GameFactory", "GameProtocol"]


class GameProtocol(BufferedLink, Protocol):
    """
    One TCP connection: one UTF-8 JSON object per line, in both directions.
    On a plain TCP socket, output is sent directly when the socket is idle
    (L{SocketWriter}); otherwise (TLS, tests) through the transport.

    Lines longer than the frame limit and bytes that are not UTF-8 end the
    connection with an C{error}; every other bad input gets an C{error}
    and the connection goes on. A client that stops reading while more
    than C{max_pending} bytes wait for it is disconnected.
    """

    _inbox = b""
    _linger: IDelayedCall | None = None
    _direct = True  # send on the socket directly when it can (see SocketWriter)

    # -- connection lifecycle ------------------------------------------------

    def connectionMade(self) -> None:
        transport = self.transport
        assert transport is not None
        set_no_delay = getattr(transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        self._opened(writer_for(transport, self._max_pending, self._overflow, self._direct))

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self._closed()

    # -- input -----------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        buffer = self._inbox + data if self._inbox else data
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
            if line.strip():
                self._frame_received(line)
                if self._closing:
                    return
        self._inbox = rest = buffer[start:]
        # A partial line may end with the CR of its CRLF, which is not counted.
        if len(rest) - rest.endswith(b"\r") > limit:
            self._too_large()

    # -- BufferedLink ----------------------------------------------------------

    def _frame(self, messages: list[bytes]) -> bytes:
        messages.append(b"")
        return b"\n".join(messages)

    def _disconnect(self, abort: bool) -> None:
        assert self.transport is not None
        if abort:
            self.transport.abortConnection()  # type: ignore[attr-defined]
        else:
            self._inbox = b""
            if self._writer is not None:
                self._writer.detach()  # a registered producer would keep it open
            half_close = getattr(self.transport, "loseWriteConnection", None)
            if half_close is None:
                self.transport.loseConnection()
                return
            # Close our side only and read (and drop) what the client still
            # sends until it closes too: closing with unread input would make
            # the kernel reset the connection, and the client could lose our
            # last message (the error saying why).
            half_close()
            self._linger = self._scheduler.clock.callLater(
                LINGER, self.transport.abortConnection  # type: ignore[attr-defined]
            )


class GameFactory(LinkFactory, Factory):
    """
    Makes a L{GameProtocol} for each TCP connection, all sharing one
    L{RoomService} and one flush per reactor turn (or every
    C{flush_interval} seconds: fewer sends, more latency).
    """

    def buildProtocol(self, addr: IAddress | None) -> GameProtocol:
        protocol = GameProtocol(self)
        protocol.factory = self
        return protocol
