"""The write path: one flush per turn or interval, direct socket sends with the transport as overflow."""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from gameframe._sendpath import FlushScheduler, SendBuffer, SocketWriter, TransportWriter


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

    def test_busy_flushes_are_batched_within_the_budget(self) -> None:
        """
        When sending takes over a quarter of the time between flushes, the
        next flushes wait for the budget since the last one; once sending
        takes little of it, flushes go back to the end of every turn.
        """
        clock = Clock()
        scheduler = FlushScheduler(clock, budget=0.004)
        writes: list[list[bytes]] = []

        def slow_send(messages: list[bytes]) -> None:
            writes.append(messages)
            clock.advance(0.001)  # the send itself takes 1 ms

        buffer = SendBuffer(scheduler, slow_send)
        buffer.append(b"a")
        clock.advance(0)  # 1 ms of sending after a long idle time: still idle
        self.assertFalse(scheduler.busy)
        buffer.append(b"b")
        clock.advance(0)  # 1 ms of sending right after the last flush: busy
        self.assertEqual(writes, [[b"a"], [b"b"]])
        self.assertTrue(scheduler.busy)
        buffer.append(b"c")
        clock.advance(0.002)
        buffer.append(b"d")
        self.assertEqual(len(writes), 2)  # held: the budget is not over
        clock.advance(0.002)  # 4 ms after the last flush ended
        self.assertEqual(writes[2], [b"c", b"d"])
        self.assertTrue(scheduler.busy)  # 1 ms of sending in 5 ms: still busy
        clock.advance(1.0)
        buffer.append(b"e")
        clock.advance(0)  # the budget is long over: at once
        self.assertEqual(writes[3], [b"e"])
        self.assertFalse(scheduler.busy)  # 1 ms of sending in a second: idle
        buffer.append(b"f")
        clock.advance(0)
        self.assertEqual(writes[4], [b"f"])

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
