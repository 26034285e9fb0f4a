"""Connection limits: message rate, flooding, frame and idle timeouts, connection counts, slow clients."""

from __future__ import annotations

import socket
from typing import Any, Callable, cast

import orjson
import pytest_twisted
from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import (
    EventLoggingObserver,
    StringTransport,
    StringTransportWithDisconnection,
)
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from gameframe import GameFactory, GameProtocol, Player, Room, RoomService, action
from gameframe._limits import ConnectionGate, Limits
from gameframe._link import LINGER, LinkFactory
from gameframe._sendpath import DEFAULT_MAX_PENDING_MESSAGES
from gameframe.vocabulary import (
    FLOODING,
    FRAME_TIMEOUT,
    IDLE_TIMEOUT,
    RATE_LIMITED,
    SLOW_CLIENT,
    TOO_MANY_CONNECTIONS,
)
from gameframe.websocket import GameWebSocketResource, WebSocketGameFactory, WebSocketLink

HOST = "127.0.0.1"


class Hub(Room):
    max_players = 10

    @action
    def echo(self, player: Player, value: Any = None) -> Any:
        return value

    @action
    def shout(self, player: Player, size: int, n: int = 0) -> int:
        """Everyone gets C{size} bytes; the reply says which shout it was."""
        self.broadcast({"action": "shouted", "n": n, "text": "x" * size})
        return n

    def on_join(self, player: Player, options: dict[str, Any]) -> None:
        self.broadcast({"action": "player_joined", "player_id": player.id})


ROOMS: dict[str, type[Room]] = {"hub": Hub}


def line(**message: Any) -> bytes:
    return orjson.dumps(message) + b"\n"


class Connection:
    """One GameProtocol on a StringTransport from a given address, read line by line."""

    def __init__(self, factory: GameFactory, clock: Clock, host: str = "10.0.0.1") -> None:
        self.clock = clock
        address = IPv4Address("TCP", host, 4000)
        self.protocol = factory.buildProtocol(address)
        self.transport = StringTransportWithDisconnection(peerAddress=address)
        self.transport.protocol = self.protocol
        self.lost = False
        original = self.protocol.connectionLost

        def lost(reason: Failure = Failure(ConnectionError())) -> None:
            self.lost = True
            original(reason)

        self.protocol.connectionLost = lost  # type: ignore[method-assign]
        self.protocol.makeConnection(self.transport)
        self._read = 0

    def write(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def send(self, **message: Any) -> None:
        self.write(line(**message))

    def read(self) -> list[dict[str, Any]]:
        self.clock.advance(0)
        data = self.transport.value()
        new, self._read = data[self._read :], len(data)
        return [orjson.loads(chunk) for chunk in new.split(b"\n")[:-1]]

    @property
    def open(self) -> bool:
        return self.transport.connected and not self.transport.disconnecting

    def assertClosedWith(self, case: SynchronousTestCase, code: str) -> None:
        messages = self.read()
        case.assertTrue(messages, "nothing was sent")
        case.assertEqual(messages[-1]["action"], "disconnect", messages[-1])
        case.assertEqual(messages[-1]["code"], code)
        case.assertTrue(messages[-1]["message"])
        case.assertFalse(self.open)


class LimitsTestCase(SynchronousTestCase):
    limits = Limits()

    def setUp(self) -> None:
        self.clock = Clock()
        self.service = RoomService(self.clock, ROOMS)
        self.factory = self.make_factory()

    def make_factory(self, limits: Limits | None = None, **kwargs: Any) -> GameFactory:
        factory = GameFactory(
            self.service, self.clock, limits=limits or self.limits, **kwargs
        )
        factory.startFactory()
        self.addCleanup(factory.stopFactory)
        return factory

    def connected(self, host: str = "10.0.0.1", factory: GameFactory | None = None) -> Connection:
        conn = Connection(factory or self.factory, self.clock, host)
        (welcome,) = conn.read()
        self.assertEqual(welcome["action"], "welcome")
        return conn

    def requests(self, n: int, start: int = 0) -> bytes:
        return b"".join(line(action="list", id=i) for i in range(start, start + n))

    def replies(self, messages: list[dict[str, Any]]) -> list[Any]:
        return [m["id"] for m in messages if m["action"] == "rooms"]

    def errors(self, messages: list[dict[str, Any]]) -> list[str]:
        return [m["code"] for m in messages if m["action"] == "error"]


# -- settings and the gate ----------------------------------------------------


class SettingsTests(SynchronousTestCase):
    def test_documented_defaults(self) -> None:
        limits = Limits()
        self.assertEqual(
            (
                limits.rate,
                limits.burst,
                limits.frame_timeout,
                limits.idle_timeout,
                limits.max_connections,
                limits.max_per_address,
                limits.flood_grace,
            ),
            (100.0, 200, 30.0, 120.0, 10000, 0, 5.0),
        )
        self.assertEqual(DEFAULT_MAX_PENDING_MESSAGES, 10000)

    def test_factories_default_to_these_limits_and_a_gate_of_their_own(self) -> None:
        clock = Clock()
        service = RoomService(clock)
        tcp = GameFactory(service, clock)
        ws = WebSocketGameFactory(service, clock)
        self.assertEqual(tcp.limits, Limits())
        self.assertIsNot(tcp.gate, ws.gate)
        self.assertEqual(tcp.gate.limits, Limits())

    def test_sweep_interval(self) -> None:
        self.assertEqual(Limits().sweep_interval(), 1.0)
        self.assertEqual(Limits(frame_timeout=1.0).sweep_interval(), 0.5)
        self.assertEqual(Limits(frame_timeout=0, idle_timeout=0.4).sweep_interval(), 0.2)
        self.assertEqual(Limits(frame_timeout=0, idle_timeout=0).sweep_interval(), 0.0)


class GateTests(SynchronousTestCase):
    def test_total(self) -> None:
        gate = ConnectionGate(Limits(max_connections=2))
        self.assertTrue(gate.admit("1.1.1.1"))
        self.assertTrue(gate.admit("2.2.2.2"))
        self.assertFalse(gate.admit("3.3.3.3"))
        self.assertEqual((gate.open, gate.refused), (2, 1))
        gate.release("1.1.1.1")
        self.assertTrue(gate.admit("3.3.3.3"))

    def test_per_address(self) -> None:
        gate = ConnectionGate(Limits(max_per_address=2))
        self.assertTrue(gate.admit("1.1.1.1"))
        self.assertTrue(gate.admit("1.1.1.1"))
        self.assertFalse(gate.admit("1.1.1.1"))
        self.assertTrue(gate.admit("2.2.2.2"))
        self.assertTrue(gate.admit(None))  # no IP address: only the total counts
        self.assertEqual(gate.from_address("1.1.1.1"), 2)
        gate.release("1.1.1.1")
        gate.release("1.1.1.1")
        self.assertEqual(gate.from_address("1.1.1.1"), 0)
        self.assertEqual(gate._per_address, {"2.2.2.2": 1})  # nothing left behind
        self.assertTrue(gate.admit("1.1.1.1"))

    def test_zero_is_no_limit(self) -> None:
        gate = ConnectionGate(Limits(max_connections=0, max_per_address=0))
        for _ in range(100):
            self.assertTrue(gate.admit("1.1.1.1"))
        self.assertEqual(gate.open, 100)
        self.assertEqual(gate._per_address, {})


# -- message rate -------------------------------------------------------------


class RateTests(LimitsTestCase):
    # A token every 0.125 s (exact in binary floating point); refilled in 2 s.
    limits = Limits(rate=8, burst=16, flood_grace=5.0)

    def test_a_burst_is_accepted_then_frames_are_dropped_with_one_error(self) -> None:
        conn = self.connected()
        conn.write(self.requests(20))
        messages = conn.read()
        self.assertEqual(self.replies(messages), list(range(16)))
        self.assertEqual(self.errors(messages), [RATE_LIMITED])
        error = next(m for m in messages if m["action"] == "error")
        self.assertNotIn("id", error)  # the dropped frame was never decoded
        self.assertTrue(conn.open)

    def test_a_client_over_its_rate_is_not_read_until_its_next_token(self) -> None:
        """TCP pushes back on a flood: the server stops reading instead of parsing and dropping."""
        conn = self.connected()
        conn.write(self.requests(16 + 1000))  # one chunk: the first drop skips the rest at once
        messages = conn.read()
        self.assertEqual(len(self.replies(messages)), 16)
        self.assertEqual(self.errors(messages), [RATE_LIMITED])
        self.assertEqual(conn.transport.producerState, "paused")
        self.clock.advance(0.125)  # the next token is due
        self.assertEqual(conn.transport.producerState, "producing")
        conn.write(self.requests(1, start=500))
        self.assertEqual(self.replies(conn.read()), [500])

    def test_the_bucket_refills_at_the_rate(self) -> None:
        conn = self.connected()
        conn.write(self.requests(16))
        self.assertEqual(len(self.replies(conn.read())), 16)
        self.clock.advance(0.5)  # four tokens
        conn.write(self.requests(6, start=100))
        messages = conn.read()
        self.assertEqual(self.replies(messages), [100, 101, 102, 103])
        self.assertEqual(self.errors(messages), [RATE_LIMITED])
        self.clock.advance(10)  # full again, and never more than the burst
        conn.write(self.requests(17, start=200))
        self.assertEqual(len(self.replies(conn.read())), 16)

    def test_dropped_frames_are_not_decoded(self) -> None:
        conn = self.connected()
        conn.write(self.requests(16))
        conn.read()
        conn.write(b"not json\n" * 5 + b"\xff\xfe\n")
        self.assertEqual(self.errors(conn.read()), [RATE_LIMITED])
        self.assertTrue(conn.open)  # not even the bad UTF-8 was looked at

    def test_at_most_one_rate_error_a_second(self) -> None:
        conn = self.connected()
        conn.write(self.requests(16))
        conn.read()
        errors = []
        for _ in range(16):  # 4 s of three frames every 0.25 s: one over the rate
            conn.write(self.requests(3))
            errors += self.errors(conn.read())
            self.clock.advance(0.25)
        self.assertEqual(errors, [RATE_LIMITED] * 4)
        self.assertTrue(conn.open)

    def test_a_client_over_the_rate_for_the_grace_period_is_disconnected(self) -> None:
        conn = self.connected()
        conn.write(self.requests(16))
        conn.read()
        for _ in range(40):  # 5 s of two frames every 0.125 s: twice the rate
            conn.write(self.requests(2))
            self.clock.advance(0.125)
        self.assertTrue(conn.open)
        conn.write(self.requests(2))  # 5 s after the first dropped frame
        conn.assertClosedWith(self, FLOODING)
        self.assertTrue(conn.lost)
        self.assertEqual(self.service.players, {})

    def test_pauses_that_refill_the_bucket_start_over(self) -> None:
        conn = self.connected()
        for _ in range(10):  # 30 s of bursts of 20: each over the burst by 4
            conn.write(self.requests(20))
            self.assertEqual(self.errors(conn.read()), [RATE_LIMITED])
            self.clock.advance(3.0)  # more than the bucket takes to refill (2 s)
        self.assertTrue(conn.open)

    def test_a_clock_set_back_does_not_empty_the_bucket(self) -> None:
        conn = self.connected()
        conn.write(self.requests(8))
        self.assertEqual(len(self.replies(conn.read())), 8)
        self.clock.rightNow -= 3600  # the wall clock jumps back an hour
        conn.write(self.requests(8, start=8))
        self.assertEqual(len(self.replies(conn.read())), 8)
        self.clock.advance(1)
        conn.write(self.requests(8, start=16))
        self.assertEqual(len(self.replies(conn.read())), 8)

    def test_lines_split_over_chunks_count_once(self) -> None:
        conn = self.connected()
        data = self.requests(16)
        for i in range(0, len(data), 7):
            conn.write(data[i : i + 7])
        messages = conn.read()
        self.assertEqual(len(self.replies(messages)), 16)
        self.assertEqual(self.errors(messages), [])

    def test_rate_zero_is_no_limit(self) -> None:
        factory = self.make_factory(Limits(rate=0))
        conn = self.connected(factory=factory)
        conn.write(self.requests(1000))
        messages = conn.read()
        self.assertEqual(len(self.replies(messages)), 1000)
        self.assertEqual(self.errors(messages), [])


# -- frame and idle timeouts ----------------------------------------------------


class TimeoutTests(LimitsTestCase):
    limits = Limits(frame_timeout=30, idle_timeout=120)

    def test_a_partial_line_must_finish_within_the_frame_timeout(self) -> None:
        conn = self.connected()
        conn.write(b'{"action": "li')
        for _ in range(29):  # a byte a second: activity, but no message
            self.clock.advance(1)
            conn.write(b" ")
        self.assertTrue(conn.open)
        self.clock.advance(2)
        conn.assertClosedWith(self, FRAME_TIMEOUT)

    def test_a_line_finished_in_time_is_fine(self) -> None:
        conn = self.connected()
        conn.write(b'{"action": "li')
        self.clock.advance(29)
        conn.write(b'st", "id": 1}\n{"action": "list", "id": 2}\n{"act')  # and a new one
        self.assertEqual(self.replies(conn.read()), [1, 2])
        self.clock.advance(29)  # the new partial line is timed from its own start
        self.assertTrue(conn.open)
        conn.write(b'ion": "list", "id": 3}\n')
        self.assertEqual(self.replies(conn.read()), [3])
        self.clock.advance(60)
        self.assertTrue(conn.open)

    def test_idle_connections_are_closed(self) -> None:
        conn = self.connected()
        self.clock.advance(100)
        conn.send(action="list", id=1)  # any frame is activity
        self.clock.advance(119)
        self.assertEqual(self.replies(conn.read()), [1])
        self.assertTrue(conn.open)
        self.clock.advance(2)
        conn.assertClosedWith(self, IDLE_TIMEOUT)
        self.clock.advance(LINGER)
        self.assertTrue(conn.lost)
        self.assertEqual(self.service.players, {})

    def test_only_the_late_connection_is_closed(self) -> None:
        idle = self.connected()
        self.clock.advance(60)
        busy = self.connected()
        self.clock.advance(61)
        self.assertFalse(idle.open)
        self.assertTrue(busy.open)

    def test_zero_turns_a_timeout_off(self) -> None:
        factory = self.make_factory(Limits(frame_timeout=0, idle_timeout=0))
        conn = self.connected(factory=factory)
        conn.write(b"{")
        self.clock.advance(10_000)
        self.assertTrue(conn.open)
        self.assertFalse(factory._sweeper.running)

    def test_one_sweep_per_factory_started_and_stopped_with_it(self) -> None:
        clock = Clock()
        factory = GameFactory(RoomService(clock), clock)
        self.assertEqual(clock.getDelayedCalls(), [])
        factory.startFactory()
        connections = [Connection(factory, clock) for _ in range(20)]
        for conn in connections:
            conn.write(b'{"action": "list"}\n{"action": "li')
        clock.advance(0)
        self.assertEqual(len(clock.getDelayedCalls()), 1)  # the sweep; no timer per connection
        factory.stopFactory()
        self.assertEqual(clock.getDelayedCalls(), [])
        clock.advance(1000)
        self.assertTrue(all(conn.open for conn in connections))

    def test_a_closing_connection_the_client_never_closes_is_aborted(self) -> None:
        protocol = self.factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 1))
        # No half close, and loseConnection only waits for the client to read.
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.close("replaced", "bye")
        self.assertTrue(transport.disconnecting)
        self.clock.advance(LINGER - 0.5)
        self.assertFalse(transport.disconnected)
        self.clock.advance(0.5)  # the linger is over
        self.assertTrue(transport.disconnected)


# -- connection counts ------------------------------------------------------------


class ConnectionCountTests(LimitsTestCase):
    limits = Limits(max_connections=2, max_per_address=0)

    def refused(self, conn: Connection) -> None:
        messages = conn.read()
        self.assertEqual([m["action"] for m in messages], ["disconnect"])  # no welcome
        self.assertEqual(messages[0]["code"], TOO_MANY_CONNECTIONS)
        self.assertFalse(conn.open)

    def test_over_max_connections_is_refused_without_a_player(self) -> None:
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        first, second = self.connected("10.0.0.1"), self.connected("10.0.0.2")
        third = Connection(self.factory, self.clock, "10.0.0.3")
        self.refused(third)
        self.assertEqual(len(self.service.players), 2)
        self.assertEqual((self.factory.gate.open, self.factory.gate.refused), (2, 1))
        self.assertTrue(any(e.get("code") == TOO_MANY_CONNECTIONS for e in observer))
        third.write(line(action="list", id=1))  # nothing more is read from it
        self.assertEqual(third.read(), [])
        self.clock.advance(LINGER)
        self.assertTrue(third.lost)
        self.assertEqual(self.factory.gate.open, 2)  # a refused connection releases nothing
        first.transport.loseConnection()
        self.assertEqual(self.factory.gate.open, 1)
        self.connected("10.0.0.3")
        second.send(action="list", id=1)
        self.assertEqual(self.replies(second.read()), [1])

    def test_per_address(self) -> None:
        factory = self.make_factory(Limits(max_per_address=1))
        self.connected("10.0.0.1", factory)
        self.refused(Connection(factory, self.clock, "10.0.0.1"))
        self.connected("10.0.0.2", factory)

    def test_unix_sockets_count_towards_the_total_only(self) -> None:
        factory = self.make_factory(Limits(max_per_address=1))
        for _ in range(3):
            protocol = factory.buildProtocol(UNIXAddress(b"/tmp/s"))
            protocol.makeConnection(StringTransport(peerAddress=UNIXAddress(b"/tmp/s")))
            self.assertTrue(protocol._admitted)
        self.assertEqual(factory.gate.open, 3)

    def test_one_gate_for_tcp_and_websocket(self) -> None:
        gate = ConnectionGate(self.limits)
        tcp = self.make_factory(gate=gate)
        ws = WebSocketGameFactory(self.service, self.clock, limits=self.limits, gate=gate)
        self.connected("10.0.0.1", tcp)
        client = WebSocketClient(ws, self.clock, "10.0.0.2")
        self.assertEqual(client.messages()[0]["action"], "welcome")
        self.refused(Connection(tcp, self.clock, "10.0.0.3"))
        refused = WebSocketClient(ws, self.clock, "10.0.0.4")
        (message,) = refused.messages()
        self.assertEqual((message["action"], message["code"]), ("disconnect", TOO_MANY_CONNECTIONS))
        self.assertTrue(refused.closed_by_server)
        self.assertEqual(len(self.service.players), 2)
        client.site_protocol.connectionLost(Failure(ConnectionError()))
        self.assertEqual(gate.open, 1)


# -- slow clients ------------------------------------------------------------------


class SlowClientTests(LimitsTestCase):
    def test_congested_while_the_transport_pauses_us(self) -> None:
        conn = self.connected()
        self.assertFalse(conn.protocol.congested)
        conn.transport.producer.pauseProducing()
        self.assertTrue(conn.protocol.congested)
        conn.transport.producer.resumeProducing()
        self.assertFalse(conn.protocol.congested)

    def test_too_many_messages_waiting_drops_the_client(self) -> None:
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        factory = self.make_factory(max_pending_messages=10)
        conn = self.connected(factory=factory)
        conn.transport.producer.pauseProducing()
        for n in range(10):  # small messages, one per turn: far from the byte limit
            conn.protocol.send({"action": "tick", "n": n})
            self.clock.advance(0)
        self.assertTrue(conn.open)
        conn.protocol.send({"action": "tick", "n": 10})
        self.clock.advance(0)
        self.assertTrue(conn.transport.disconnected, "not aborted")
        self.assertTrue(conn.lost)
        self.assertEqual(self.service.players, {})
        (event,) = [e for e in observer if e.get("code") == SLOW_CLIENT]
        from twisted.logger import formatEvent

        self.assertIn("is a slow_client", formatEvent(event))

    def test_too_many_messages_waiting_drops_the_client(self) -> None:
        factory = self.make_factory(max_pending_messages=10)
        conn = self.connected(factory=factory)
        conn.transport.producer.pauseProducing()  # the transport's buffer is full
        self.assertTrue(conn.protocol.congested)
        for n in range(10):
            conn.protocol.send({"action": "tick", "n": n})
        factory.scheduler.flush()  # the end of the turn: ten wait, the bound
        self.assertFalse(conn.protocol._closing)
        conn.protocol.send({"action": "tick", "n": 10})
        factory.scheduler.flush()  # eleven: too many
        self.assertTrue(conn.protocol._closing)  # nothing more goes out
        self.clock.advance(0)  # dropped on the next turn (a few a turn: see ABORT_PER_TURN)
        self.assertTrue(conn.transport.disconnected)

    def test_many_slow_clients_are_dropped_a_few_a_turn(self) -> None:
        from gameframe._link import ABORT_PER_TURN

        factory = self.make_factory(max_pending_messages=10)
        conns = [self.connected(f"10.1.0.{i}", factory=factory) for i in range(3 * ABORT_PER_TURN)]
        for conn in conns:
            conn.transport.producer.pauseProducing()  # none of them reads
            for n in range(11):
                conn.protocol.send({"action": "tick", "n": n})
        factory.scheduler.flush()  # all overflow in the same turn
        self.assertEqual([c for c in conns if c.transport.disconnected], [])
        # One reactor turn (task.Clock runs every turn due at once, so by hand):
        factory._aborting.run_turn()
        self.assertEqual(len([c for c in conns if c.transport.disconnected]), ABORT_PER_TURN)
        self.clock.advance(0)  # and the turns after
        self.assertEqual([c for c in conns if not c.transport.disconnected], [])

    def test_a_reading_client_gets_any_number_of_messages(self) -> None:
        factory = self.make_factory(max_pending_messages=10)
        conn = self.connected(factory=factory)
        for n in range(100):
            for _ in range(5):
                conn.protocol.send({"action": "tick", "n": n})
            self.clock.advance(0)
        self.assertTrue(conn.open)
        self.assertEqual(len(conn.read()), 500)


# -- WebSocket, through Twisted's real HTTP and WebSocket code, in memory ------------

HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\n"
    b"Host: localhost\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    b"\r\n"
)


def client_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A masked client frame (the mask is zero, so the payload reads as is)."""
    size = len(payload)
    first = (0x80 if fin else 0) | opcode
    if size < 126:
        head = bytes((first, 0x80 | size))
    else:
        head = bytes((first, 0x80 | 126)) + size.to_bytes(2, "big")
    return head + b"\0\0\0\0" + payload


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """The (opcode, payload) of each unmasked server frame in C{data}."""
    frames, i = [], 0
    while i < len(data):
        opcode, size = data[i] & 0x0F, data[i + 1] & 0x7F
        i += 2
        if size == 126:
            size, i = int.from_bytes(data[i : i + 2], "big"), i + 2
        elif size == 127:
            size, i = int.from_bytes(data[i : i + 8], "big"), i + 8
        frames.append((opcode, data[i : i + size]))
        i += size
    return frames


class WebSocketClient:
    """A WebSocket client speaking to a Site with the /ws resource over a StringTransport."""

    def __init__(
        self,
        factory: WebSocketGameFactory,
        clock: Any,
        host: str = "10.0.0.1",
        transport: type[StringTransport] = StringTransport,
    ) -> None:
        self.site = Site(GameWebSocketResource(factory), reactor=clock)
        address = IPv4Address("TCP", host, 5000)
        before = set(factory.links)
        self.site_protocol = self.site.buildProtocol(address)
        self.transport = transport(peerAddress=address)
        self.site_protocol.makeConnection(self.transport)
        self.clock = clock
        self.site_protocol.dataReceived(HANDSHAKE)
        self.clock.advance(0)
        head, _, _ = self.transport.value().partition(b"\r\n\r\n")
        self.response = head
        self._read = len(head) + 4
        (link,) = factory.links - before
        self.link = cast(WebSocketLink, link)

    def write(self, data: bytes) -> None:
        self.site_protocol.dataReceived(data)

    def send(self, **message: Any) -> None:
        self.write(client_frame(1, orjson.dumps(message)))

    def frames(self) -> list[tuple[int, bytes]]:
        self.clock.advance(0)
        data = self.transport.value()
        new, self._read = data[self._read :], len(data)
        return server_frames(new)

    def messages(self) -> list[dict[str, Any]]:
        return [orjson.loads(p) for op, p in self.frames() if op == 1]

    @property
    def closed_by_server(self) -> bool:
        return bool(self.transport.disconnecting)


class WebSocketLimitsTests(SynchronousTestCase):
    limits = Limits(rate=8, burst=16, frame_timeout=30, idle_timeout=120, max_connections=3)

    def setUp(self) -> None:
        self.clock = Clock()
        self.service = RoomService(self.clock, ROOMS)
        self.factory = WebSocketGameFactory(
            self.service, self.clock, limits=self.limits, ping_interval=0
        )
        self.factory.start()
        self.addCleanup(self.factory.stop)

    def client(self, host: str = "10.0.0.1") -> WebSocketClient:
        client = WebSocketClient(self.factory, self.clock, host)
        self.assertIn(b" 101 ", client.response)
        (welcome,) = client.messages()
        self.assertEqual(welcome["action"], "welcome")
        return client

    def assertClosedWith(self, client: WebSocketClient, code: str) -> None:
        frames = client.frames()
        texts = [orjson.loads(p) for op, p in frames if op == 1]
        self.assertEqual(texts[-1]["action"], "disconnect")
        self.assertEqual(texts[-1]["code"], code)
        self.assertEqual(frames[-1][0], 8)  # then a close frame
        self.assertTrue(client.closed_by_server)

    def test_permessage_deflate_is_never_negotiated(self) -> None:
        client = self.client()
        self.assertIn(b"upgrade: websocket", client.response.lower())
        self.assertNotIn(b"sec-websocket-extensions", client.response.lower())
        self.assertNotIn(b"deflate", client.response.lower())

    def test_message_rate(self) -> None:
        client = self.client()
        client.write(b"".join(client_frame(1, b'{"action":"list","id":%d}' % i) for i in range(20)))
        client.write(client_frame(2, b"binary counts too"))
        messages = client.messages()
        self.assertEqual(len([m for m in messages if m["action"] == "rooms"]), 16)
        self.assertEqual([m["code"] for m in messages if m["action"] == "error"], [RATE_LIMITED])
        for _ in range(40):  # 5 s at twice the rate
            client.write(client_frame(1, b'{"action":"list"}') * 2)
            self.clock.advance(0.125)
        self.assertFalse(client.closed_by_server)
        client.write(client_frame(1, b'{"action":"list"}') * 2)
        self.assertClosedWith(client, FLOODING)

    def test_pings_do_not_count_against_the_rate(self) -> None:
        client = self.client()
        client.write(client_frame(9, b"p") * 100)
        client.write(b"".join(client_frame(1, b'{"action":"list","id":%d}' % i) for i in range(16)))
        frames = client.frames()
        self.assertEqual(len([f for f in frames if f[0] == 10]), 100)  # pongs
        self.assertEqual(len([f for f in frames if f[0] == 1]), 16)

    def test_frame_timeout(self) -> None:
        client = self.client()
        frame = client_frame(1, b'{"action": "list", "id": 1}')
        client.write(frame[:5])  # a header, half a mask
        self.clock.advance(20)
        client.write(frame[5:])
        self.assertEqual(len(client.messages()), 1)
        client.write(client_frame(1, b'{"action": "list", "id": 2}', fin=False))
        for _ in range(30):  # pings keep it active but the message never ends
            self.clock.advance(1)
            client.write(client_frame(9, b""))
        self.assertTrue(client.link._frame_started < self.clock.seconds())
        self.clock.advance(1)
        self.assertClosedWith(client, FRAME_TIMEOUT)

    def test_idle_timeout(self) -> None:
        client = self.client()
        self.clock.advance(119)
        client.send(action="list")
        self.clock.advance(119)
        self.assertFalse(client.closed_by_server)
        self.clock.advance(2)
        self.assertClosedWith(client, IDLE_TIMEOUT)

    def test_connection_limit(self) -> None:
        clients = [self.client(f"10.0.0.{n}") for n in range(3)]
        refused = WebSocketClient(self.factory, self.clock, "10.0.0.9")
        (message,) = refused.messages()
        self.assertEqual(message["code"], TOO_MANY_CONNECTIONS)
        self.assertTrue(refused.closed_by_server)
        self.assertEqual(len(self.service.players), 3)
        clients[0].site_protocol.connectionLost(Failure(ConnectionError()))
        self.client("10.0.0.9")

    def test_congested_while_the_transport_pauses_us(self) -> None:
        client = self.client()
        self.assertFalse(client.link.congested)
        client.transport.producer.pauseProducing()
        self.assertTrue(client.link.congested)
        client.transport.producer.resumeProducing()
        self.assertFalse(client.link.congested)

    def test_keepalive_and_no_delay(self) -> None:
        WebSocketClient(self.factory, self.clock, transport=TcpOptions)
        self.assertEqual(TcpOptions.set, {"keepalive": True, "nodelay": True})
        TcpOptions.set.clear()
        protocol = GameFactory(self.service, self.clock).buildProtocol(None)
        protocol.makeConnection(TcpOptions())
        self.assertEqual(TcpOptions.set, {"keepalive": True, "nodelay": True})


class WebSocketClosingTests(SynchronousTestCase):
    """Once a close frame is written, whoever began the close: nothing more, and a bounded wait."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.service = RoomService(self.clock, ROOMS)
        self.factory = WebSocketGameFactory(self.service, self.clock, ping_interval=10)
        self.factory.start()
        self.addCleanup(self.factory.stop)

    def client(self) -> WebSocketClient:
        client = WebSocketClient(self.factory, self.clock)
        self.assertEqual(client.messages()[0]["action"], "welcome")
        return client

    def test_no_data_frame_after_the_client_close(self) -> None:
        client = self.client()
        client.write(client_frame(8, (1000).to_bytes(2, "big")))
        client.link.send({"action": "late"})
        frames = client.frames()
        self.assertEqual([op for op, _ in frames], [8])
        self.assertTrue(client.transport.disconnecting)

    def test_pings_go_on_past_a_connection_whose_close_never_finishes(self) -> None:
        closing, other = self.client(), self.client()
        closing.write(client_frame(10, b"") + client_frame(8, (1000).to_bytes(2, "big")))
        for _ in range(3):
            other.write(client_frame(10, b"gf"))
            self.clock.advance(10)
        self.assertEqual([p for op, p in other.frames() if op == 9], [b"gf"] * 3)

    def test_a_close_that_never_finishes_is_aborted(self) -> None:
        client = self.client()
        client.write(client_frame(8, (1000).to_bytes(2, "big")))
        self.assertTrue(client.transport.disconnecting)  # StringTransport never finishes it
        self.clock.advance(LINGER - 0.5)
        self.assertFalse(client.transport.disconnected)
        self.clock.advance(0.5)
        self.assertTrue(client.transport.disconnected)

    def test_an_unsupported_version_is_refused_naming_version_13(self) -> None:
        site = Site(GameWebSocketResource(self.factory), reactor=self.clock)
        channel = site.buildProtocol(IPv4Address("TCP", "10.0.0.1", 5000))
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(HANDSHAKE.replace(b"Version: 13", b"Version: 8"))
        head = transport.value().partition(b"\r\n\r\n")[0].lower()
        self.assertTrue(head.startswith(b"http/1.1 426 "), head)
        self.assertIn(b"sec-websocket-version: 13", head)
        self.assertEqual(self.factory.links, set())


class TcpOptions(StringTransport):
    """Records the TCP options set on it."""

    set: dict[str, bool] = {}

    def setTcpKeepAlive(self, on: bool) -> None:
        self.set["keepalive"] = on

    def setTcpNoDelay(self, on: bool) -> None:
        self.set["nodelay"] = on


# -- a client that never reads, on a real socket -------------------------------------


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def bounded(waiting: Deferred[Any]) -> Deferred[Any]:
    """Fail with TimeoutError instead of hanging."""
    return waiting.addTimeout(10.0, _reactor())


class Collector(Protocol):
    """A client reading JSON lines; L{wait} fires on the next message matching a test."""

    def __init__(self) -> None:
        self._buffer = b""
        self.got: list[dict[str, Any]] = []
        self.lost: Deferred[None] = Deferred()
        self._waiting: list[tuple[Callable[[dict[str, Any]], bool], Deferred[dict[str, Any]]]] = []

    def dataReceived(self, data: bytes) -> None:
        lines = (self._buffer + data).split(b"\n")
        self._buffer = lines.pop()
        for chunk in lines:
            message = orjson.loads(chunk)
            self.got.append(message)
            for entry in list(self._waiting):
                if entry[0](message):
                    self._waiting.remove(entry)
                    entry[1].callback(message)

    def wait(self, test: Callable[[dict[str, Any]], bool]) -> Deferred[dict[str, Any]]:
        done: Deferred[dict[str, Any]] = Deferred()
        self._waiting.append((test, done))
        return bounded(done)

    def send(self, **message: Any) -> None:
        assert self.transport is not None
        self.transport.write(line(**message))

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        self.lost.callback(None)


class NonReader(Collector):
    """Stops reading once connected, with a small receive buffer."""

    def connectionMade(self) -> None:
        assert self.transport is not None
        handle = self.transport.getHandle()  # type: ignore[attr-defined]
        handle.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.transport.pauseProducing()  # type: ignore[attr-defined]


class Tracking(GameFactory):
    """Knows its connections, and when each one is lost."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.protocols: list[GameProtocol] = []
        self.server_lost: dict[GameProtocol, Deferred[None]] = {}

    def buildProtocol(self, addr: IAddress | None) -> GameProtocol:
        protocol = super().buildProtocol(addr)
        self.protocols.append(protocol)
        lost: Deferred[None] = Deferred()
        self.server_lost[protocol] = lost
        original = protocol.connectionLost

        def tracked(reason: Failure = Failure(ConnectionError())) -> None:
            original(reason)
            lost.callback(None)

        protocol.connectionLost = tracked  # type: ignore[method-assign]
        return protocol


async def connect(port: int, protocol: Collector) -> Collector:
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    endpoint = TCP4ClientEndpoint(_reactor(), HOST, port)
    await bounded(connectProtocol(endpoint, protocol))
    return protocol


def has(action: str, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m["action"] == action and all(m.get(k) == v for k, v in fields.items())


@pytest_twisted.ensureDeferred
async def test_a_client_that_never_reads_is_dropped_and_others_go_on() -> None:
    reactor = _reactor()
    service = RoomService(reactor, ROOMS)
    factory = Tracking(service, reactor, max_pending=256 * 1024)
    port = reactor.listenTCP(0, factory, interface=HOST)
    clients: list[Collector] = []
    events = EventLoggingObserver()
    globalLogPublisher.addObserver(events)
    try:
        reader = Collector()
        welcome = reader.wait(has("welcome"))
        clients.append(await connect(port.getHost().port, reader))
        await welcome
        stuck = NonReader()
        clients.append(await connect(port.getHost().port, stuck))
        joined = reader.wait(has("joined"))
        reader.send(action="create", room="hub")
        room_id = (await joined)["room_id"]
        other_joined = reader.wait(has("player_joined"))
        stuck.send(action="join", room_id=room_id)
        await other_joined
        server_reader, server_stuck = factory.protocols
        # Every connection has TCP keepalive and no Nagle delay.
        for protocol in factory.protocols:
            handle = protocol.transport.getHandle()  # type: ignore[union-attr]
            assert handle.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
            assert handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        # The reader shouts 64 KiB at a time to both; the other never reads.
        n = 0
        while not factory.server_lost[server_stuck].called:
            n += 1
            assert n < 1000, "the client that never reads was never dropped"
            replied = reader.wait(has("result", id=n))
            reader.send(action="shout", size=64 * 1024, n=n, id=n)
            await replied
        assert [e["player"] for e in events if e.get("code") == SLOW_CLIENT] == [
            server_stuck.player
        ]
        # The reader got every shout and goes on, alone in the room.
        replied = reader.wait(has("result", id="last"))
        reader.send(action="shout", size=10, n=n + 1, id="last")
        await replied
        shouted = [m["n"] for m in reader.got if m["action"] == "shouted"]
        assert shouted == list(range(1, n + 2))
        assert not server_reader.congested
        assert list(service.rooms[room_id].players) == [server_reader.player.id]
    finally:
        globalLogPublisher.removeObserver(events)
        await bounded(maybeDeferred(port.stopListening))
        for client in clients:
            if not client.lost.called:
                client.transport.abortConnection()  # type: ignore[union-attr]
        for client in clients:
            await bounded(client.lost)
        for lost in factory.server_lost.values():
            await bounded(lost)


def test_link_factory_is_the_shared_base() -> None:
    assert issubclass(GameFactory, LinkFactory)
    assert issubclass(WebSocketGameFactory, LinkFactory)


class FairAcceptTests(SynchronousTestCase):
    """A connection storm is accepted in small batches, a reactor turn each."""

    def test_a_port_accepts_at_most_a_few_connections_a_turn(self) -> None:
        import socket

        from twisted.internet import reactor, tcp
        from twisted.internet.protocol import Factory, Protocol

        from gameframe._limits import MAX_ACCEPTS_PER_TURN, accept_fairly

        accepted: list[Protocol] = []

        class Counting(Protocol):
            def connectionMade(self) -> None:
                accepted.append(self)

        port = reactor.listenTCP(0, Factory.forProtocol(Counting), interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        accept_fairly(port)
        clients = []
        for _ in range(3 * MAX_ACCEPTS_PER_TURN):  # all wait in the listen backlog
            client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5)
            self.addCleanup(client.close)
            clients.append(client)
        for turn in (1, 2, 3):
            port.doRead()  # what the reactor calls once a turn while connections wait
            self.assertEqual(len(accepted), turn * MAX_ACCEPTS_PER_TURN)
        for protocol in accepted:  # let go of them without running the reactor
            assert isinstance(protocol.transport, tcp.Server)
            protocol.transport.stopReading()
            protocol.transport.socket.close()
        self.assertEqual(port.numberAccepts, MAX_ACCEPTS_PER_TURN)


class ExpiryBatchTests(LimitsTestCase):
    limits = Limits(frame_timeout=5.0)

    def test_many_timeouts_at_once_are_closed_a_batch_a_turn(self) -> None:
        from gameframe._link import EXPIRE_PER_TURN

        conns = [self.connected(host=f"10.0.{i // 250}.{i % 250}") for i in range(3 * EXPIRE_PER_TURN)]
        for conn in conns:
            conn.write(b'{"action": "li')  # never finished
        self.clock.rightNow += 6  # time passes, and the sweep looks (what its timer does)
        self.factory._sweep()
        self.factory._expiring.run_turn()  # one reactor turn, by hand
        closed = [conn for conn in conns if not conn.open]
        self.assertEqual(len(closed), EXPIRE_PER_TURN)  # the rest wait for the next turns
        self.clock.advance(0)
        for conn in conns:
            conn.assertClosedWith(self, FRAME_TIMEOUT)
