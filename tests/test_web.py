"""The HTTP side: a request (the WebSocket upgrade included) must arrive within the frame timeout."""

from __future__ import annotations

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
