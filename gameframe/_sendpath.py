"""The one write path for outgoing bytes: per-connection buffers flushed once per reactor turn."""

from __future__ import annotations

from typing import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime


class FlushScheduler:
    """
    Flushes every buffer that got data, once, on the next reactor turn.

    All messages one batch of input produces (a broadcast to fifty players,
    a reply and a patch) leave in one write per connection.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._dirty: list[SendBuffer] = []
        self._call: IDelayedCall | None = None

    def schedule(self, buffer: SendBuffer) -> None:
        self._dirty.append(buffer)
        if self._call is None:
            self._call = self._clock.callLater(0, self.flush)

    def flush(self) -> None:
        """Flush every pending buffer now."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        dirty, self._dirty = self._dirty, []
        for buffer in dirty:
            buffer.flush()


class SendBuffer:
    """
    One connection's outgoing messages until the next flush.

    @param write: writes the framed messages of one flush to the transport.
    """

    def __init__(
        self, scheduler: FlushScheduler, write: Callable[[list[bytes]], None]
    ) -> None:
        self._scheduler = scheduler
        self._write = write
        self._messages: list[bytes] = []

    def append(self, data: bytes) -> None:
        if not self._messages:
            self._scheduler.schedule(self)
        self._messages.append(data)

    def flush(self) -> None:
        messages, self._messages = self._messages, []
        if messages:
            self._write(messages)

    def discard(self) -> None:
        self._messages = []
