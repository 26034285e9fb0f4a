"""The session half every transport shares: decode and route frames, buffer and frame output, backpressure."""

from __future__ import annotations

from typing import Any, Mapping

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from gameframe._sendpath import FlushScheduler, SendBuffer, SocketWriter, TransportWriter
from gameframe.codec import (
    BAD_UTF8,
    FRAME_TOO_LARGE,
    GameError,
    decode,
    encode,
    error_message,
)
from gameframe.interfaces import IPlayerLink
from gameframe.player import Player
from gameframe.service import RoomService

DEFAULT_MAX_FRAME = 64 * 1024
DEFAULT_MAX_PENDING = 4 * 1024 * 1024


class LinkFactory:
    """
    What every connection of one listening endpoint shares: the rooms, the
    limits, and one flush per reactor turn (or every C{flush_interval}
    seconds: fewer sends, more latency).
    """

    def __init__(
        self,
        service: RoomService,
        clock: IReactorTime,
        max_frame: int = DEFAULT_MAX_FRAME,
        max_pending: int = DEFAULT_MAX_PENDING,
        flush_interval: float = 0.0,
    ) -> None:
        self.service = service
        self.max_frame = max_frame
        self.max_pending = max_pending
        self.scheduler = FlushScheduler(clock, flush_interval)


@implementer(IPlayerLink)
class BufferedLink:
    """
    One connection's player session, whatever the transport.

    A transport subclass calls L{_opened} with its writer (a
    L{TransportWriter} or L{SocketWriter}), then L{_frame_received} and
    L{_closed}, and provides L{_frame} (how messages are framed on the
    wire) and L{_disconnect}. Output goes through one L{SendBuffer}: all
    messages for this connection until the next flush leave in one write.
    A client that stops reading while more than C{max_pending} bytes wait
    for it is dropped.
    """

    log = Logger()
    player: Player

    def __init__(self, factory: LinkFactory) -> None:
        self._service = factory.service
        self._scheduler = factory.scheduler
        self._max_frame = factory.max_frame
        self._max_pending = factory.max_pending
        self._closing = False
        self._buffered = 0  # bytes appended since the last flush
        self._out = SendBuffer(factory.scheduler, self._flush)
        self._writer: TransportWriter | SocketWriter | None = None

    # -- for transports ------------------------------------------------------

    def _opened(self, writer: TransportWriter | SocketWriter) -> None:
        self._writer = writer
        self._service.connect(self)

    def _frame_received(self, frame: bytes | str) -> None:
        try:
            message = decode(frame)
        except GameError as error:
            if error.code == BAD_UTF8:
                self._fatal(error.code, error.message)
            else:
                # In order with the replies to this connection's earlier requests.
                self._service.receive(self.player, error)
            return
        self._service.receive(self.player, message)

    def _too_large(self) -> None:
        self._fatal(FRAME_TOO_LARGE, f"a message may be at most {self._max_frame} bytes")

    def _fatal(self, code: str, text: str) -> None:
        """Bad input we cannot read past: say why, then close."""
        self.log.info("{player} sent bad input ({code}), closing", player=self.player, code=code)
        self._close_with(error_message(code, text))

    def _closed(self) -> None:
        self._closing = True
        self._out.discard()
        if getattr(self, "player", None) is not None:  # None: lost before it opened
            self._service.disconnect(self.player, self)

    def _frame(self, messages: list[bytes]) -> bytes:
        """The bytes that carry these encoded messages on the wire."""
        raise NotImplementedError

    def _disconnect(self, abort: bool) -> None:
        """Close the connection (at once, dropping unsent data, if C{abort})."""
        raise NotImplementedError

    # -- IPlayerLink -----------------------------------------------------------

    def send(self, message: Mapping[str, Any]) -> None:
        self.send_encoded(encode(message))

    def send_encoded(self, data: bytes) -> None:
        if self._closing:
            return
        if self._buffered and self._buffered + len(data) > self._max_pending:
            # More output in one turn than a client may have waiting at all
            # (a flood of requests with big replies): stop here.
            self._out.discard()
            self._overflow()
            return
        self._buffered += len(data)
        self._out.append(data)

    def close(self, code: str, message: str) -> None:
        self._close_with({"action": "disconnect", "code": code, "message": message})

    def _close_with(self, message: Mapping[str, Any]) -> None:
        if self._closing:
            return
        self._out.append(encode(message))
        self._out.flush()
        self._closing = True
        self._disconnect(abort=False)

    # -- output and backpressure -----------------------------------------------

    def _flush(self, messages: list[bytes]) -> None:
        self._buffered = 0
        if self._writer is not None:
            self._writer.write(self._frame(messages))

    def _overflow(self) -> None:
        """The client stopped reading and too much waits for it: drop it."""
        self.log.warn(
            "{player} stopped reading ({limit} bytes waiting), disconnecting",
            player=self.player,
            limit=self._max_pending,
        )
        self._closing = True
        self._disconnect(abort=True)