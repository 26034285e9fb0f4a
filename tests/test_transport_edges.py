"""Transport edges that used to go wrong: blank-line floods, closes that never finish, TLS refusals, dual-stack addresses."""

from __future__ import annotations

from typing import Any

from twisted.internet import ssl as twisted_ssl
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionAborted
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.filepath import FilePath
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from gameframe import GameFactory, RoomService
from gameframe._limits import ConnectionGate, Limits
from gameframe._link import LINGER
from gameframe.tap import SHUTDOWN_GRACE, GameframeService
from gameframe.vocabulary import FLOODING, TOO_MANY_CONNECTIONS
from gameframe.web import PingService
from gameframe.websocket import WebSocketGameFactory
from tests.test_limits import ROOMS, Connection, WebSocketClient, client_frame


# -- 1. blank lines / empty frames are never counted against the rate ---------


class RateBypassTests(SynchronousTestCase):
    limits = Limits(rate=10, burst=20, frame_timeout=0, idle_timeout=0)

    def setUp(self) -> None:
        self.clock = Clock()
        self.service = RoomService(self.clock, ROOMS)

    def test_a_flood_of_blank_lines_is_never_throttled_nor_cut_off(self) -> None:
        """
        operations.md: a client over its rate is not read until its next
        token, and one still over it 5 s later is disconnected (flooding).
        A client sending nothing but newlines, flat out, is read in full
        for ever: blank lines skip the token bucket (protocol.py:107).
        """
        factory = GameFactory(self.service, self.clock, limits=self.limits)
        conn = Connection(factory, self.clock)
        conn.read()
        for _ in range(100):  # 10 s, 100,000 lines a second
            conn.write(b"\n" * 10_000)
            self.clock.advance(0.1)
        messages = conn.read()
        self.assertTrue(
            messages and messages[-1].get("code") == FLOODING,
            f"1,000,000 lines in 10 s at --rate 10: still open, never throttled"
            f" ({conn.protocol.throttled}), told {messages}",
        )

    def test_a_flood_of_empty_websocket_frames_is_never_cut_off(self) -> None:
        factory = WebSocketGameFactory(
            self.service, self.clock, limits=self.limits, ping_interval=0
        )
        client = WebSocketClient(factory, self.clock)
        client.messages()
        for _ in range(100):  # 10 s, 10,000 empty text frames a second
            client.write(client_frame(1, b"") * 1000)
            self.clock.advance(0.1)
        self.assertTrue(
            client.closed_by_server,
            "100,000 frames in 10 s at --rate 10 and still open",
        )


# -- 2. a WebSocket close that never completes depends on the sweep -----------


class _AbortingTransport(StringTransport):
    """A client that never closes its side; an abort ends the connection (as a socket's does)."""

    protocol: Any = None

    def abortConnection(self) -> None:
        if not self.disconnected:
            super().abortConnection()
            self.protocol.connectionLost(Failure(ConnectionAborted()))


class WebSocketLingerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.service = RoomService(self.clock, ROOMS)

    def test_without_timeouts_a_close_that_never_finishes_is_never_aborted(self) -> None:
        """
        --frame-timeout 0 --idle-timeout 0 turn the sweep off, and with it
        the LINGER abort of WebSocket connections (TCP has its own timer):
        the link, its gate slot and its socket stay for ever.
        """
        limits = Limits(frame_timeout=0, idle_timeout=0)
        factory = WebSocketGameFactory(self.service, self.clock, limits=limits, ping_interval=20)
        factory.start()
        self.addCleanup(factory.stop)
        client = WebSocketClient(factory, self.clock)
        client.messages()
        client.link.close("kicked", "bye")
        self.assertTrue(client.transport.disconnecting)  # a client that never closes its side
        self.clock.pump([1.0] * 60)
        self.assertTrue(
            client.transport.disconnected,
            f"not aborted 60 s after the close (LINGER is {LINGER} s); "
            f"links={len(factory.links)} gate.open={factory.gate.open}",
        )

    def test_a_shutdown_waits_its_whole_bound_for_a_websocket_that_never_closes(self) -> None:
        """
        On stop, PingService stops the WebSocket factory (its sweep) before
        the RoomService closes the players: a WebSocket client that does not
        hang up is never aborted after LINGER, so the stop waits until
        --shutdown-timeout + 2 s and gives up ("did not finish").
        """
        gate = ConnectionGate(Limits())
        top = GameframeService(self.clock, 10.0, [], gate)
        service = RoomService(self.clock, ROOMS, shutdown_timeout=10.0)
        service.setServiceParent(top)
        websocket = WebSocketGameFactory(service, self.clock, gate=gate)
        PingService(websocket).setServiceParent(top)
        top.startService()
        client = WebSocketClient(websocket, self.clock, transport=_AbortingTransport)
        client.transport.protocol = client.site_protocol
        client.messages()
        stopped = top.stopService()
        self.clock.pump([0.05] * int((LINGER + 2) / 0.05))
        self.assertTrue(
            stopped.called and gate.open == 0,
            f"{LINGER + 2:g} s after SIGTERM: gate.open={gate.open}, "
            f"aborted={client.transport.disconnected}; the stop only ends at "
            f"{10 + SHUTDOWN_GRACE:g} s",
        )


# -- 3. TLS: the half-close bypasses the TLS layer ----------------------------


class _Collector(Protocol):
    def __init__(self) -> None:
        self.data = b""

    def dataReceived(self, data: bytes) -> None:
        self.data += data


class _HalfClosingTransport(iosim.FakeTransport):
    """An iosim transport whose loseWriteConnection behaves like TCP's: later writes are dropped."""

    def loseWriteConnection(self) -> None:
        self.disconnecting = True


class TlsRefusalTests(SynchronousTestCase):
    def test_a_refused_tls_client_is_told_too_many_connections(self) -> None:
        """
        operations.md: past --max-connections a client gets disconnect
        too_many_connections instead of welcome, on any endpoint, TLS too.
        On an ssl: endpoint GameProtocol._disconnect finds loseWriteConnection
        on the TLS wrapper (ProtocolWrapper.__getattr__ hands out the raw TCP
        transport's), half-closes the TCP socket under TLS before the
        handshake: the refusal never leaves, and the handshake breaks.
        """
        clock = Clock()
        service = RoomService(clock, ROOMS)
        factory = GameFactory(service, clock, limits=Limits(max_connections=1))
        pem = FilePath(iosim.__file__).sibling("server.pem").getContent()
        server_options = twisted_ssl.PrivateCertificate.loadPEM(pem).options()
        client_options = twisted_ssl.CertificateOptions()

        def connect() -> _Collector:
            server = TLSMemoryBIOFactory(server_options, False, factory, clock=clock).buildProtocol(
                IPv4Address("TCP", "10.0.0.1", 4000)
            )
            collector = _Collector()
            client = TLSMemoryBIOFactory(
                client_options, True, Factory.forProtocol(lambda: collector), clock=clock
            ).buildProtocol(None)
            pump = iosim.connect(
                server,
                _HalfClosingTransport(server, True, peerAddress=IPv4Address("TCP", "10.0.0.1", 4000)),
                client,
                _HalfClosingTransport(client, False),
                clock=clock,
            )
            for _ in range(20):
                pump.pump()
                clock.advance(0)
            return collector

        first = connect()
        self.assertIn(b'"welcome"', first.data)  # TLS works: the control case
        second = connect()
        self.assertIn(TOO_MANY_CONNECTIONS.encode(), second.data)


# -- 4. --max-per-address and IPv4-mapped IPv6 addresses ----------------------


class PerAddressTests(SynchronousTestCase):
    def test_one_ipv4_client_counts_once_on_a_tcp6_endpoint_and_a_tcp_one(self) -> None:
        """
        operations.md: tcp6:7000 / systemd domain=INET6 listen on IPv6 "and
        IPv4 too"; there an IPv4 client's address is ::ffff:a.b.c.d. The
        gate counts the raw string, so with one endpoint on IPv6 and the
        other on IPv4 the same client gets twice --max-per-address.
        """
        clock = Clock()
        service = RoomService(clock, ROOMS)
        limits = Limits(max_per_address=1)
        gate = ConnectionGate(limits)
        tcp = GameFactory(service, clock, limits=limits, gate=gate)
        ws = WebSocketGameFactory(service, clock, limits=limits, gate=gate, ping_interval=0)

        address = IPv6Address("TCP", "::ffff:10.0.0.1", 4000)
        protocol = tcp.buildProtocol(address)
        protocol.makeConnection(StringTransport(peerAddress=address))
        clock.advance(0)
        self.assertEqual(gate.open, 1)
        client = WebSocketClient(ws, clock, "10.0.0.1")  # the same IPv4 host
        codes = [m.get("code") for m in client.messages()]
        self.assertIn(TOO_MANY_CONNECTIONS, codes, f"admitted: gate.open={gate.open}")

