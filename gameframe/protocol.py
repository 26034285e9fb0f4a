"""The TCP protocol and factory: JSON Lines framing, limits, one player session per connection."""

from __future__ import annotations

from typing import Any, Mapping

from twisted.internet.interfaces import IAddress, IPushProducer, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
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
class GameProtocol(Protocol):
    """
    One TCP connection: one UTF-8 JSON object per line, in both directions.

    Lines longer than the frame limit and bytes that are not UTF-8 end the
    connection with an C{error}; every other bad input gets an C{error}
    and the connection goes on. A client that stops reading while more
    than C{max_pending} bytes wait for it is disconnected.
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
        self._inbox = b""
        self._closing = False
        self._paused = False
        self._pending = 0

    # -- connection lifecycle ------------------------------------------------

    def connectionMade(self) -> None:
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        self._out = SendBuffer(self._scheduler, self._write_lines)
        self.transport.registerProducer(self, True)
        self.player = self._service.connect(self)

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        self._closing = True
        self._out.discard()
        self._service.disconnect(self.player, self)

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
                self._frame(line)
                if self._closing:
                    return
        self._inbox = buffer[start:]
        if len(self._inbox) > limit:
            self._too_large()

    def _frame(self, line: bytes) -> None:
        try:
            message = decode(line)
        except GameError as error:
            if error.code == BAD_UTF8:
                self._fatal(error.code, error.message)
            else:
                self.send(error_message(error.code, error.message, error.request_id))
            return
        self._service.receive(self.player, message)

    def _too_large(self) -> None:
        self._fatal(
            FRAME_TOO_LARGE, f"a message may be at most {self._max_frame} bytes"
        )

    def _fatal(self, code: str, text: str) -> None:
        """Bad input we cannot read past: say why, then close."""
        self.log.info("{peer} sent bad input ({code}), closing", peer=self.peer, code=code)
        self._close_with(error_message(code, text))

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
        self._inbox = b""
        self.transport.loseConnection()

    # -- output and backpressure -----------------------------------------------

    def _write_lines(self, messages: list[bytes]) -> None:
        messages.append(b"")
        data = b"\n".join(messages)
        if self._paused:
            self._pending += len(data)
            if self._pending > self._max_pending:
                self.log.warn(
                    "{peer} stopped reading ({pending} bytes waiting), disconnecting",
                    peer=self.peer,
                    pending=self._pending,
                )
                self._closing = True
                self.transport.abortConnection()
                return
        self.transport.write(data)

    def pauseProducing(self) -> None:
        """The transport's send buffer is full: the client is not reading."""
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._pending = 0

    def stopProducing(self) -> None:
        pass

    @property
    def peer(self) -> IAddress | None:
        return self.transport.getPeer() if self.transport is not None else None


class GameFactory(Factory):
    """
    Makes a L{GameProtocol} for each TCP connection, all sharing one
    L{RoomService} and one flush per reactor turn.
    """

    def __init__(
        self,
        service: RoomService,
        clock: IReactorTime,
        max_frame: int = DEFAULT_MAX_FRAME,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        self.service = service
        self.max_frame = max_frame
        self.max_pending = max_pending
        self.scheduler = FlushScheduler(clock)

    def buildProtocol(self, addr: IAddress) -> GameProtocol:
        protocol = GameProtocol(
            self.service, self.scheduler, self.max_frame, self.max_pending
        )
        protocol.factory = self
        return protocol
