"""The one write path for outgoing bytes: per-connection buffers, one flush per turn (or tick), direct socket sends."""

from __future__ import annotations

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


# Adaptive flushing (no interval given): how long a busy server may hold a
# player's messages to send more of them at once, in seconds.
FLUSH_BUDGET = 0.004
# The share of the time between two flushes spent sending that makes the
# server busy (from then on flushes are FLUSH_BUDGET apart), and the share
# under which it is idle again (flushes at the end of every turn).
BUSY_SHARE = 0.25
IDLE_SHARE = 0.05


class FlushScheduler:
    """
    Flushes every buffer that got data, so that all the messages one
    connection gets meanwhile leave in one write: a broadcast to fifty
    players, a reply and a patch.

    With an C{interval} (C{--flush-interval}), once per interval (0: at the
    end of every reactor turn). Without one it adapts to the load: while
    the server is idle, at the end of the reactor turn (no added latency);
    once sending takes more than L{BUSY_SHARE} of the time between flushes,
    at most once per C{budget} seconds (fewer, larger sends, at most
    C{budget} more latency), until sending takes under L{IDLE_SHARE} of it.
    The time a flush takes is read on the clock, so on a C{task.Clock}
    (where nothing takes time) the scheduler stays idle.
    """

    def __init__(
        self,
        clock: IReactorTime,
        interval: float | None = None,
        budget: float = FLUSH_BUDGET,
    ) -> None:
        self.clock = clock
        self._interval = interval
        self._budget = budget
        self._dirty: list[SendBuffer] = []
        self._call: IDelayedCall | None = None
        self._last = -budget  # when the last flush ended
        self.busy = False

    def schedule(self, buffer: SendBuffer) -> None:
        self._dirty.append(buffer)
        if self._call is None:
            delay = self._interval
            if delay is None:
                delay = max(0.0, self._last + self._budget - self.clock.seconds()) if self.busy else 0.0
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
        started = self.clock.seconds()
        for buffer in dirty:
            buffer.flush()
        self._last, since = self.clock.seconds(), self._last
        took = self._last - started
        if self.busy:
            self.busy = took > IDLE_SHARE * (self._last - since)
        else:
            self.busy = took > BUSY_SHARE * (self._last - since)


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
