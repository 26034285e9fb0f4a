"""The write path: one flush per turn or interval, direct socket sends with the transport as overflow."""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from gameframe._sendpath import (
    MEASURE_PERIOD,
    FlushScheduler,
    SendBuffer,
    SocketWriter,
    TransportWriter,
)


class FakeTcpTransport:
    """What SocketWriter uses of a tcp.Connection, over a real socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.written: list[bytes] = []
        self.producer: Any = None

    def getHandle(self) -> socket.socket:
        return self.sock

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        assert not streaming
        self.producer = producer
        producer.resumeProducing()

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def writeSequence(self, data: list[bytes]) -> None:
        self.written.extend(data)

    def drained(self) -> None:
        """As Twisted does once its buffer is empty: ask the pull producer for more."""
        self.written.clear()
        self.producer.resumeProducing()


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            return b"".join(chunks)
        chunks.append(chunk)


class SocketWriterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server, self.client = socket.socketpair()
        self.server.setblocking(False)
        self.client.setblocking(False)
        self.addCleanup(self.server.close)
        self.addCleanup(self.client.close)
        self.transport = FakeTcpTransport(self.server)
        self.overflows = 0
        self.writer = SocketWriter(self.transport, 64 << 20, self.overflow)  # type: ignore[arg-type]

    def overflow(self) -> None:
        self.overflows += 1

    def test_an_idle_socket_gets_the_bytes_at_once(self) -> None:
        self.writer.write(b"hello\n")
        self.assertEqual(read_all(self.client), b"hello\n")
        self.assertEqual(self.transport.written, [])

    def test_what_the_socket_cannot_take_goes_to_the_transport_in_order(self) -> None:
        big = b"x" * (8 << 20)  # more than a socket buffer holds
        self.writer.write(big)
        sent_directly = read_all(self.client)
        self.assertLess(len(sent_directly), len(big))
        self.assertEqual(b"".join(self.transport.written), big[len(sent_directly):])
        # While the transport holds bytes, later writes queue behind them.
        self.writer.write(b"after")
        self.assertEqual(self.transport.written[-1], b"after")
        self.transport.drained()
        self.writer.write(b"direct again")
        self.assertEqual(read_all(self.client), b"direct again")

    def test_parts_are_sent_joined_while_the_socket_takes_them(self) -> None:
        self.writer.write_parts([b"a", b"\n", b"b", b"\n"], 4, 2)
        self.assertEqual(read_all(self.client), b"a\nb\n")
        self.assertEqual(self.transport.written, [])

    def test_parts_queue_uncopied_while_congested(self) -> None:
        """A broadcast's bytes are shared by every stuck client's queue, not copied into it."""
        big = b"x" * (4 << 20)
        self.writer.write(big)  # more than the socket takes: the rest is queued
        self.assertTrue(self.writer.congested)
        message = b'{"action":"said","text":"' + b"y" * 6000 + b'"}'
        self.writer.write_parts([message, b"\n"], len(message) + 1, 1)
        self.assertIs(self.transport.written[-2], message)
        self.assertEqual(self.transport.written[-1], b"\n")
        self.transport.drained()
        self.assertFalse(self.writer.congested)

    def test_queued_parts_count_against_the_bounds(self) -> None:
        writer = SocketWriter(self.transport, 64 << 20, self.overflow, max_messages=3)  # type: ignore[arg-type]
        writer.write(b"x" * (4 << 20))  # one message queued behind the socket
        writer.write_parts([b"m", b"\n", b"n", b"\n"], 4, 2)  # three: the bound
        self.assertEqual(self.overflows, 0)
        writer.write_parts([b"o", b"\n"], 2, 1)  # four
        self.assertEqual(self.overflows, 1)

    def test_a_client_that_stops_reading_overflows(self) -> None:
        writer = SocketWriter(FakeTcpTransport(self.server), 1000, self.overflow)  # type: ignore[arg-type]
        writer.write(b"x" * (8 << 20))
        self.assertEqual(self.overflows, 1)

    def test_congested_while_the_transport_holds_bytes(self) -> None:
        self.assertFalse(self.writer.congested)
        self.writer.write(b"small")
        self.assertFalse(self.writer.congested)  # the socket took it all
        self.writer.write(b"x" * (8 << 20))
        self.assertTrue(self.writer.congested)
        self.writer.write(b"queued behind")
        self.assertTrue(self.writer.congested)
        read_all(self.client)
        self.transport.drained()
        self.assertFalse(self.writer.congested)

    def test_not_drained_at_start_means_congested_until_the_transport_drains(self) -> None:
        transport = FakeTcpTransport(self.server)
        writer = SocketWriter(transport, 1000, self.overflow, drained=False)  # type: ignore[arg-type]
        self.assertTrue(writer.congested)
        writer.write(b"behind the earlier bytes")
        self.assertEqual(transport.written, [b"behind the earlier bytes"])
        transport.drained()
        self.assertFalse(writer.congested)

    def test_too_many_messages_queued_overflows(self) -> None:
        writer = SocketWriter(
            self.transport, 64 << 20, self.overflow, max_messages=100  # type: ignore[arg-type]
        )
        writer.write(b"x" * (8 << 20), 1)  # the socket takes part: the rest queues
        for _ in range(99):
            writer.write(b"m", 1)
        self.assertEqual(self.overflows, 0)
        writer.write(b"m", 1)
        self.assertEqual(self.overflows, 1)

    def test_messages_count_per_write(self) -> None:
        writer = SocketWriter(
            self.transport, 64 << 20, self.overflow, max_messages=100  # type: ignore[arg-type]
        )
        writer.write(b"x" * (8 << 20), 50)
        self.assertEqual(self.overflows, 0)
        writer.write(b"batch", 51)
        self.assertEqual(self.overflows, 1)


class TransportWriterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.transport = StringTransport()
        self.overflows = 0
        self.writer = TransportWriter(
            self.transport, self.transport.write, 100, self.overflow, max_messages=5
        )

    def overflow(self) -> None:
        self.overflows += 1

    def test_congested_while_paused(self) -> None:
        self.assertFalse(self.writer.congested)
        self.writer.pauseProducing()
        self.assertTrue(self.writer.congested)
        self.writer.resumeProducing()
        self.assertFalse(self.writer.congested)

    def test_bounded_in_bytes_and_messages_while_paused(self) -> None:
        self.writer.pauseProducing()
        for _ in range(5):
            self.writer.write(b"m")
        self.assertEqual(self.overflows, 0)
        self.writer.write(b"m")
        self.assertEqual(self.overflows, 1)
        self.writer.resumeProducing()  # the counts start over
        self.writer.pauseProducing()
        self.writer.write(b"x" * 100, 1)
        self.assertEqual(self.overflows, 1)
        self.writer.write(b"x", 1)
        self.assertEqual(self.overflows, 2)

    def test_unbounded_while_not_paused(self) -> None:
        for _ in range(1000):
            self.writer.write(b"x" * 10)
        self.assertEqual(self.overflows, 0)
        self.assertEqual(len(self.transport.value()), 10000)


class FlushSchedulerTests(SynchronousTestCase):
    def test_one_write_per_connection_per_turn(self) -> None:
        clock = Clock()
        scheduler = FlushScheduler(clock)
        writes: list[list[bytes]] = []
        buffer = SendBuffer(scheduler, writes.append)
        for n in range(3):
            buffer.append(b"%d" % n)
        self.assertEqual(writes, [])
        clock.advance(0)
        self.assertEqual(writes, [[b"0", b"1", b"2"]])

    def test_idle_every_turn_flushes_at_its_end(self) -> None:
        """Sends that take no time (an idle server): no added latency, turn after turn."""
        clock = Clock()
        scheduler = FlushScheduler(clock)
        writes: list[list[bytes]] = []
        buffer = SendBuffer(scheduler, writes.append)
        for n in range(5):
            buffer.append(b"%d" % n)
            clock.advance(0)
            self.assertEqual(writes[-1], [b"%d" % n])
        self.assertFalse(scheduler.busy)

    def _players(
        self, scheduler: FlushScheduler, count: int
    ) -> tuple[list[SendBuffer], list[list[list[bytes]]]]:
        """C{count} players' buffers, and the writes each one got."""
        writes: list[list[list[bytes]]] = [[] for _ in range(count)]
        return [SendBuffer(scheduler, w.append) for w in writes], writes

    def _make_busy(self, clock: Clock, scheduler: FlushScheduler) -> None:
        """
        A measuring period of traffic where every player gets a message
        every 2 ms (under the window after its last send): batching would
        save about every send, far over BATCH_ON a second.
        """
        buffers, _ = self._players(scheduler, 20)
        for _ in range(int(MEASURE_PERIOD / 0.002) + 1):
            for buffer in buffers:
                buffer.append(b"m")
            clock.advance(0)
            clock.advance(0.002)
        clock.advance(0)

    def test_idle_while_messages_for_a_player_are_far_apart(self) -> None:
        """Thousands of messages a second, but each player's a tick apart: nothing to batch."""
        clock = Clock()
        scheduler = FlushScheduler(clock, window=0.004)
        buffers, writes = self._players(scheduler, 200)
        for _ in range(20):  # 20 ticks of 50 ms: 4000 messages a second
            for buffer in buffers:
                buffer.append(b"state")
            clock.advance(0)  # sent at the end of the turn, every tick
            self.assertEqual(writes[0][-1], [b"state"])
            clock.advance(0.05)
        self.assertFalse(scheduler.busy)

    def test_batching_starts_once_it_would_save_sends(self) -> None:
        clock = Clock()
        scheduler = FlushScheduler(clock, window=0.004)
        self._make_busy(clock, scheduler)
        self.assertTrue(scheduler.busy)

    def test_busy_flushes_are_a_window_apart(self) -> None:
        """
        Once batching pays, what waits is flushed at most once per window,
        every player's messages of that window in one write: never later.
        """
        clock = Clock()
        scheduler = FlushScheduler(clock, window=0.004)
        self._make_busy(clock, scheduler)
        self.assertTrue(scheduler.busy)
        (a, b), writes = self._players(scheduler, 2)
        a.append(b"a0")
        while not writes[0]:  # until a flush: the window starts again there
            clock.advance(0.0005)
        writes[0].clear()
        clock.advance(0.001)  # 1 ms after the last flush
        a.append(b"a1")
        clock.advance(0.001)
        b.append(b"b1")
        a.append(b"a2")
        clock.advance(0.001)
        self.assertEqual(writes, [[], []])  # held: the window is not over
        clock.advance(0.001)  # 4 ms after the last flush
        self.assertEqual(writes, [[[b"a1", b"a2"]], [[b"b1"]]])
        b.append(b"b2")
        clock.advance(0.003)
        self.assertEqual(writes[1], [[b"b1"]])
        clock.advance(0.001)
        self.assertEqual(writes[1], [[b"b1"], [b"b2"]])
        self.assertTrue(scheduler.busy)

    def test_busy_after_a_quiet_window_a_message_leaves_at_once(self) -> None:
        clock = Clock()
        scheduler = FlushScheduler(clock, window=0.004)
        self._make_busy(clock, scheduler)
        clock.advance(0.01)  # nothing waits, nothing sent for longer than a window
        (a,), writes = self._players(scheduler, 1)
        a.append(b"x")
        clock.advance(0)
        self.assertEqual(writes[0], [[b"x"]])

    def test_batching_stops_when_it_saves_little(self) -> None:
        clock = Clock()
        scheduler = FlushScheduler(clock, window=0.004)
        self._make_busy(clock, scheduler)
        self.assertTrue(scheduler.busy)
        buffers, writes = self._players(scheduler, 5)
        for _ in range(10):  # a message to each every 50 ms: one per send
            for buffer in buffers:
                buffer.append(b"m")
            clock.advance(0.05)
        self.assertFalse(scheduler.busy)
        buffers[0].append(b"now")
        clock.advance(0)  # idle again: at the end of the turn
        self.assertEqual(writes[0][-1], [b"now"])

    def test_flush_sends_everything_at_once_even_when_busy(self) -> None:
        """What a closing server or connection relies on: nothing is held back."""
        clock = Clock()
        scheduler = FlushScheduler(clock, window=0.004)
        self._make_busy(clock, scheduler)
        (a, b), writes = self._players(scheduler, 2)
        a.append(b"a")
        clock.advance(0.004)
        b.append(b"b")
        scheduler.flush()
        self.assertEqual(writes, [[[b"a"]], [[b"b"]]])
        clock.advance(1)
        self.assertEqual(writes, [[[b"a"]], [[b"b"]]])  # no second, empty write

    def test_an_explicit_interval_of_zero_is_every_turn_whatever_the_load(self) -> None:
        clock = Clock()
        scheduler = FlushScheduler(clock, interval=0.0)
        writes: list[list[bytes]] = []

        def slow_send(messages: list[bytes]) -> None:
            writes.append(messages)
            clock.advance(0.001)

        buffer = SendBuffer(scheduler, slow_send)
        for n in range(3):
            buffer.append(b"%d" % n)
            clock.advance(0)
        self.assertEqual(len(writes), 3)
        self.assertFalse(scheduler.busy)

    def test_with_an_interval_one_write_per_interval(self) -> None:
        clock = Clock()
        scheduler = FlushScheduler(clock, interval=0.01)
        writes: list[list[bytes]] = []
        buffer = SendBuffer(scheduler, writes.append)
        buffer.append(b"a")
        clock.advance(0.005)
        buffer.append(b"b")
        self.assertEqual(writes, [])
        clock.advance(0.005)
        self.assertEqual(writes, [[b"a", b"b"]])
