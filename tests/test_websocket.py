"""WebSocket players, spoken to by an independent client (the `websockets` package), beside TCP players."""

from __future__ import annotations

import json
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
from tests._server import RunningServer, running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(
        tmp_path_factory.mktemp("websocket-server"),
        "--max-frame", "2000", "--allow-origin", "http://good.example",
    ) as s:  # fmt: skip
        yield s


def ws(server: RunningServer, **kwargs: Any) -> ClientConnection:
    # Each test closes what it opens (in a finally), without a with block.
    conn = connect(server.ws_url, open_timeout=5, **kwargs).__enter__()
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


def test_tcp_and_websocket_players_chat_in_one_room(server: RunningServer) -> None:
    browser = ws(server)
    tcp = server.connect()
    try:
        browser.send(json.dumps({"action": "create", "room": "chat", "id": 1}))
        joined = recv(browser, "joined")
        assert joined["id"] == 1
        tcp.send(action="join", room_id=joined["room_id"])
        assert tcp.expect("joined")["room_id"] == joined["room_id"]
        tcp.send(action="say", text="hello from tcp")
        said = recv(browser, "said")
        assert said["text"] == "hello from tcp"
        assert tcp.expect("said")["text"] == "hello from tcp"  # its own, too
        browser.send(json.dumps({"action": "say", "text": "hello from the browser"}))
        assert tcp.expect("said")["text"] == "hello from the browser"
    finally:
        browser.close()
        tcp.close()


def test_bad_frames_get_errors_and_the_connection_goes_on(server: RunningServer) -> None:
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


def test_oversized_message_closes_only_that_connection(server: RunningServer) -> None:
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


def test_permessage_deflate_is_never_negotiated(server: RunningServer) -> None:
    """The client offers compression (websockets does by default); the 101 declines it."""
    conn = ws(server, compression="deflate")
    try:
        request = conn.request
        assert request is not None
        assert "permessage-deflate" in request.headers["Sec-WebSocket-Extensions"]
        response = conn.response
        assert response is not None and response.status_code == 101
        assert "Sec-WebSocket-Extensions" not in response.headers
        conn.send(json.dumps({"action": "list", "id": "plain"}))
        assert recv(conn, "rooms")["id"] == "plain"
    finally:
        conn.close()


def test_origin_allow_list(server: RunningServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        ws(server, origin="http://evil.example")
    assert refused.value.response.status_code == 403
    ws(server, origin="http://good.example").close()
    ws(server).close()  # non-browser clients send no Origin


def test_rooms_json_lists_types_and_rooms(server: RunningServer) -> None:
    conn = ws(server)
    try:
        conn.send(json.dumps({"action": "create", "room": "arena", "options": {}}))
        room_id = recv(conn, "joined")["room_id"]
        with urllib.request.urlopen(f"{server.base_url}/rooms", timeout=5) as r:
            assert r.headers["content-type"] == "application/json"
            listing = json.load(r)
        assert {"chat", "tictactoe", "arena"} <= set(listing["types"])
        (room,) = [room for room in listing["rooms"] if room["room_id"] == room_id]
        assert room["room"] == "arena"
        assert room["players"] == 1
    finally:
        conn.close()


def test_demo_site_is_served(server: RunningServer) -> None:
    base = server.base_url
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


def client_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A masked client frame (the mask is zero, so the payload reads as is)."""
    size = len(payload)
    first = (0x80 if fin else 0) | opcode
    if size < 126:
        head = bytes((first, 0x80 | size))
    elif size < 65536:
        head = bytes((first, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((first, 0x80 | 127)) + size.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload


def test_a_message_declared_too_large_is_cut_off_before_it_arrives() -> None:
    clock, factory, link, wire = open_link(max_frame=1000)
    channel = link._request.channel  # the reader sits in front of Twisted's parser
    channel.dataReceived(client_frame(1, b"x" * 5000)[:100])  # just the start
    clock.advance(0)
    assert wire.transport.disconnecting
    assert b"frame_too_large" in wire.transport.value()
    assert channel.delivered == []  # none of it reached Twisted's buffer


def test_fragments_add_up_and_pings_do_not_count() -> None:
    clock, factory, link, wire = open_link(max_frame=1000)
    channel = link._request.channel
    for _ in range(100):  # 12 KB of pings: not a message
        channel.dataReceived(client_frame(9, b"p" * 120))
    channel.dataReceived(client_frame(1, b"x" * 600, fin=False))
    channel.dataReceived(client_frame(0, b"x" * 300, fin=True))  # 900: fine
    assert not wire.transport.disconnecting
    channel.dataReceived(client_frame(1, b"x" * 600, fin=False))
    channel.dataReceived(client_frame(9, b"p"))
    channel.dataReceived(client_frame(0, b"x" * 600, fin=False))  # 1200 > 1000
    clock.advance(0)
    assert wire.transport.disconnecting


def test_frame_reader_reads_headers_split_anywhere() -> None:
    from gameframe._wsframes import FrameReader

    stream = client_frame(1, b"a" * 70000) + client_frame(2, b"b" * 200)
    texts: list[str] = []
    raw: list[bytes] = []
    reader = FrameReader(70000, lambda t: texts.append(t) is None, lambda r: raw.append(r) is None)
    assert all(reader.feed(stream[i : i + 7]) for i in range(0, len(stream), 7))
    assert not reader.partial
    assert b"".join(raw) == stream  # split across reads: Twisted's to parse
    assert reader.feed(client_frame(1, b"c"))
    assert texts == ["c"]  # whole in its read: parsed here
    declared_over = FrameReader(69999, lambda t: True, lambda r: True)
    assert declared_over.feed(stream[:14]) is False


def test_text_frames_are_rfc6455_server_frames() -> None:
    assert text_frame(b"hi") == b"\x81\x02hi"
    assert text_frame(b"x" * 200)[:4] == b"\x81\x7e\x00\xc8"
    assert text_frame(b"x" * 70000)[:2] == b"\x81\x7f"


def test_pongs_and_messages_share_one_ordered_stream(server: RunningServer) -> None:
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
