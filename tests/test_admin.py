"""The admin API (/admin) and /monitor, in memory: the real HTTP protocol over a StringTransport, on a fake clock; one process and a cluster."""

from __future__ import annotations

import json
from typing import Any, Callable

import attrs
import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.server import Site

from gameframe import Player, Room, action
from gameframe._limits import Limits
from gameframe.demo.arena import Arena
from gameframe.demo.chat import ChatRoom
from gameframe.demo.tictactoe import TicTacToe
from gameframe.service import RoomService
from gameframe.tap import Options
from gameframe.jsonpatch import apply
from gameframe.testing import ClusterHarness, FakeClient, Harness, host_of
from gameframe.web import make_site
from gameframe.websocket import WebSocketGameFactory

TOKEN = "s3cret-admin-token"
ROOMS = {"chat": ChatRoom, "tictactoe": TicTacToe, "arena": Arena}


@attrs.define
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def events(self) -> list[tuple[str, Any]]:
        """The server-sent events in the body so far: (event, data)."""
        found = []
        for block in self.body.decode().split("\n\n"):
            if block:
                fields = dict(line.split(": ", 1) for line in block.splitlines())
                found.append((fields["event"], json.loads(fields["data"])))
        return found


def parse(raw: bytes) -> Response:
    """One HTTP/1.1 response (chunked or not; a chunked one may be unfinished)."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
    if headers.get("transfer-encoding") != "chunked":
        return Response(status, headers, rest)
    body = b""
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        body += rest[:size]
        rest = rest[size + 2 :]
    return Response(status, headers, body)


class Web:
    """HTTP requests to a site, each on its own connection, after which the world settles."""

    def __init__(self, service: RoomService, clock: Any, settle: Callable[[], None], token: str | None = TOKEN) -> None:
        websocket = WebSocketGameFactory(service, clock, limits=Limits())
        self.site: Site = make_site(service, websocket, admin_token=token)
        self._settle = settle
        self.open: list[Any] = []  # the channels, closed at the end

    def send(self, method: str, path: str, body: Any = None, token: str | None = TOKEN, raw: bytes | None = None) -> StringTransport:
        channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
        transport = StringTransport()
        channel.makeConnection(transport)
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        headers = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n"
        if token is not None:
            headers += f"Authorization: Bearer {token}\r\n"
        channel.dataReceived(headers.encode() + b"\r\n" + data)
        self._settle()
        self.open.append(channel)
        transport.channel = channel  # type: ignore[attr-defined]
        return transport

    def request(self, method: str, path: str, body: Any = None, **kw: Any) -> Response:
        return parse(self.send(method, path, body, **kw).value())

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Response:
        return self.request("POST", path, body, **kw)

    def close(self) -> None:
        for channel in self.open:
            channel.connectionLost(Failure(ConnectionDone()))


@pytest.fixture
def kit() -> Harness:
    return Harness(ROOMS)


@pytest.fixture
def web(kit: Harness) -> Any:
    opened = Web(kit.service, kit.clock, kit.settle)
    yield opened
    opened.close()


def in_room(kit: Harness, room: str, count: int = 1, **options: Any) -> tuple[str, list[FakeClient]]:
    clients = [kit.connect() for _ in range(count)]
    joined = [c.join_or_create(room, **options) for c in clients]
    return joined[0]["room_id"], clients


# -- the token --------------------------------------------------------------------------


def test_without_a_token_admin_and_monitor_answer_404() -> None:
    kit = Harness(ROOMS)
    web = Web(kit.service, kit.clock, kit.settle, token=None)
    room_id, _ = in_room(kit, "chat")
    for path in ("/admin/rooms", f"/admin/rooms/{room_id}", "/monitor", "/monitor/", "/monitor/monitor.js"):
        assert web.get(path).status == 404, path
    assert web.post(f"/admin/rooms/{room_id}/dispose").status == 404
    assert room_id in kit.service.rooms
    web.close()


@pytest.mark.parametrize("token", [None, "wrong", TOKEN + "x", ""])
def test_a_missing_or_wrong_token_is_401(web: Web, kit: Harness, token: str | None) -> None:
    room_id, _ = in_room(kit, "chat")
    for method, path in (("GET", "/admin/rooms"), ("POST", f"/admin/rooms/{room_id}/dispose")):
        reply = web.request(method, path, token=token)
        assert reply.status == 401
        assert reply.headers["www-authenticate"].startswith("Bearer")
        assert reply.json()["error"] == "unauthorized"
    assert room_id in kit.service.rooms  # nothing happened


def test_the_monitor_page_is_there_with_a_token(web: Web) -> None:
    # The page itself, in the browser: tests/test_monitor_browser.py.
    page = web.get("/monitor")
    assert page.status in (301, 302)
    assert page.headers["location"].endswith("/monitor/")


def test_the_token_option_and_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAMEFRAME_ADMIN_TOKEN", "from-env")
    options = Options()
    options.parseOptions([])
    assert options["admin-token"] == "from-env"
    options = Options()
    options.parseOptions(["--admin-token", "from-option"])
    assert options["admin-token"] == "from-option"  # the option wins
    monkeypatch.delenv("GAMEFRAME_ADMIN_TOKEN")
    options = Options()
    options.parseOptions([])
    assert options["admin-token"] is None


# -- reading -------------------------------------------------------------------------------


def test_the_listing_shows_every_room_private_and_locked_ones_too(web: Web, kit: Harness) -> None:
    chat_id, _ = in_room(kit, "chat", 2)
    arena_id, _ = in_room(kit, "arena")
    kit.room(chat_id).private = True
    reply = web.get("/admin/rooms")
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    listing = reply.json()
    assert listing["unreachable"] == []
    rooms = {r["room_id"]: r for r in listing["rooms"]}
    assert rooms[chat_id] == {
        "room_id": chat_id,
        "room": "chat",
        "node": "local",
        "players": 2,
        "max_players": ChatRoom.max_players,
        "locked": False,
        "full": False,
        "private": True,
        "metadata": {},
        "tick_rate": None,
        "tick_overruns": 0,
    }
    assert rooms[arena_id]["tick_rate"] == Arena.tick_rate


def test_a_room_in_detail_players_and_state(web: Web, kit: Harness) -> None:
    room_id, (alice, bob) = in_room(kit, "arena", 2)
    bob.disconnect()  # the arena holds a dropped player's seat
    kit.advance(0.1)  # a patch beat: alice's mirror is current
    room = web.get(f"/admin/rooms/{room_id}").json()
    assert room["room"] == "arena"
    seats = {s["player_id"]: s for s in room["seats"]}
    assert seats[alice.player_id]["status"] == "connected"
    assert seats[bob.player_id]["status"] == "held"
    assert set(room["state"]["players"]) == {alice.player_id, bob.player_id}
    assert room["state"] == alice.state  # what the players mirror


def test_an_unknown_room_or_path_and_a_wrong_method(web: Web) -> None:
    missing = web.get("/admin/rooms/nope")
    assert (missing.status, missing.json()["error"]) == (404, "room_not_found")
    assert web.post("/admin/rooms/nope/lock").json()["error"] == "room_not_found"
    unknown = web.get("/admin/whatever")
    assert (unknown.status, unknown.json()["error"]) == (404, "not_found")
    wrong = web.post("/admin/rooms")
    assert (wrong.status, wrong.json()["error"], wrong.headers["allow"]) == (405, "method_not_allowed", "GET")
    assert web.get("/admin/rooms/x/kick").headers["allow"] == "POST"


# -- steering ---------------------------------------------------------------------------------


def test_kick_the_player_gets_left_kicked(web: Web, kit: Harness) -> None:
    room_id, (alice, bob) = in_room(kit, "chat", 2)
    reply = web.post(f"/admin/rooms/{room_id}/kick", {"player_id": bob.player_id})
    assert reply.status == 200
    assert reply.json() == {"room_id": room_id, "player_id": bob.player_id, "kicked": True}
    assert bob.last("left")["reason"] == "kicked"
    assert bob.player.room is None
    assert list(kit.room(room_id).players) == [alice.player_id]


def test_kick_errors(web: Web, kit: Harness) -> None:
    room_id, _ = in_room(kit, "chat")
    nobody = web.post(f"/admin/rooms/{room_id}/kick", {"player_id": "nobody"})
    assert (nobody.status, nobody.json()["error"]) == (404, "player_not_found")
    for body in ({}, {"player_id": 5}):
        bad = web.post(f"/admin/rooms/{room_id}/kick", body)
        assert (bad.status, bad.json()["error"]) == (400, "bad_arguments")
    not_json = web.request("POST", f"/admin/rooms/{room_id}/kick", raw=b"{nope")
    assert (not_json.status, not_json.json()["error"]) == (400, "bad_arguments")


def test_broadcast_reaches_every_player(web: Web, kit: Harness) -> None:
    room_id, clients = in_room(kit, "chat", 3)
    message = {"action": "announce", "text": "maintenance in 5 minutes"}
    reply = web.post(f"/admin/rooms/{room_id}/broadcast", message)
    assert reply.json() == {"room_id": room_id, "recipients": 3}
    for client in clients:
        assert client.last("announce") == message
    for body in ([1], {"text": "no action"}, {"action": 3}):
        bad = web.post(f"/admin/rooms/{room_id}/broadcast", body)
        assert (bad.status, bad.json()["error"]) == (400, "bad_arguments")


def test_lock_keeps_matchmaking_out_and_unlock_lets_it_in(web: Web, kit: Harness) -> None:
    room_id, _ = in_room(kit, "chat")
    assert web.post(f"/admin/rooms/{room_id}/lock").json()["locked"] is True
    late = kit.connect()
    assert late.join_or_create("chat")["room_id"] != room_id
    assert late.request("leave")["action"] == "left"
    assert late.join(room_id)["code"] == "room_locked"
    assert web.post(f"/admin/rooms/{room_id}/unlock").json()["locked"] is False
    assert late.join(room_id)["room_id"] == room_id


def test_dispose_ends_the_room(web: Web, kit: Harness) -> None:
    room_id, (alice,) = in_room(kit, "chat")
    reply = web.post(f"/admin/rooms/{room_id}/dispose")
    assert reply.json() == {"room_id": room_id, "disposed": True}
    assert alice.last("left")["reason"] == "disposed"
    assert room_id not in kit.service.rooms
    assert web.get(f"/admin/rooms/{room_id}").status == 404


# -- the live stream ------------------------------------------------------------------------------


def test_the_event_stream_follows_the_room_until_it_ends(web: Web, kit: Harness) -> None:
    room_id, (alice,) = in_room(kit, "arena")
    stream = web.send("GET", f"/admin/rooms/{room_id}/events")
    start = parse(stream.value())
    assert start.status == 200
    assert start.headers["content-type"] == "text/event-stream"
    (room, first), (state, full) = start.events()
    assert (room, state) == ("room", "state")
    assert first["seats"][0]["player_id"] == alice.player_id
    assert full["seq"] == 0

    mirror = full["state"]
    bob = kit.connect()
    bob.join(room_id)
    alice.send("move", x=0, y=0)
    kit.advance(1)
    events = parse(stream.value()).events()
    seq = 0
    for event, data in events[2:]:
        if event == "patch":
            assert data["seq"] == seq + 1
            seq = data["seq"]
            mirror = apply(mirror, data["patch"])
    assert mirror == alice.state  # the operator sees what the players see
    assert [data for event, data in events if event == "room"][-1]["players"] == 2

    web.post(f"/admin/rooms/{room_id}/dispose")
    assert parse(stream.value()).events()[-1] == ("end", {"room_id": room_id})
    assert stream.value().endswith(b"0\r\n\r\n")  # the response is finished


def test_a_closed_stream_stops_watching(web: Web, kit: Harness) -> None:
    room_id, (alice,) = in_room(kit, "arena")
    stream = web.send("GET", f"/admin/rooms/{room_id}/events")
    stream.channel.connectionLost(Failure(ConnectionDone()))  # type: ignore[attr-defined]
    before = stream.value()
    alice.send("move", x=0, y=0)
    kit.advance(1)
    assert stream.value() == before
    assert host_of(kit.room(room_id))._watchers == []


# -- a cluster --------------------------------------------------------------------------------------


class Counter(Room):
    def on_create(self, options: dict[str, Any]) -> None:
        self.state = {"count": 0}

    @action
    def bump(self, player: Player) -> None:
        self.state["count"] += 1


@pytest.fixture
def cluster() -> Any:
    kit = ClusterHarness({"chat": ChatRoom, "counter": Counter}, nodes=["n1", "n2"])
    kit.advance(1)  # a heartbeat: each node knows the other is alive
    yield kit
    for node in kit.nodes.values():
        node.service.stopService()
        node.node.stopService()
    kit.settle()


def test_cluster_listing_shows_the_rooms_of_every_node(cluster: ClusterHarness) -> None:
    n1, n2 = cluster.node("n1"), cluster.node("n2")
    web = Web(n1.service, cluster.clock, cluster.settle)
    here = n1.connect().create("chat")["room_id"]
    there_client = n2.connect()
    there = there_client.create("counter")["room_id"]
    cluster.rooms()[there].private = True
    listing = web.get("/admin/rooms").json()
    nodes = {r["room_id"]: r["node"] for r in listing["rooms"]}
    assert nodes == {here: "n1", there: "n2"}
    assert listing["unreachable"] == []
    web.close()


def test_cluster_operations_reach_a_room_on_another_node(cluster: ClusterHarness) -> None:
    n1, n2 = cluster.node("n1"), cluster.node("n2")
    web = Web(n1.service, cluster.clock, cluster.settle)
    alice, bob = n2.connect(), n1.connect()  # bob plays from n1 in n2's room
    room_id = alice.create("counter")["room_id"]
    assert cluster.rooms()[room_id] is n2.service.rooms[room_id]
    bob.join(room_id)
    bob.request("bump")

    room = web.get(f"/admin/rooms/{room_id}").json()
    assert (room["node"], room["state"]) == ("n2", {"count": 1})
    seats = {s["player_id"]: s for s in room["seats"]}
    assert (seats[bob.player_id]["transport"], seats[bob.player_id]["address"]) == ("node", "n1")

    web.post(f"/admin/rooms/{room_id}/broadcast", {"action": "announce", "text": "hi"})
    assert bob.last("announce")["text"] == "hi" and alice.last("announce")["text"] == "hi"
    assert web.post(f"/admin/rooms/{room_id}/lock").json()["locked"] is True
    nobody = web.post(f"/admin/rooms/{room_id}/kick", {"player_id": "nobody"})
    assert (nobody.status, nobody.json()["error"]) == (404, "player_not_found")
    assert web.post(f"/admin/rooms/{room_id}/kick", {"player_id": bob.player_id}).status == 200
    assert bob.last("left")["reason"] == "kicked"
    stream = web.get(f"/admin/rooms/{room_id}/events")
    assert (stream.status, stream.json()["error"]) == (409, "not_on_this_node")
    assert web.post(f"/admin/rooms/{room_id}/dispose").json()["disposed"] is True
    assert alice.last("left")["reason"] == "disposed"
    assert web.get(f"/admin/rooms/{room_id}").status == 404
    web.close()


def test_cluster_a_node_that_does_not_answer_is_unavailable(cluster: ClusterHarness) -> None:
    n1, n2 = cluster.node("n1"), cluster.node("n2")
    web = Web(n1.service, cluster.clock, cluster.settle)
    room_id = n2.connect().create("counter")["room_id"]
    cluster.kill("n2")
    lock = web.send("POST", f"/admin/rooms/{room_id}/lock")
    listing = web.send("GET", "/admin/rooms")
    assert lock.value() == b"" and listing.value() == b""  # waiting for n2
    cluster.advance(5)
    reply = parse(lock.value())
    assert (reply.status, reply.json()["error"]) == (503, "unavailable")
    assert parse(listing.value()).json() == {"rooms": [], "unreachable": ["n2"]}
    web.close()
