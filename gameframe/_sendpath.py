"""The one write path for outgoing bytes: per-connection buffers, one flush per turn (or tick), direct socket sends."""

from __future__ import annotations

from math import inf
from typing import Any, Callable

from twisted.internet import tcp
from twisted.internet.interfaces import (
    IConsumer,
    IDelayedCall,
    IPullProducer,
    IPushProducer,
    IReactorTime,
)
from zope.interface import implementer

# Messages that may wait for one client at most (beside the byte bound,
# max_pending): many tiny messages cost more memory than their bytes say.
DEFAULT_MAX_PENDING_MESSAGES = 10000


# Adaptive flushing (no interval given), once batching pays: how long a
# server may hold a player's messages to send more of them at once, in
# seconds (flushes are at most this far apart).
FLUSH_WINDOW = 0.004
# Batching is switched on when it would save at least BATCH_ON sends a
# second (messages for players whose last send is under FLUSH_WINDOW old),
# and off when it saves under BATCH_OFF a second; decided every
# MEASURE_PERIOD seconds from what was counted meanwhile.
BATCH_ON = 2000.0
BATCH_OFF = 1000.0
MEASURE_PERIOD = 0.25


class FlushScheduler:
    """
    Flushes every buffer that got data, so that all the messages one
    connection gets meanwhile leave in one write: a broadcast to fifty
    players, a reply and a patch.

    With an C{interval} (C{--flush-interval}), once per interval (0: at the
    end of every reactor turn). Without one it adapts to the traffic: while
    messages for the same player come further apart than C{window}, at the
    end of the reactor turn (no added latency); once batching would save at
    least L{BATCH_ON} sends a second (that many messages find their
    player's last send under C{window} old), at most once per C{window}
    (fewer, larger sends, at most C{window} more latency), until batching
    saves under L{BATCH_OFF} sends a second. Only counts decide, taken over
    L{MEASURE_PERIOD} seconds of the clock, not how long sending takes, so
    the same traffic batches the same on a fast or a loaded machine, and a
    C{task.Clock} drives it exactly.
    """

    def __init__(
        self,
        clock: IReactorTime,
        interval: float | None = None,
        window: float = FLUSH_WINDOW,
    ) -> None:
        self.clock = clock
        self._interval = interval
        self._window = window
        self._dirty: list[SendBuffer] = []
        self._call: IDelayedCall | None = None
        self._last = -window  # when the last flush ended
        self.busy = False
        # Sends batching saved (busy) or would have saved (idle) since _since.
        self._saved = 0
        self._since = clock.seconds()

    def schedule(self, buffer: SendBuffer) -> None:
        self._dirty.append(buffer)
        if self._interval is not None:
            if self._call is None:
                self._call = self.clock.callLater(self._interval, self.flush)
            return
        if self._call is None:
            if self.busy:
                delay = max(0.0, self._last + self._window - self.clock.seconds())
            else:
                delay = 0
            self._call = self.clock.callLater(delay, self.flush)

    def flush(self) -> None:
        """Flush every pending buffer now."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        dirty, self._dirty = self._dirty, []
        if self._interval is not None:
            for buffer in dirty:
                buffer.flush()
            return
        now = self.clock.seconds()
        busy = self.busy
        window = self._window
        saved = 0
        for buffer in dirty:
            if not busy and now - buffer.flushed_at < window:
                saved += 1  # batching would have sent it with the last one
            sent = buffer.flush()
            if sent:
                if busy:
                    saved += sent - 1
                buffer.flushed_at = now
        self._saved += saved
        self._last = self.clock.seconds()
        self._measure(now)

    def _measure(self, now: float) -> None:
        """Every MEASURE_PERIOD: batch from now on or not, from what batching saved meanwhile."""
        elapsed = now - self._since
        if elapsed < MEASURE_PERIOD:
            if elapsed < 0:  # the wall clock was set back: start a new period
                self._saved = 0
                self._since = now
            return
        rate = self._saved / elapsed
        self.busy = rate >= (BATCH_OFF if self.busy else BATCH_ON)
        self._saved = 0
        self._since = now


class SendBuffer:
    """
    One connection's outgoing messages until the next flush.

    @param write: writes the messages of one flush (framed by the caller).
    """

    def __init__(
        self, scheduler: FlushScheduler, write: Callable[[list[bytes]], None]
    ) -> None:
        self._scheduler = scheduler
        self._write = write
        self._messages: list[bytes] = []
        # When the scheduler last flushed this buffer (see FlushScheduler).
        self.flushed_at = -inf

    def append(self, data: bytes) -> None:
        if not self._messages:
            self._scheduler.schedule(self)
        self._messages.append(data)

    def flush(self) -> int:
        """Write what waits; how many messages that was."""
        messages, self._messages = self._messages, []
        if messages:
            self._write(messages)
            return len(messages)
        return 0

    def discard(self) -> None:
        self._messages = []


@implementer(IPushProducer)
class TransportWriter:
    """
    Writes through the transport, which sends on a later reactor turn.

    Registered as the transport's streaming producer: while the transport
    says its buffer is full (the client is not reading: L{congested}),
    bytes and messages written are counted, and past C{max_pending} bytes
    or C{max_messages} messages C{overflow} is called instead.
    """

    def __init__(
        self,
        consumer: IConsumer,
        write: Callable[[bytes], None],
        max_pending: int,
        overflow: Callable[[], None],
        max_messages: int = DEFAULT_MAX_PENDING_MESSAGES,
    ) -> None:
        self._consumer: IConsumer | None = consumer
        self._write = write
        self._max_pending = max_pending
        self._max_messages = max_messages
        self._overflow = overflow
        self._paused = False
        self._pending = 0
        self._pending_messages = 0
        consumer.registerProducer(self, True)

    @property
    def congested(self) -> bool:
        """The transport's buffer is full: the client is not reading."""
        return self._paused

    @property
    def queued_bytes(self) -> int:
        """Bytes written since the transport said its buffer was full."""
        return self._pending

    def write(self, data: bytes, messages: int = 1) -> None:
        """Write the bytes of C{messages} framed messages."""
        if self._paused:
            self._pending += len(data)
            self._pending_messages += messages
            if self._pending > self._max_pending or self._pending_messages > self._max_messages:
                self._overflow()
                return
        self._write(data)

    def write_parts(self, parts: list[bytes], size: int, messages: int) -> None:
        """L{write} the concatenation of C{parts} (C{size} bytes)."""
        self.write(b"".join(parts), messages)

    def detach(self) -> None:
        """Stop being the transport's producer (before closing it); once."""
        if self._consumer is not None:
            self._consumer.unregisterProducer()
            self._consumer = None

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._pending = 0
        self._pending_messages = 0

    def stopProducing(self) -> None:
        pass


@implementer(IPullProducer)
class SocketWriter:
    """
    Sends on a plain TCP socket at once while the transport holds nothing
    of ours, saving the reactor turn (and its epoll calls) that
    C{transport.write} costs; what the socket does not take goes to the
    transport, in order, and everything after it too until it drains.

    Registered as the transport's pull producer, whose C{resumeProducing}
    the transport calls each time its buffer has drained. While bytes wait
    in the transport the writer is L{congested}; past C{max_pending} bytes
    or C{max_messages} messages queued there, C{overflow} is called.
    """

    def __init__(
        self,
        transport: tcp.Connection,
        max_pending: int,
        overflow: Callable[[], None],
        drained: bool = True,
        max_messages: int = DEFAULT_MAX_PENDING_MESSAGES,
    ) -> None:
        self._transport = transport
        self._socket = transport.getHandle()
        self._max_pending = max_pending
        self._max_messages = max_messages
        self._overflow = overflow
        self._queued = 0
        self._queued_messages = 0
        self._attached = True
        transport.registerProducer(self, False)  # calls resumeProducing at once
        if not drained:
            self._queued = 1  # the transport may hold bytes: queue behind them

    @staticmethod
    def usable(transport: Any) -> bool:
        """Only an unencrypted TCP connection can be sent on directly."""
        return isinstance(transport, tcp.Connection)

    @property
    def congested(self) -> bool:
        """Bytes of ours wait in the transport: the socket did not take them all."""
        return self._queued > 0

    @property
    def queued_bytes(self) -> int:
        """Bytes the socket did not take, waiting in the transport (at most)."""
        return self._queued

    def write(self, data: bytes, messages: int = 1) -> None:
        """Send the bytes of C{messages} framed messages."""
        if not self._queued:
            try:
                sent = self._socket.send(data)
            except OSError:
                sent = 0  # EAGAIN, or an error the transport will notice and report
            if sent == len(data):
                return
            data = data[sent:]
        self._queued += len(data)
        self._queued_messages += messages
        if self._queued > self._max_pending or self._queued_messages > self._max_messages:
            self._overflow()
            return
        self._transport.write(data)

    def write_parts(self, parts: list[bytes], size: int, messages: int) -> None:
        """
        While congested, queue C{parts} (C{size} bytes) as they are: no copy
        made for this client. A broadcast's bytes are encoded once and shared
        by every recipient's queue, so a room of clients that stop reading
        costs one copy of each message, not one per client.
        """
        if not self._queued:
            self.write(b"".join(parts), messages)
            return
        self._queued += size
        self._queued_messages += messages
        if self._queued > self._max_pending or self._queued_messages > self._max_messages:
            self._overflow()
            return
        self._transport.writeSequence(parts)

    def detach(self) -> None:
        """Stop being the transport's producer (before closing it); once."""
        if self._attached:
            self._attached = False
            self._transport.unregisterProducer()

    def resumeProducing(self) -> None:
        """The transport sent everything it held."""
        self._queued = 0
        self._queued_messages = 0

    def stopProducing(self) -> None:
        pass


def writer_for(
    transport: Any,
    max_pending: int,
    overflow: Callable[[], None],
    direct: bool = True,
    drained: bool = True,
    max_messages: int = DEFAULT_MAX_PENDING_MESSAGES,
) -> SocketWriter | TransportWriter:
    """
    The writer for a connection: direct socket sends on plain TCP (unless
    C{direct} is false), the transport's own buffering otherwise (TLS, tests).
    C{drained} false: the transport may still hold bytes written before.
    """
    if direct and SocketWriter.usable(transport):
        return SocketWriter(transport, max_pending, overflow, drained, max_messages)
    return TransportWriter(transport, transport.write, max_pending, overflow, max_messages)
