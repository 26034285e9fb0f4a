"""A deploy loses nothing: real servers with --store sqlite stopped (SIGTERM) or killed (kill -9) mid-game, started again, and the games finished."""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

from gameframe.client import GameClient
from gameframe.codec import Message
from tests._server import (
    HOST,
    LineClient,
    RunningServer,
    free_port,
    poll,
    start_server,
    start_server_at,
    stop_process,
)


def store_args(tmp_path: Path, *more: str) -> tuple[str, ...]:
    return ("--store", f"sqlite:{tmp_path / 'rooms.db'}", *more)


def saved(tmp_path: Path, room_id: str) -> dict[str, Any] | None:
    """The room as the store has it now (read beside the server, as a backup tool would)."""
    with sqlite3.connect(tmp_path / "rooms.db") as db:
        row = db.execute("SELECT data FROM saved_rooms WHERE room_id = ?", (room_id,)).fetchone()
    return None if row is None else json.loads(row[0])


def back(server: RunningServer, token: str, room_id: str) -> LineClient:
    """A player reconnecting to the new server with its token: back in its room."""
    client = server.connect()
    joined = client.request("reconnect", token=token)
    assert joined["action"] == "joined", joined
    assert joined["room_id"] == room_id
    return client


def told_to_retry(client: LineClient) -> None:
    """The last thing a player hears of a stopping server with a store: come back."""
    last = client.expect("disconnect")
    assert last["code"] == "server_shutdown"
    assert last["retry"] is True
    client.assert_closed()
    assert not [m for m in client.unread if m["action"] == "left"]


def test_a_tictactoe_game_and_an_arena_survive_sigterm_and_a_new_start(tmp_path: Path) -> None:
    server = start_server(tmp_path, *store_args(tmp_path))
    try:
        alice, bob = server.connect(), server.connect()
        game = alice.request("join_or_create", room="tictactoe")
        tokens = {alice.player_id: game["token"]}
        tokens[bob.player_id] = bob.request("join_or_create", room="tictactoe")["token"]
        start = alice.expect("start")
        x, o = (alice, bob) if start["turn"] == alice.player_id else (bob, alice)
        for client, cell in [(x, 0), (o, 3), (x, 1)]:
            assert client.request("place", cell=cell)["action"] == "result"
        carol = server.connect()
        arena = carol.request("join_or_create", room="arena")
        tokens[carol.player_id] = arena["token"]
        carol.send(action="move", x=5, y=5)
        stop_process(server.process)  # SIGTERM, as a deploy does
        for client in (x, o, carol):
            told_to_retry(client)
            client.close()
    finally:
        stop_process(server.process)

    again = start_server(tmp_path, *store_args(tmp_path))
    try:
        x2 = back(again, tokens[x.player_id], game["room_id"])
        o2 = back(again, tokens[o.player_id], game["room_id"])
        for client in (x2, o2):
            state = client.expect("state")["state"]
            assert state["board"] == ["X", "X", None, "O", None, None, None, None, None]
            assert state["turn"] == o.player_id
        assert o2.request("place", cell=4)["action"] == "result"
        assert x2.request("place", cell=2)["action"] == "result"
        for client in (x2, o2):
            assert client.expect("game_over")["winner"] == x.player_id
        carol2 = back(again, tokens[carol.player_id], arena["room_id"])
        assert carol.player_id in carol2.expect("state")["state"]["players"]
    finally:
        stop_process(again.process)


def test_after_kill_9_the_last_periodic_snapshot_comes_back(tmp_path: Path) -> None:
    server = start_server(tmp_path, *store_args(tmp_path))
    try:
        alice = server.connect()
        joined = alice.request("join_or_create", room="arena")
        room_id, token = joined["room_id"], joined["token"]
        alice.send(action="move", x=40, y=30)

        def there() -> bool:
            room = saved(tmp_path, room_id)
            avatar = room and room["room"]["state"]["players"].get(alice.player_id)
            return bool(avatar) and (avatar["x"], avatar["y"]) == (40, 30)

        poll(server, "the periodic snapshot with the avatar there", there)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
        alice.close()
    finally:
        stop_process(server.process)

    again = start_server(tmp_path, *store_args(tmp_path))
    try:
        alice2 = back(again, token, room_id)
        avatar = alice2.expect("state")["state"]["players"][alice.player_id]
        assert (avatar["x"], avatar["y"]) == (40, 30)
        alice2.send(action="move", x=41, y=30)
        alice2.expect("patch")
    finally:
        stop_process(again.process)



def test_the_python_client_takes_its_seat_back_by_itself(tmp_path: Path) -> None:
    """A deploy as a player sees it: the Python client reconnects with backoff and plays on."""
    port, web_port = free_port(), free_port()
    endpoints = (f"tcp:{port}:interface={HOST}", port, f"tcp:{web_port}:interface={HOST}", web_port)
    server = start_server_at(tmp_path, *endpoints, *store_args(tmp_path))
    clients: list[GameClient] = []
    try:
        alice, bob = GameClient.connect(HOST, port), GameClient.connect(HOST, port)
        clients += [alice, bob]
        alice.join_or_create("tictactoe")
        bob.join_or_create("tictactoe")
        start = alice.wait_for("start")
        x, o = (alice, bob) if start["turn"] == alice.player_id else (bob, alice)
        x.call("place", cell=4)
        for client in (x, o):
            client.wait_for("placed")
            client.poll()  # what came before the restart is read
        stop_process(server.process)
        server = start_server_at(tmp_path, *endpoints, *store_args(tmp_path))
        back: list[Message] = []
        for client in (x, o):
            client.on_reconnected = back.append
            client.wait_for("joined", timeout=30)
            client.wait_for("state")
        assert len(back) == 2
        for client in (x, o):
            assert client.state.state["board"][4] == "X"
            assert client.state.state["turn"] == o.player_id
        o.call("place", cell=0)
        for client in (x, o):
            client.wait_for(lambda m: m["action"] == "placed" and m["cell"] == 0)
    finally:
        for client in clients:
            client.close()
        stop_process(server.process)
