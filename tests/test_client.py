"""The plain-socket client (gameframe.client.GameClient) against a real server on 127.0.0.1."""

from __future__ import annotations

import time
from typing import Any, Iterator

import orjson
import pytest

from gameframe.client import ClientError, Disconnected, GameClient, _LineBuffer
from tests._server import RunningServer, free_port

TIMEOUT = 10.0


@pytest.fixture
def connect(gameframe_server: RunningServer) -> Iterator[Any]:
    """Connect clients to the server; all are closed at the end of the test."""
    clients: list[GameClient] = []

    def connect() -> GameClient:
        client = GameClient.connect("127.0.0.1", gameframe_server.port, timeout=TIMEOUT)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


def avatar(client: GameClient, player_id: str | None) -> dict[str, Any] | None:
    """A player's avatar in this client's mirrored arena state."""
    tree: Any = client.state.state
    if not isinstance(tree, dict) or player_id is None:
        return None
    found: dict[str, Any] | None = tree["players"].get(player_id)
    return found


def at(client: GameClient, player_id: str | None, x: float, y: float) -> bool:
    """Whether this client's mirror shows the player at (x, y)."""
    found = avatar(client, player_id)
    return found is not None and (found["x"], found["y"]) == (x, y)


def nearby(client: GameClient, player_id: str | None) -> tuple[float, float]:
    """A point a short walk from where the player is (moves finish quickly)."""
    found = avatar(client, player_id)
    assert found is not None
    x, y = found["x"], found["y"]
    return (x + 30 if x + 30 <= 800 else x - 30, y + 30 if y + 30 <= 600 else y - 30)


def wait_state(client: GameClient, check: Any) -> None:
    """Poll until the client's mirror satisfies C{check(client)} (bounded)."""
    if not check(client):
        client.wait_for(lambda message: check(client), TIMEOUT)


def test_connect_waits_for_the_welcome(connect: Any) -> None:
    client = connect()
    assert client.connected
    assert isinstance(client.player_id, str) and client.player_id
    welcome = client.poll()[0]
    assert welcome["action"] == "welcome"
    assert welcome["server"] == "gameframe"
    assert welcome["player_id"] == client.player_id
    assert client.room_id is None and client.token is None
    assert client.state.state is None


def test_connect_refused() -> None:
    with pytest.raises(OSError):
        GameClient.connect("127.0.0.1", free_port(), timeout=TIMEOUT)


def test_poll_returns_nothing_at_once_on_an_idle_connection(connect: Any) -> None:
    client = connect()
    client.poll()  # the welcome
    assert client.socket is not None
    assert client.socket.gettimeout() == 0.0  # non-blocking
    assert client.poll() == []
    assert client.poll() == []
    assert client.connected
    # A blocking wait with no time left looks once, then gives up.
    with pytest.raises(TimeoutError):
        client.wait_for("never-sent", 0)


def test_join_or_create_the_arena(connect: Any) -> None:
    client = connect()
    joined = client.join_or_create("arena", timeout=TIMEOUT)
    assert joined["action"] == "joined"
    assert joined["room"] == "arena"
    assert joined["player_id"] == client.player_id
    assert client.room_id == joined["room_id"]
    assert client.room == "arena"
    assert client.token == joined["token"]
    assert client.player_id in joined["players"]
    wait_state(client, lambda c: avatar(c, c.player_id) is not None)
    me = avatar(client, client.player_id)
    assert me is not None and me["connected"] is True
    # Everything received, including what the blocking call read, reaches poll().
    actions = [message["action"] for message in client.poll()]
    assert actions[:3] == ["welcome", "joined", "state"]


def test_mirrors_agree_after_moves(connect: Any) -> None:
    alice, bob = connect(), connect()
    room_id = alice.create("arena", timeout=TIMEOUT)["room_id"]
    assert bob.join(room_id, timeout=TIMEOUT)["room_id"] == room_id
    wait_state(alice, lambda c: avatar(c, bob.player_id) is not None)

    (ax, ay), (bx, by) = nearby(alice, alice.player_id), nearby(alice, bob.player_id)
    alice.send("move", x=ax, y=ay)
    bob.send("move", x=bx, y=by)
    for client in (alice, bob):
        wait_state(client, lambda c: at(c, alice.player_id, ax, ay))
        wait_state(client, lambda c: at(c, bob.player_id, bx, by))
    # Both took the same patches: once both have the last one, they agree.
    wait_state(alice, lambda c: c.state.seq == bob.state.seq)
    wait_state(bob, lambda c: c.state.seq == alice.state.seq)
    assert alice.state.state == bob.state.state
    assert not alice.state.stale and not bob.state.stale
    assert set(alice.state.state["players"]) == {alice.player_id, bob.player_id}


def test_request_ids_and_replies(connect: Any) -> None:
    client = connect()
    client.create("arena", timeout=TIMEOUT)
    first = client.request("move", x=1, y=2)
    second = client.request("list", room="arena")
    assert first != second
    # reply() reads nothing itself: nothing before a poll.
    assert client.reply(first) is None
    reply = client.wait_for(lambda m: m.get("id") == second, TIMEOUT)
    assert reply["action"] == "rooms"
    assert client.room_id in [room["room_id"] for room in reply["rooms"]]
    result = client.reply(first)
    assert result == {"action": "result", "id": first, "result": None}
    assert client.reply(first) is None  # once
    assert client.reply(second) == reply
    assert client.call("move", x=5, y=5, timeout=TIMEOUT) is None
    rooms = client.list_rooms("arena", timeout=TIMEOUT)
    assert client.room_id in [room["room_id"] for room in rooms]


def test_error_replies_raise_client_error_with_the_code(connect: Any) -> None:
    client = connect()

    def code_of(call: Any, *args: Any, **kwargs: Any) -> str:
        with pytest.raises(ClientError) as raised:
            call(*args, timeout=TIMEOUT, **kwargs)
        assert raised.value.reply is not None
        assert raised.value.reply["action"] == "error"
        return raised.value.code

    assert code_of(client.join_or_create, "no-such-type") == "unknown_room_type"
    assert code_of(client.join, "no-such-room") == "room_not_found"
    assert code_of(client.leave) == "not_in_room"
    assert code_of(client.call, "move", x=1, y=1) == "not_in_room"
    client.create("arena", timeout=TIMEOUT)
    assert code_of(client.create, "arena") == "already_in_room"
    assert code_of(client.call, "fly") == "unknown_action"
    assert code_of(client.call, "move", x="far", y=1) == "bad_arguments"
    # The session goes on after errors.
    assert client.leave(timeout=TIMEOUT)["action"] == "left"
    assert client.room_id is None and client.state.state is None
    # A non-blocking request gets its error as a reply.
    request_id = client.request("reconnect", token="bogus")
    reply = client.wait_for(lambda m: m.get("id") == request_id, TIMEOUT)
    assert (reply["action"], reply["code"]) == ("error", "invalid_token")


def test_reconnect_keeps_the_player_and_its_seat(connect: Any) -> None:
    alice, bob = connect(), connect()
    joined = alice.create("arena", timeout=TIMEOUT)
    bob.join(joined["room_id"], timeout=TIMEOUT)
    player_id, room_id = alice.player_id, alice.room_id

    alice.close()
    assert not alice.connected
    with pytest.raises(Disconnected):
        alice.send("move", x=1, y=1)
    # The room holds the seat: bob sees alice disconnected, not gone.
    wait_state(bob, lambda c: (avatar(c, player_id) or {}).get("connected") is False)

    again = alice.reconnect(timeout=TIMEOUT)
    assert again["action"] == "joined"
    assert alice.connected
    assert alice.player_id == again["player_id"] == player_id
    assert alice.room_id == room_id
    assert alice.token == again["token"] != joined["token"]
    wait_state(bob, lambda c: (avatar(c, player_id) or {}).get("connected") is True)
    # The seat really is alice's: her moves reach the room.
    wait_state(alice, lambda c: avatar(c, player_id) is not None)
    x, y = nearby(alice, player_id)
    alice.send("move", x=x, y=y)
    wait_state(bob, lambda c: at(c, player_id, x, y))
    wait_state(alice, lambda c: at(c, player_id, x, y))


def test_reconnect_with_a_stale_token_fails(connect: Any) -> None:
    client = connect()
    client.create("arena", timeout=TIMEOUT)
    client.leave(timeout=TIMEOUT)
    with pytest.raises(ClientError) as raised:
        client.reconnect(timeout=TIMEOUT)  # no token after leaving
    assert raised.value.code == "invalid_token"
    joined = client.create("arena", timeout=TIMEOUT)
    other = connect()
    # The token is only good while the seat is held: after leave() it is revoked.
    token = joined["token"]
    client.leave(timeout=TIMEOUT)
    request_id = other.request("reconnect", token=token)
    assert other.wait_for(lambda m: m.get("id") == request_id, TIMEOUT)["code"] == (
        "invalid_token"
    )


def test_the_server_closing_fails_blocking_calls(connect: Any) -> None:
    alice, other = connect(), connect()
    alice.create("arena", timeout=TIMEOUT)
    # Another connection takes alice's seat with her token: the server
    # closes hers with a disconnect saying why.
    taken = other.request("reconnect", token=alice.token)
    joined = other.wait_for(lambda m: m.get("id") == taken, TIMEOUT)
    assert joined["action"] == "joined"
    assert other.player_id == alice.player_id
    assert other.room_id == alice.room_id
    with pytest.raises(Disconnected) as raised:
        alice.wait_for("never-sent", TIMEOUT)
    assert raised.value.code == "replaced"
    assert not alice.connected
    assert alice.close_code == "replaced"
    assert alice.poll()[-1]["action"] == "disconnect"
    with pytest.raises(Disconnected):
        alice.leave(timeout=TIMEOUT)


def test_the_mirror_asks_for_a_sync_after_a_gap(connect: Any) -> None:
    client = connect()
    client.create("arena", timeout=TIMEOUT)
    wait_state(client, lambda c: c.state.seq == 0)
    assert [m["action"] for m in client.poll()][-1] == "state"
    # Pretend a patch was lost: the next one does not follow.
    client.state.seq = -5
    x, y = nearby(client, client.player_id)
    client.send("move", x=x, y=y)
    # The client sends sync by itself; the server answers with a full state.
    state = client.wait_for("state", TIMEOUT)
    assert state["seq"] >= 1 and "id" not in state
    assert not client.state.stale
    wait_state(client, lambda c: at(c, c.player_id, x, y))


def test_line_buffer_joins_partial_lines() -> None:
    lines = _LineBuffer(max_line=100)
    assert lines.feed(b'{"action": "a", "n"') == []
    assert lines.feed(b": 1}\n\n{\"action\"") == [{"action": "a", "n": 1}]
    assert lines.feed(b': "b"}\r\nnot json\n[1]\n{"action": "c"}\n') == [
        {"action": "b"},
        {"action": "c"},
    ]
    with pytest.raises(Disconnected) as raised:
        lines.feed(b"x" * 101)
    assert raised.value.code == "frame_too_large"


def test_line_buffer_parses_a_line_in_many_small_pieces_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed: list[bytes] = []
    loads = orjson.loads

    def counting_loads(line: Any) -> Any:
        parsed.append(bytes(line))
        return loads(line)

    monkeypatch.setattr(orjson, "loads", counting_loads)  # the client's orjson
    big = {"action": "state", "cells": list(range(5000)), "name": "x" * 3000}
    line = orjson.dumps(big) + b"\n"
    small = b'{"action":"after"}\n'
    stream = line + small + line
    lines = _LineBuffer(max_line=len(line))
    got: list[dict[str, Any]] = []
    for start in range(0, len(stream), 7):
        piece = stream[start : start + 7]
        messages = lines.feed(piece)
        if messages:
            # A message comes out with the piece that ends its line, not before.
            assert b"\n" in piece
        got.extend(messages)
    assert got == [big, {"action": "after"}, big]
    assert parsed == [line[:-1], small[:-1], line[:-1]]

    # The limit still holds for a line that grows a piece at a time.
    parsed.clear()
    with pytest.raises(Disconnected) as raised:
        for start in range(0, len(line), 7):
            lines.feed(b"x" + line[start : start + 7])
    assert raised.value.code == "frame_too_large"
    assert parsed == []
    # After the refusal the buffer starts afresh.
    assert lines.feed(b"\n" + small) == [{"action": "after"}]


def test_ping_measures_a_round_trip(connect: Any) -> None:
    client = connect()
    assert client.ping() >= 0.0
    client.join_or_create("chat")
    assert client.ping() >= 0.0  # in a room too


def test_poll_keeps_a_quiet_connection_alive(gameframe_server: RunningServer) -> None:
    # A keepalive this short makes every poll() send a ping: the pongs show it did.
    with GameClient.connect("127.0.0.1", gameframe_server.port, keepalive=1e-9) as client:
        pongs: list[Any] = []
        for _ in range(1000):
            pongs += [m for m in client.poll() if m["action"] == "pong"]
            if pongs:
                break
            client._wait_readable(time.monotonic() + 1)
        assert pongs, "poll() sent no ping"


def test_authenticate_without_auth_on_the_server_is_unauthorized(connect: Any) -> None:
    client = connect()
    with pytest.raises(ClientError) as raised:
        client.authenticate("anything")
    assert raised.value.code == "unauthorized"


def test_compact_and_json_clients_mirror_the_same_arena(gameframe_server: RunningServer) -> None:
    """A client that asks for compact patches gets them, and its mirror agrees with a JSON one's; so after a reconnect."""
    alice = GameClient.connect("127.0.0.1", gameframe_server.port, timeout=TIMEOUT, encoding="compact")
    bob = GameClient.connect("127.0.0.1", gameframe_server.port, timeout=TIMEOUT)
    try:
        room_id = alice.create("arena", timeout=TIMEOUT)["room_id"]
        bob.join(room_id, timeout=TIMEOUT)
        for step in range(2):
            wait_state(alice, lambda c: avatar(c, bob.player_id) is not None)
            x, y = nearby(alice, bob.player_id)
            bob.send("move", x=x, y=y)
            kinds: set[str] = set()

            def seen(message: dict[str, Any]) -> bool:
                kinds.update(k for k in ("ops", "patch") if k in message)
                return at(alice, bob.player_id, x, y)

            alice.wait_for(seen, TIMEOUT)
            wait_state(bob, lambda c: at(c, bob.player_id, x, y))
            wait_state(alice, lambda c: c.state.seq == bob.state.seq)
            wait_state(bob, lambda c: c.state.seq == alice.state.seq)
            assert alice.state.state == bob.state.state
            assert kinds == {"ops"}
            if step == 0:
                alice.close()
                alice.reconnect(timeout=TIMEOUT)  # asks for compact again
    finally:
        alice.close()
        bob.close()
