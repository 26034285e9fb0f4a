"""The session half every transport shares: decode and route frames, buffer and frame output, backpressure."""

from __future__ import annotations

from typing import Any, Mapping

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from gameframe._sendpath import FlushScheduler, SendBuffer
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


@implementer(IPlayerLink, IPushProducer)
class BufferedLink:
    """
    One connection's player session, whatever the transport.

    A transport subclass calls L{_opened}, L{_frame_received} and
    L{_closed}, and provides L{_frame} (how messages are framed on the
    wire), L{_write} and L{_disconnect}. Output goes through one
    L{SendBuffer}: all messages for this connection in one reactor turn
    leave in one write. The transport's producer calls tell us when the
    client stops reading; past C{max_pending} bytes waiting, it is dropped.
    """

    log = Logger()
    player: Player

    def __init__(
        self,
        service: RoomService,
        scheduler: FlushScheduler,
        max_frame: int = DEFAULT_MAX_FRAME,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        self._service = service
        self._scheduler = scheduler
        self._max_frame = max_frame
        self._max_pending = max_pending
        self._closing = False
        self._paused = False
        self._pending = 0
        self._out = SendBuffer(scheduler, self._flush)

    # -- for transports ------------------------------------------------------

    def _opened(self) -> None:
        self._service.connect(self)

    def _frame_received(self, frame: bytes | str) -> None:
        try:
            message = decode(frame)
        except GameError as error:
            if error.code == BAD_UTF8:
                self._fatal(error.code, error.message)
            else:
                self.send(error_message(error.code, error.message, error.request_id))
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

    def _write(self, data: bytes) -> None:
        raise NotImplementedError

    def _disconnect(self, abort: bool) -> None:
        """Close the connection (at once, dropping unsent data, if C{abort})."""
        raise NotImplementedError

    # -- IPlayerLink -----------------------------------------------------------

    def send(self, message: Mapping[str, Any]) -> None:
        self.send_encoded(encode(message))

    def send_encoded(self, data: bytes) -> None:
        if not self._closing:
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
        data = self._frame(messages)
        if self._paused:
            self._pending += len(data)
            if self._pending > self._max_pending:
                self.log.warn(
                    "{player} stopped reading ({pending} bytes waiting), disconnecting",
                    player=self.player,
                    pending=self._pending,
                )
                self._closing = True
                self._disconnect(abort=True)
                return
        self._write(data)

    def pauseProducing(self) -> None:
        """The transport's send buffer is full: the client is not reading."""
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._pending = 0

    def stopProducing(self) -> None:
        pass
