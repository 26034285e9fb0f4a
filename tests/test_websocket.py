"""WebSocket players, spoken to by an independent client (the `websockets` package), beside TCP players."""

from __future__ import annotations

import json
import socket
import urllib.request
from typing import Any, Iterator

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from gameframe.demo import DEMO_ROOMS
from gameframe.service import RoomService
from gameframe.websocket import WebSocketGameFactory, WebSocketLink, text_frame
from tests.serving import Server, running_server


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server("--max-frame", "2000", "--allow-origin", "http://good.example") as s:
        yield s


def ws(server: Server, **kwargs: Any) -> ClientConnection:
    conn = connect(f"ws://127.0.0.1:{server.web_port}/ws", open_timeout=5, **kwargs)
    welcome = json.loads(conn.recv(timeout=5))
    assert welcome["action"] == "welcome"
    return conn


def recv(conn: ClientConnection, action: str) -> dict[str, Any]:
    """The next message with this action (skipping others), bounded in time."""
    for _ in range(50):
        message = json.loads(conn.recv(timeout=5))
        if message["action"] == action:
            return message
    raise AssertionError(f"no {action}")


class LineClient:
    """A raw TCP player: JSON Lines over a plain socket."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.file = self.sock.makefile("rwb")
        assert self.recv("welcome")

    def send(self, **message: Any) -> None:
        self.file.write(json.dumps(message).encode() + b"\n")
        self.file.flush()

    def recv(self, action: str) -> dict[str, Any]:
        for _ in range(50):
            message = json.loads(self.file.readline())
            if message["action"] == action:
                return message
        raise AssertionError(f"no {action}")

    def close(self) -> None:
        self.sock.close()


def test_tcp_and_websocket_players_chat_in_one_room(server: Server) -> None:
    browser = ws(server)
    tcp = LineClient(server.port)
    try:
        browser.send(json.dumps({"action": "create", "room": "chat", "id": 1}))
        joined = recv(browser, "joined")
        assert joined["id"] == 1
        tcp.send(action="join", room_id=joined["room_id"])
        assert tcp.recv("joined")["room_id"] == joined["room_id"]
        tcp.send(action="say", text="hello from tcp")
        said = recv(browser, "said")
        assert said["text"] == "hello from tcp"
        assert tcp.recv("said")["text"] == "hello from tcp"  # its own, too
        browser.send(json.dumps({"action": "say", "text": "hello from the browser"}))
        assert tcp.recv("said")["text"] == "hello from the browser"
    finally:
        browser.close()
        tcp.close()


def test_bad_frames_get_errors_and_the_connection_goes_on(server: Server) -> None:
    conn = ws(server)
    try:
        conn.send("not json")
        assert recv(conn, "error")["code"] == "bad_json"
        conn.send("[1, 2]")
        assert recv(conn, "error")["code"] == "bad_message"
        conn.send(json.dumps({"action": "dance", "id": "d"}))
        error = recv(conn, "error")
        assert (error["code"], error["id"]) == ("not_in_room", "d")
        conn.send(b'{"action": "list"}')
        assert recv(conn, "error")["code"] == "bad_message"
        conn.send(json.dumps({"action": "list"}))
        assert recv(conn, "rooms")["rooms"] is not None
    finally:
        conn.close()


def test_oversized_message_closes_only_that_connection(server: Server) -> None:
    other = ws(server)
    big = ws(server)
    try:
        big.send(json.dumps({"action": "say", "text": "x" * 5000}))
        assert recv(big, "error")["code"] == "frame_too_large"
        with pytest.raises(ConnectionClosed):
            big.recv(timeout=5)
        other.send(json.dumps({"action": "list", "id": 2}))
        assert recv(other, "rooms")["id"] == 2
    finally:
        other.close()
        big.close()


def test_origin_allow_list(server: Server) -> None:
    with pytest.raises(InvalidStatus) as refused:
        ws(server, origin="http://evil.example")
    assert refused.value.response.status_code == 403
    ws(server, origin="http://good.example").close()
    ws(server).close()  # non-browser clients send no Origin


def test_rooms_json_lists_types_and_rooms(server: Server) -> None:
    conn = ws(server)
    try:
        conn.send(json.dumps({"action": "create", "room": "arena", "options": {}}))
        room_id = recv(conn, "joined")["room_id"]
        with urllib.request.urlopen(f"http://127.0.0.1:{server.web_port}/rooms", timeout=5) as r:
            assert r.headers["content-type"] == "application/json"
            listing = json.load(r)
        assert {"chat", "tictactoe", "arena"} <= set(listing["types"])
        (room,) = [room for room in listing["rooms"] if room["room_id"] == room_id]
        assert room["room"] == "arena"
        assert room["players"] == 1
    finally:
        conn.close()


def test_demo_site_is_served(server: Server) -> None:
    base = f"http://127.0.0.1:{server.web_port}"
    with urllib.request.urlopen(base + "/", timeout=5) as r:
        assert b"<html" in r.read().lower()
    with urllib.request.urlopen(base + "/gameframe.js", timeout=5) as r:
        assert b"export" in r.read()


# -- in memory: liveness and the incoming cap, on a fake clock ----------------


class FakeChannel:
    def __init__(self) -> None:
        self.delivered: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self.delivered.append(data)


class FakeRequest:
    def __init__(self) -> None:
        self.channel = FakeChannel()


class FakeWebSocket:
    """Stands in for Twisted's WebSocket wire protocol."""

    def __init__(self) -> None:
        self.transport = StringTransport()
        self.transport.registerProducer(FakeChannel(), True)  # as the HTTP channel does
        self.pings = 0

    def ping(self, payload: bytes = b"") -> None:
        self.pings += 1

    def detachProducer(self) -> None:
        self.transport.unregisterProducer()

    def attachProducer(self, producer: Any) -> None:
        self.transport.registerProducer(producer, True)

    def loseConnection(self, code: int = 1000) -> None:
        self.transport.loseConnection()


def open_link(max_frame: int = 1000) -> tuple[Clock, WebSocketGameFactory, WebSocketLink, FakeWebSocket]:
    clock = Clock()
    factory = WebSocketGameFactory(
        RoomService(clock, DEMO_ROOMS), clock, max_frame=max_frame, ping_interval=10
    )
    factory.start()
    request = FakeRequest()
    link = factory.buildProtocol(request)  # type: ignore[arg-type]
    wire = FakeWebSocket()
    link.negotiationStarted(wire)  # type: ignore[arg-type]
    link.negotiationFinished()
    clock.advance(0)
    return clock, factory, link, wire


def test_a_peer_that_stops_answering_pings_is_dropped() -> None:
    clock, factory, link, wire = open_link()
    clock.advance(10)
    assert wire.pings == 1
    link.pongReceived(b"gf")
    clock.advance(10)
    assert wire.pings == 2
    assert not wire.transport.disconnecting
    clock.advance(10)  # no pong to the second ping
    assert wire.transport.disconnecting


def test_incoming_bytes_are_capped_before_a_message_completes() -> None:
    clock, factory, link, wire = open_link(max_frame=1000)
    request_channel = link._request.channel  # the counting wrapper sits here
    request_channel.dataReceived(b"x" * 60_000)
    assert not wire.transport.disconnecting
    request_channel.dataReceived(b"x" * 10_000)  # still no whole message
    clock.advance(0)
    assert wire.transport.disconnecting
    assert b"frame_too_large" in wire.transport.value()


def test_text_frames_are_rfc6455_server_frames() -> None:
    assert text_frame(b"hi") == b"\x81\x02hi"
    assert text_frame(b"x" * 200)[:4] == b"\x81\x7e\x00\xc8"
    assert text_frame(b"x" * 70000)[:2] == b"\x81\x7f"


def test_pongs_and_messages_share_one_ordered_stream(server: Server) -> None:
    """Twisted answers pings on the same write path as our frames: both arrive intact."""
    conn = ws(server)
    try:
        conn.send(json.dumps({"action": "create", "room": "chat"}))
        recv(conn, "joined")
        for n in range(20):
            conn.send(json.dumps({"action": "say", "text": f"line {n}"}))
            pong = conn.ping()
            # (The client stops reading while 16 messages wait unread: read each.)
            assert recv(conn, "said")["text"] == f"line {n}"
            assert pong.wait(timeout=5), "no pong"
    finally:
        conn.close()
