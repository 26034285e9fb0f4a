"""The Twisted client (gameframe.txclient) against a real GameFactory listening on 127.0.0.1."""

from __future__ import annotations

import json
from typing import Any, AsyncIterator, Callable, TypeVar

import attrs
import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IAddress, IListeningPort
from twisted.internet.testing import StringTransport

from gameframe.client import ClientError, Disconnected
from gameframe.demo import DEMO_ROOMS
from gameframe.protocol import GameFactory, GameProtocol
from gameframe.service import RoomService
from gameframe.txclient import GameClientFactory, GameClientProtocol, connect

TIMEOUT = 10.0
T = TypeVar("T")


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def bounded(waiting: Deferred[T]) -> Deferred[T]:
    """Fail with TimeoutError instead of hanging."""
    return waiting.addTimeout(TIMEOUT, _reactor())


class TrackingFactory(GameFactory):
    """A GameFactory that knows its open connections, to wait for them to close."""

    def __init__(self, service: RoomService, clock: Any) -> None:
        super().__init__(service, clock)
        self.lost: dict[GameProtocol, Deferred[None]] = {}

    def buildProtocol(self, addr: IAddress | None) -> GameProtocol:
        protocol = super().buildProtocol(addr)
        lost: Deferred[None] = Deferred()
        self.lost[protocol] = lost
        connection_lost = protocol.connectionLost

        def tracked(reason: Any) -> None:
            connection_lost(reason)
            self.lost.pop(protocol, None)
            lost.callback(None)

        protocol.connectionLost = tracked  # type: ignore[method-assign]
        return protocol


@attrs.define
class Server:
    service: RoomService
    factory: TrackingFactory
    port: IListeningPort
    clients: list[GameClientProtocol] = attrs.Factory(list)

    @property
    def endpoint(self) -> str:
        return f"tcp:host=127.0.0.1:port={self.port.getHost().port}"

    async def connect(self) -> GameClientProtocol:
        client = await bounded(connect(_reactor(), self.endpoint))
        self.clients.append(client)
        return client


@pytest_twisted.async_yield_fixture
async def server() -> AsyncIterator[Server]:
    reactor = _reactor()
    service = RoomService(reactor, DEMO_ROOMS)
    service.startService()
    factory = TrackingFactory(service, reactor)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    running = Server(service, factory, port)
    try:
        yield running
    finally:
        # Stop listening, dispose the rooms and close every connection, then
        # wait until both ends of every connection are closed.
        await bounded(maybeDeferred(port.stopListening))
        await bounded(service.stopService())
        for client in running.clients:
            client.close()
        waiting = [c.disconnected for c in running.clients]
        waiting += list(factory.lost.values())
        await bounded(DeferredList(waiting))


def until(client: GameClientProtocol, check: Callable[[], bool]) -> Deferred[None]:
    """Fires (bounded) once C{check()} is true, checked after each message."""
    done: Deferred[None] = Deferred()
    if check():
        done.callback(None)
        return done
    previous = client.on_message

    def hook(message: dict[str, Any]) -> None:
        if previous is not None:
            previous(message)
        if not done.called and check():
            client.on_message = previous
            done.callback(None)

    client.on_message = hook
    return bounded(done)


def avatar(client: GameClientProtocol, player_id: str | None) -> dict[str, Any]:
    tree: Any = client.state.state
    if not isinstance(tree, dict) or player_id is None:
        return {}
    found: dict[str, Any] = tree["players"].get(player_id, {})
    return found


def at(client: GameClientProtocol, player_id: str | None, x: float, y: float) -> bool:
    found = avatar(client, player_id)
    return (found.get("x"), found.get("y")) == (x, y)


def nearby(client: GameClientProtocol, player_id: str | None) -> tuple[float, float]:
    """A point a short walk from where the player is (moves finish quickly)."""
    found = avatar(client, player_id)
    x, y = found["x"], found["y"]
    return (x + 30 if x + 30 <= 800 else x - 30, y + 30 if y + 30 <= 600 else y - 30)


async def code_of(waiting: Deferred[Any]) -> str:
    """The code of the ClientError a request failed with."""
    with pytest.raises(ClientError) as raised:
        await bounded(waiting)
    return raised.value.code


@pytest_twisted.ensureDeferred
async def test_connect_fires_after_the_welcome(server: Server) -> None:
    client = await server.connect()
    assert isinstance(client, GameClientProtocol)
    assert client.welcomed.called
    assert client.player_id in server.service.players
    assert client.room_id is None and client.state.state is None


@pytest_twisted.ensureDeferred
async def test_connect_with_an_endpoint_object(server: Server) -> None:
    endpoint = TCP4ClientEndpoint(_reactor(), "127.0.0.1", server.port.getHost().port)
    client = await bounded(connect(_reactor(), endpoint, GameClientFactory()))
    server.clients.append(client)
    assert client.player_id in server.service.players


@pytest_twisted.ensureDeferred
async def test_join_or_create_and_mirrors_agree(server: Server) -> None:
    alice, bob = await server.connect(), await server.connect()
    joined = await bounded(alice.join_or_create("arena"))
    assert joined["action"] == "joined" and joined["room"] == "arena"
    assert alice.room_id == joined["room_id"] and alice.token == joined["token"]
    assert (await bounded(bob.join_or_create("arena")))["room_id"] == alice.room_id
    room = server.service.rooms[alice.room_id]
    assert set(room.players) == {alice.player_id, bob.player_id}

    seen: list[str] = []
    bob.on_message = lambda message: seen.append(message["action"])
    await until(alice, lambda: avatar(alice, bob.player_id) != {})
    (ax, ay), (bx, by) = nearby(alice, alice.player_id), nearby(alice, bob.player_id)
    alice.send("move", x=ax, y=ay)
    bob.send("move", x=bx, y=by)
    for client in (alice, bob):
        await until(client, lambda: at(client, alice.player_id, ax, ay))
        await until(client, lambda: at(client, bob.player_id, bx, by))
    await until(alice, lambda: alice.state.seq == bob.state.seq)
    await until(bob, lambda: alice.state.seq == bob.state.seq)
    assert alice.state.state == bob.state.state
    assert "patch" in seen  # on_message sees every message
    # The mirror is the server's state, as JSON.
    assert avatar(alice, alice.player_id)["x"] == room.state.players[alice.player_id].x


@pytest_twisted.ensureDeferred
async def test_without_the_mirror_state_and_patches_pass_unapplied(server: Server) -> None:
    alice = await server.connect()
    factory = GameClientFactory(mirror=False)
    bare = await bounded(connect(_reactor(), server.endpoint, factory))
    server.clients.append(bare)
    seen: list[str] = []
    bare.on_message = lambda message: seen.append(message["action"])
    joined = await bounded(alice.create("arena"))
    assert (await bounded(bare.join(joined["room_id"])))["action"] == "joined"
    # The session is kept as ever: only the state is not.
    assert bare.room_id == joined["room_id"] and bare.room == "arena"
    assert bare.token is not None
    await until(alice, lambda: avatar(alice, bare.player_id) != {})
    x, y = nearby(alice, alice.player_id)
    alice.send("move", x=x, y=y)
    await until(alice, lambda: at(alice, alice.player_id, x, y))
    await until(bare, lambda: "patch" in seen)
    assert "state" in seen  # on_message sees them all
    assert bare.state.state is None and bare.state.seq is None
    assert not bare.state.stale


@pytest_twisted.ensureDeferred
async def test_a_compact_client_mirrors_what_a_json_one_does(server: Server) -> None:
    alice = await server.connect()
    factory = GameClientFactory(encoding="compact")
    small = await bounded(connect(_reactor(), server.endpoint, factory))
    server.clients.append(small)
    kinds: set[str] = set()
    small.on_message = lambda message: kinds.update(k for k in ("ops", "patch") if k in message)
    joined = await bounded(alice.create("arena"))
    await bounded(small.join(joined["room_id"]))
    await until(alice, lambda: avatar(alice, small.player_id) != {})
    x, y = nearby(alice, alice.player_id)
    alice.send("move", x=x, y=y)
    for client in (alice, small):
        await until(client, lambda: at(client, alice.player_id, x, y))
    await until(alice, lambda: alice.state.seq == small.state.seq)
    await until(small, lambda: alice.state.seq == small.state.seq)
    assert alice.state.state == small.state.state
    assert kinds == {"ops"}


@pytest.mark.parametrize("mirror", [True, False])
def test_a_gap_in_the_patches_asks_for_sync_only_when_mirroring(mirror: bool) -> None:
    client = GameClientProtocol(mirror=mirror)
    transport = StringTransport()
    client.makeConnection(transport)
    received = [
        {"action": "welcome", "player_id": "p1"},
        {"action": "joined", "player_id": "p1", "room_id": "r1", "room": "arena", "token": "t"},
        {"action": "state", "seq": 1, "state": {"n": 1}},
        {"action": "patch", "seq": 2, "patch": [{"op": "replace", "path": "/n", "value": 2}]},
        {"action": "patch", "seq": 4, "patch": []},  # seq 3 is missing
    ]
    client.dataReceived(b"".join(json.dumps(m).encode() + b"\n" for m in received))
    sent = [json.loads(line) for line in transport.value().splitlines()]
    assert client.room_id == "r1" and client.token == "t"
    if mirror:
        assert client.state.state == {"n": 2} and client.state.stale
        assert sent == [{"action": "sync"}]
    else:
        assert client.state.state is None and client.state.seq is None
        assert not client.state.stale
        assert sent == []


@pytest_twisted.ensureDeferred
async def test_requests_carry_ids(server: Server) -> None:
    client = await server.connect()
    replies: list[dict[str, Any]] = []
    client.on_message = replies.append
    await bounded(client.create("arena"))
    first, second = client.request("move", x=1, y=2), client.request("list")
    one, two = await bounded(first), await bounded(second)
    assert one["action"] == "result" and one["result"] is None
    assert two["action"] == "rooms"
    assert isinstance(one["id"], int) and one["id"] != two["id"]
    assert [r["room_id"] for r in two["rooms"]] == [client.room_id]
    assert await bounded(client.call("move", x=3, y=4)) is None
    rooms = await bounded(client.list_rooms("arena"))
    assert [r["room_id"] for r in rooms] == [client.room_id]
    ids = [m["id"] for m in replies if "id" in m]
    assert len(ids) == len(set(ids)) == 5


@pytest_twisted.ensureDeferred
async def test_error_replies_fail_with_client_error(server: Server) -> None:
    client = await server.connect()
    assert await code_of(client.join_or_create("no-such-type")) == "unknown_room_type"
    assert await code_of(client.join("no-such-room")) == "room_not_found"
    assert await code_of(client.leave()) == "not_in_room"
    assert await code_of(client.call("move", x=1, y=1)) == "not_in_room"
    assert await code_of(client.reconnect("bogus")) == "invalid_token"
    await bounded(client.create("arena"))
    assert await code_of(client.create("arena")) == "already_in_room"
    assert await code_of(client.call("fly")) == "unknown_action"
    assert await code_of(client.call("move", x="far", y=1)) == "bad_arguments"
    left = await bounded(client.leave())
    assert left["action"] == "left" and left["reason"] == "leave"
    assert client.room_id is None and client.state.state is None


@pytest_twisted.ensureDeferred
async def test_reconnect_with_the_token_keeps_the_seat(server: Server) -> None:
    alice, bob = await server.connect(), await server.connect()
    joined = await bounded(alice.create("arena"))
    await bounded(bob.join(joined["room_id"]))
    await bounded(alice.close())
    assert alice.close_code == "closed"
    await until(bob, lambda: avatar(bob, alice.player_id).get("connected") is False)

    back = await server.connect()
    assert back.player_id != alice.player_id
    again = await bounded(back.reconnect(joined["token"]))
    assert back.player_id == again["player_id"] == alice.player_id
    assert back.room_id == joined["room_id"]
    await until(back, lambda: back.state.state is not None)
    await until(bob, lambda: avatar(bob, alice.player_id).get("connected") is True)
    x, y = nearby(back, back.player_id)
    back.send("move", x=x, y=y)
    await until(bob, lambda: at(bob, alice.player_id, x, y))


@pytest_twisted.ensureDeferred
async def test_closing_fails_pending_requests(server: Server) -> None:
    client = await server.connect()
    pending = client.request("list")
    closed = client.close()
    with pytest.raises(Disconnected) as raised:
        await bounded(pending)
    assert raised.value.code == "closed"
    await bounded(closed)
    with pytest.raises(Disconnected):
        client.send("list")
    assert await code_of(client.request("list")) == "closed"


@pytest_twisted.ensureDeferred
async def test_the_server_saying_why_it_closes(server: Server) -> None:
    alice, other = await server.connect(), await server.connect()
    await bounded(alice.create("arena"))
    token = alice.token
    assert token is not None
    await bounded(other.reconnect(token))  # takes alice's seat
    await bounded(alice.disconnected)
    assert alice.close_code == "replaced"
    assert other.player_id == alice.player_id


@pytest_twisted.ensureDeferred
async def test_server_shutdown_fires_disconnected(server: Server) -> None:
    client = await server.connect()
    await bounded(client.join_or_create("chat"))
    left: list[dict[str, Any]] = []
    client.on_message = lambda m: left.append(m) if m["action"] == "left" else None
    await bounded(server.service.stopService())
    await bounded(client.disconnected)
    assert client.close_code == "server_shutdown"
    assert [m["reason"] for m in left] == ["shutdown"]
    assert client.room_id is None
