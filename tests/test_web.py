"""The HTTP side: a request (the WebSocket upgrade included) must arrive within the frame timeout; health and readiness."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from gameframe._limits import Limits
from gameframe.demo import DEMO_ROOMS
from gameframe.service import RoomService
from gameframe.web import make_site
from gameframe.websocket import WebSocketGameFactory


class RequestDeadlineTests(SynchronousTestCase):
    def connect(self, frame_timeout: float = 30.0) -> tuple[MemoryReactorClock, StringTransport]:
        clock = MemoryReactorClock()
        service = RoomService(clock, dict(DEMO_ROOMS))
        websocket = WebSocketGameFactory(service, clock, limits=Limits(frame_timeout=frame_timeout))
        site = make_site(service, websocket)
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
        transport = StringTransport()
        channel.makeConnection(transport)
        self.channel = channel
        return clock, transport

    def test_a_trickled_request_is_cut_off(self) -> None:
        clock, transport = self.connect()
        request = b"GET /rooms HTTP/1.1\r\nHost: x\r\n"
        for byte in request:
            self.channel.dataReceived(bytes([byte]))
            clock.advance(29 / len(request))  # one byte at a time, each resetting idleness
        self.assertFalse(transport.disconnecting)
        clock.advance(1.5)
        self.assertTrue(transport.disconnected or transport.disconnecting)

    def test_whole_requests_are_served_and_an_idle_keepalive_is_not_cut(self) -> None:
        clock, transport = self.connect()
        self.channel.dataReceived(b"GET /rooms HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(b'"types"', transport.value())
        clock.advance(31)
        self.assertFalse(transport.disconnecting)

    def test_zero_turns_it_off(self) -> None:
        clock, transport = self.connect(frame_timeout=0)
        self.channel.dataReceived(b"GET /rooms HTTP/1.1\r\n")
        clock.advance(50)  # under Twisted's own idle timeout (60 s)
        self.assertFalse(transport.disconnecting)


class HealthTests(SynchronousTestCase):
    def get(self, service: RoomService, path: bytes, readiness: Any = None) -> bytes:
        clock = MemoryReactorClock()
        websocket = WebSocketGameFactory(service, clock, limits=Limits())
        site = make_site(service, websocket, readiness)
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        return transport.value()

    def test_healthz_says_alive(self) -> None:
        service = RoomService(MemoryReactorClock(), dict(DEMO_ROOMS))
        reply = self.get(service, b"/healthz")
        self.assertTrue(reply.startswith(b"HTTP/1.1 200"))
        self.assertIn(b'{"status":"alive"}', reply)

    def test_readyz_once_started_and_not_while_stopping(self) -> None:
        service = RoomService(MemoryReactorClock(), dict(DEMO_ROOMS))
        reply = self.get(service, b"/readyz")
        self.assertTrue(reply.startswith(b"HTTP/1.1 503"))
        self.assertIn(b"has not started", reply)
        service.startService()
        self.assertTrue(self.get(service, b"/readyz").startswith(b"HTTP/1.1 200"))
        service.stopService()
        reply = self.get(service, b"/readyz")
        self.assertTrue(reply.startswith(b"HTTP/1.1 503"))
        self.assertIn(b"shutting down", reply)

    def test_readyz_reports_what_the_server_says(self) -> None:
        service = RoomService(MemoryReactorClock(), dict(DEMO_ROOMS))
        reply = self.get(service, b"/readyz", lambda: ["the ports are not all listening yet"])
        self.assertTrue(reply.startswith(b"HTTP/1.1 503"))
        self.assertIn(b"not all listening", reply)
