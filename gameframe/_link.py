"""The session half every transport shares: limits, decode and route frames, buffer and frame output, backpressure."""

from __future__ import annotations

from math import inf
from typing import Any, Mapping

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from gameframe._bucket import TokenBucket
from gameframe._limits import RATE_ERROR_INTERVAL, ConnectionGate, Limits
from gameframe._timers import PerTurn
from gameframe._sendpath import (
    DEFAULT_MAX_PENDING_MESSAGES,
    FlushScheduler,
    SendBuffer,
    SocketWriter,
    TransportWriter,
)
from gameframe.codec import GameError, decode, encode
from gameframe.interfaces import IPlayerLink
from gameframe.player import Player
from gameframe.service import RoomService
from gameframe.vocabulary import (
    BAD_UTF8,
    FLOODING,
    FRAME_TIMEOUT,
    FRAME_TOO_LARGE,
    IDLE_TIMEOUT,
    RATE_LIMITED,
    SLOW_CLIENT,
    TOO_MANY_CONNECTIONS,
    disconnect_message,
    error_message,
)

DEFAULT_MAX_FRAME = 64 * 1024
DEFAULT_MAX_PENDING = 4 * 1024 * 1024
# Seconds a closing connection waits for the client to close its side.
LINGER = 5.0
# At most one log line per this many seconds about refused connections.
_REFUSAL_LOG_INTERVAL = 10.0

__all__ = [
    "DEFAULT_MAX_FRAME",
    "DEFAULT_MAX_PENDING",
    "DEFAULT_MAX_PENDING_MESSAGES",
    "LINGER",
    "BufferedLink",
    "LinkFactory",
]


# The shortest pause in reading from a client over its rate (seconds).
MIN_THROTTLE = 0.01
# Expired connections closed in one reactor turn, at most.
EXPIRE_PER_TURN = 8
# Slow clients' connections dropped in one reactor turn, at most.
ABORT_PER_TURN = 2

class LinkFactory:
    """
    What every connection of one listening endpoint shares: the rooms, the
    limits, the connection gate, the flushes (at the end of the reactor
    turn while idle, batched within a few milliseconds when busy: see
    L{FlushScheduler}; or every C{flush_interval} seconds, 0 for every turn)
    and one sweep over its connections for timeouts.

    @param gate: counts connections against C{limits.max_connections} and
        C{limits.max_per_address}; share one between a server's endpoints
        (L{None}: a gate of this endpoint's own).
    @param max_pending_messages: messages that may wait for one client
        (besides C{max_pending} bytes) before it is dropped as a slow client.
    """

    log = Logger()

    def __init__(
        self,
        service: RoomService,
        clock: IReactorTime,
        max_frame: int = DEFAULT_MAX_FRAME,
        max_pending: int = DEFAULT_MAX_PENDING,
        flush_interval: float | None = None,
        limits: Limits = Limits(),
        gate: ConnectionGate | None = None,
        max_pending_messages: int = DEFAULT_MAX_PENDING_MESSAGES,
    ) -> None:
        self.service = service
        self.max_frame = max_frame
        self.max_pending = max_pending
        self.max_pending_messages = max_pending_messages
        self.limits = limits
        self.gate = ConnectionGate(limits) if gate is None else gate
        self.scheduler = FlushScheduler(clock, flush_interval)
        self.links: set[BufferedLink] = set()
        self._sweeper = LoopingCall(self._sweep)
        self._sweeper.clock = clock
        self._refusals_logged = -inf
        self._refusals_unlogged = 0
        # Timeouts and slow-client drops come in bursts: a few a reactor turn.
        self._expiring = PerTurn(clock, EXPIRE_PER_TURN, self._time_out)
        self._aborting = PerTurn(clock, ABORT_PER_TURN, self._drop_slow)
        service.metrics.factories.add(self)

    def start_sweeping(self) -> None:
        """Check the connections for timeouts periodically (until L{stop_sweeping})."""
        interval = self.limits.sweep_interval()
        if interval and not self._sweeper.running:
            self._sweeper.start(interval, now=False)

    def stop_sweeping(self) -> None:
        if self._sweeper.running:
            self._sweeper.stop()

    def _sweep(self) -> None:
        """
        Find the connections past a timeout: one pass over the open
        connections comparing timestamps, instead of a timer per connection
        rescheduled on every message. They are closed a few a turn.
        """
        now = self.scheduler.clock.seconds()
        for link in self.links:
            if not link._closing and self._past_timeout(link, now) is not None:
                self._expiring.add(link)

    def _past_timeout(self, link: BufferedLink, now: float) -> tuple[str, str] | None:
        """The code and reason of the timeout a connection is past, if any."""
        limits = self.limits
        if limits.frame_timeout > 0 and link._frame_started < now - limits.frame_timeout:
            return (
                FRAME_TIMEOUT,
                f"a message must arrive within {limits.frame_timeout:g} s of its first byte",
            )
        if limits.idle_timeout > 0 and link._last_seen < now - limits.idle_timeout:
            return IDLE_TIMEOUT, f"nothing received for {limits.idle_timeout:g} s"
        return None

    def _time_out(self, link: BufferedLink) -> None:
        """Close one connection past a timeout (if it still is: its turn may come later)."""
        if link not in self.links or link._closing:
            return  # gone, or closing, meanwhile
        why = self._past_timeout(link, self.scheduler.clock.seconds())
        if why is not None:
            link._expire(*why)

    def _drop_slow(self, link: BufferedLink) -> None:
        """
        Drop a slow client's connection. Closing a socket with megabytes
        unsent costs the kernel most of a millisecond; two hundred clients
        that stopped reading overflow in the same broadcast, and dropping
        them all at once would stall everyone else for a tenth of a second.
        """
        if link in self.links:
            link._abort()

    def _refused(self, link: BufferedLink) -> None:
        """Log refused connections: the first, then at most one line per interval."""
        self._refusals_unlogged += 1
        now = self.scheduler.clock.seconds()
        if now - self._refusals_logged >= _REFUSAL_LOG_INTERVAL:
            self.log.warn(
                "refused {count} connection(s) ({code}), the last from {address};"
                " {open} open",
                count=self._refusals_unlogged,
                code=TOO_MANY_CONNECTIONS,
                address=link._address,
                open=self.gate.open,
            )
            self._refusals_logged = now
            self._refusals_unlogged = 0


@implementer(IPlayerLink)
class BufferedLink:
    """
    One connection's player session, whatever the transport.

    A transport subclass calls L{_opened} with its writer (a
    L{TransportWriter} or L{SocketWriter}) and the peer's address, sets
    C{_last_seen} (the clock's time) whenever bytes arrive and
    C{_frame_started} while a message is partly received, calls
    L{_frame_received} with each complete frame and L{_closed}; it provides
    L{_frame} (how messages are framed on the wire) and L{_disconnect}.

    Limits, in the order a frame meets them:

      - The connection gate: a connection over C{max_connections} (or
        C{max_per_address}) gets C{disconnect} C{too_many_connections} and
        is closed; no player is made for it.
      - The message rate, a token bucket of C{burst} tokens refilled at
        C{rate} per second, one token per frame, checked before decoding.
        A frame without a token is dropped and answered with an C{error}
        C{rate_limited} (at most one a second). A client I{floods} when its
        dropped frames keep coming without a pause long enough to refill its
        whole bucket (C{burst / rate} seconds without a drop); once a flood
        has lasted C{flood_grace} seconds the client gets C{disconnect}
        C{flooding} and is closed.
      - The frame timeout and idle timeout (checked by the factory's sweep):
        C{disconnect} C{frame_timeout} when a message is still incomplete
        C{frame_timeout} seconds after its first byte, C{idle_timeout} when
        no byte at all arrived for C{idle_timeout} seconds.

    Output goes through one L{SendBuffer}: all messages for this connection
    until the next flush leave in one write. While the socket is backed up
    the link is L{congested}; a client that stops reading while more than
    C{max_pending} bytes or C{max_pending_messages} messages wait for it is
    dropped at once (a slow client; nothing more can reach it).
    """

    log = Logger()
    player: Player
    # What the admin API shows as the player's transport (set by each transport).
    transport_name = "unknown"
    # The state patches' encoding the client asked for on joining (an
    # instance attribute only on the connections that asked for compact).
    encoding = "json"

    _address: str | None = None
    _admitted = False
    # Aborts a closing connection the client never closes (see _linger).
    _lingering: IDelayedCall | None = None

    def __init__(self, factory: LinkFactory) -> None:
        self._factory = factory
        # (The metrics are reached through the service, not kept here: two
        # more attributes would push a TCP connection past the 30 that
        # CPython's shared-key instance dicts hold, and every attribute
        # read on the hot path would get slower.)
        self._service = factory.service
        self._scheduler = factory.scheduler
        self._clock = factory.scheduler.clock
        self._max_frame = factory.max_frame
        self._max_pending = factory.max_pending
        self._max_messages = factory.max_pending_messages
        self._closing = False
        self._buffered = 0  # bytes appended since the last flush
        self._out = SendBuffer(factory.scheduler, self._flush)
        self._writer: TransportWriter | SocketWriter | None = None
        limits = factory.limits
        now = self._clock.seconds()
        # The time of the latest bytes received (the time frames are counted at).
        self._last_seen = now
        # The time the first byte of an incomplete message arrived; inf: none.
        self._frame_started = inf
        # The token bucket (None: no rate limit).
        self._rate = limits.rate if limits.rate > 0 else 0.0
        self._bucket = TokenBucket(self._rate, limits.burst, now) if self._rate else None
        # Reading is paused while a flooding client has no token (see _throttle).
        self._resume: IDelayedCall | None = None
        # Flood detection: the current run of dropped frames.
        self._refill = self._bucket.burst / self._rate if self._bucket else 0.0
        self._flood_grace = limits.flood_grace
        self._flood_since = -inf
        self._last_drop = -inf
        self._rate_error_at = -inf

    @property
    def address(self) -> str | None:
        """The peer's IP address (what C{--max-per-address} counts), if it has one."""
        return self._address

    # -- for transports ------------------------------------------------------

    def _opened(self, writer: TransportWriter | SocketWriter, address: str | None) -> None:
        """The connection is ready for messages: admit it or refuse it."""
        factory = self._factory
        self._writer = writer
        self._address = address
        factory.links.add(self)
        if not factory.gate.admit(address):
            factory._refused(self)
            self.close(TOO_MANY_CONNECTIONS, "the server has too many connections, try again later")
            return
        self._admitted = True
        self._service.connect(self)

    def _frame_received(self, frame: bytes | str) -> None:
        if not self._counted():
            return
        if not frame.strip():
            return  # a blank line or empty message: ignored, but it counted
        try:
            message = decode(frame)
        except GameError as error:
            if error.code == BAD_UTF8:
                self._fatal(error.code, error.message)
            else:
                # In order with the replies to this connection's earlier requests.
                self._service.receive(self.player, error)
            return
        try:
            self._service.metrics.received[message["action"]] += 1
        except KeyError:
            self._service.metrics.first_received(message["action"])
        self._service.receive(self.player, message)

    def _counted(self) -> bool:
        """One token for a frame received at C{_last_seen}; False: it is dropped."""
        bucket = self._bucket
        if bucket is None or bucket.take(self._last_seen):
            return True
        self._over_rate(self._last_seen)
        return False

    def _over_rate(self, now: float) -> None:
        """A frame was dropped: say so (once a second), or end a flood."""
        self._service.metrics.rate_limited += 1
        if now - self._last_drop > self._refill:
            self._flood_since = now  # a new run of drops
        self._last_drop = now
        if now - self._flood_since >= self._flood_grace:
            self.log.info(
                "{player} kept sending over {rate} messages/s for {grace} s ({code}), closing",
                player=self._who(),
                rate=self._rate,
                grace=self._flood_grace,
                code=FLOODING,
            )
            self.close(FLOODING, f"over {self._rate:g} messages per second for too long")
            return
        self._throttle()
        if now - self._rate_error_at >= RATE_ERROR_INTERVAL:
            self._rate_error_at = now
            self._service.metrics.error(RATE_LIMITED)
            self.send(
                error_message(
                    RATE_LIMITED,
                    f"more than {self._rate:g} messages per second: messages dropped",
                )
            )

    @property
    def throttled(self) -> bool:
        """Whether reading is paused because the client is over its rate."""
        return self._resume is not None

    def _throttle(self) -> None:
        """
        Stop reading until the next token is due: the kernel's buffers fill
        and TCP slows a flooding client down, instead of the server reading,
        splitting and dropping everything it sends. (The transport calls
        L{_frame_received} for what it already read; that is dropped.)
        """
        transport = self._reading_transport()
        if self._resume is not None or transport is None or self._bucket is None:
            return
        transport.pauseProducing()
        self._resume = self._clock.callLater(
            max(self._bucket.wait(), MIN_THROTTLE), self._unthrottle
        )

    def _unthrottle(self) -> None:
        """Read again (its next token is due, or it is closing and must see the client's close)."""
        resume, self._resume = self._resume, None
        if resume is None:
            return
        if resume.active():
            resume.cancel()
        transport = self._reading_transport()
        if transport is not None:
            transport.resumeProducing()  # while closing, what it reads is dropped

    def _reading_transport(self) -> IPushProducer | None:
        """The transport whose reading L{_throttle} pauses."""
        raise NotImplementedError

    def _too_large(self) -> None:
        self._fatal(FRAME_TOO_LARGE, f"a message may be at most {self._max_frame} bytes")

    def _fatal(self, code: str, text: str) -> None:
        """Bad input we cannot read past: say why, then close."""
        self.log.info("{player} sent bad input ({code}), closing", player=self._who(), code=code)
        if not self._closing:
            self._service.metrics.error(code)
        self._close_with(error_message(code, text))

    def _expire(self, code: str, text: str) -> None:
        """A timeout ran out (the factory's sweep): say which, then close."""
        self.log.info("{player} timed out ({code}), closing", player=self._who(), code=code)
        self.close(code, text)

    def _closed(self) -> None:
        if self._resume is not None:
            if self._resume.active():
                self._resume.cancel()
            self._resume = None
        self._closing = True
        if self._lingering is not None:
            if self._lingering.active():
                self._lingering.cancel()
            self._lingering = None
        self._out.discard()
        factory = self._factory
        factory.links.discard(self)
        if self._admitted:
            self._admitted = False
            factory.gate.release(self._address)
        if getattr(self, "player", None) is not None:  # None: lost before it opened
            self._service.disconnect(self.player, self)

    def _frame(self, messages: list[bytes]) -> bytes:
        """The bytes that carry these encoded messages on the wire."""
        return b"".join(self._frame_parts(messages))

    def _frame_parts(self, messages: list[bytes]) -> list[bytes]:
        """The same, as parts that share the messages' bytes (framing between them)."""
        raise NotImplementedError

    def _disconnect(self, abort: bool) -> None:
        """Close the connection (at once, dropping unsent data, if C{abort})."""
        raise NotImplementedError

    def _who(self) -> object:
        """The player, for log lines (the address before there is one)."""
        return getattr(self, "player", None) or self._address

    # -- IPlayerLink -----------------------------------------------------------

    @property
    def congested(self) -> bool:
        """
        True while this connection's socket is backed up: bytes already
        sent wait in the transport because the client has not read them
        (L{SocketWriter}), or the transport paused us (L{TransportWriter}).
        """
        writer = self._writer
        return writer is not None and writer.congested

    def send(self, message: Mapping[str, Any]) -> None:
        self.send_encoded(encode(message))

    def send_encoded(self, data: bytes) -> None:
        if self._closing:
            return
        buffered = self._buffered + len(data)
        if buffered > self._max_pending and self._buffered:
            # More output in one turn than a client may have waiting at all
            # (a flood of requests with big replies): stop here. (The bound
            # in messages applies to what waits unsent: see the writers.)
            self._out.discard()
            self._overflow()
            return
        self._buffered = buffered
        self._out.append(data)

    def close(self, code: str, message: str, retry: bool = False) -> None:
        if not self._closing:
            self._service.metrics.disconnect(code)
        if retry:
            self._close_with(disconnect_message(code, message, retry=True))
        else:
            self._close_with(disconnect_message(code, message))

    def _close_with(self, message: Mapping[str, Any]) -> None:
        if self._closing:
            return
        self._out.append(encode(message))
        self._out.flush()
        self._closing = True
        self._unthrottle()
        self._linger()
        self._disconnect(abort=False)

    def _linger(self) -> None:
        """
        Give a closing connection L{LINGER} seconds for the client to close
        its side (and read our last message), then drop it.
        """
        if self._lingering is None:
            self._lingering = self._clock.callLater(LINGER, self._abort)

    def _abort(self) -> None:
        """Drop the connection now, unsent data and all."""
        self._closing = True
        self._lingering = None
        self._out.discard()
        self._disconnect(abort=True)

    # -- output and backpressure -----------------------------------------------

    def _flush(self, messages: list[bytes]) -> None:
        self._buffered = 0
        writer = self._writer
        if writer is None:
            return
        count = len(messages)
        metrics = self._service.metrics
        metrics.messages_sent += count
        if writer.congested:
            # Nothing can be sent now: queue the messages' own bytes, shared
            # with every other recipient, instead of a framed copy of them.
            parts = self._frame_parts(messages)
            size = sum(map(len, parts))
            metrics.bytes_sent += size
            writer.write_parts(parts, size, count)
        else:
            data = self._frame(messages)
            metrics.bytes_sent += len(data)
            writer.write(data, count)

    @property
    def unsent_bytes(self) -> int:
        """Output waiting for the next flush, and bytes the client has not taken yet."""
        writer = self._writer
        return self._buffered + (writer.queued_bytes if writer is not None else 0)

    def _overflow(self) -> None:
        """The client stopped reading and too much waits for it: drop it."""
        self.log.warn(
            "{player} is a {code}: more than {limit} bytes or {count} messages"
            " waiting, disconnecting",
            player=self._who(),
            code=SLOW_CLIENT,
            limit=self._max_pending,
            count=self._max_messages,
        )
        # Stop everything for it now; close it soon (see LinkFactory._drop_slow).
        if not self._closing:
            self._service.metrics.disconnect(SLOW_CLIENT)
        self._closing = True
        self._out.discard()
        self._factory._aborting.add(self)
