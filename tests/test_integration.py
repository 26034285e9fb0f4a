"""The real thing: `twistd -n gameframe` on 127.0.0.1, spoken to with plain sockets."""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests._server import HOST, LineClient, RunningServer, running_server, twistd, twistd_env

MAX_FRAME = 1024
TIMEOUT = 10.0  # seconds: the bound on anything one step may wait for


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(
        tmp_path_factory.mktemp("twistd"), "--max-frame", str(MAX_FRAME), web=False
    ) as running:
        yield running


class Clients:
    """Opens clients on the shared server and closes them after the test."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.opened: list[LineClient] = []

    def new(self) -> LineClient:
        client = self.server.connect()
        self.opened.append(client)
        return client


@pytest.fixture
def clients(server: RunningServer) -> Iterator[Clients]:
    opened = Clients(server)
    try:
        yield opened
    finally:
        for client in opened.opened:
            client.close()


def test_welcome(server: RunningServer, clients: Clients) -> None:
    client = clients.new()
    assert client.welcome["server"] == "gameframe"
    assert isinstance(client.welcome["version"], str)
    assert client.player_id


def test_two_clients_chat(clients: Clients) -> None:
    alice, bob = clients.new(), clients.new()
    joined = alice.request("create", room="chat")
    assert joined["action"] == "joined"
    room_id = joined["room_id"]
    joined = bob.request("join", room_id=room_id)
    assert joined["action"] == "joined"
    assert set(joined["players"]) == {alice.player_id, bob.player_id}
    alice.expect("player_joined", player_id=bob.player_id)

    alice.send(action="say", text="hi bob")
    for client in (alice, bob):
        said = client.expect("said", text="hi bob")
        assert said["player_id"] == alice.player_id
    bob.send(action="say", text="héllo ☃")
    for client in (alice, bob):
        assert client.expect("said", text="héllo ☃")["player_id"] == bob.player_id

    bob.request("leave")
    alice.expect("player_left", player_id=bob.player_id)


def test_two_clients_play_tictactoe_to_a_draw(clients: Clients) -> None:
    first, second = clients.new(), clients.new()
    room_id = first.request("create", room="tictactoe")["room_id"]
    assert second.request("join", room_id=room_id)["action"] == "joined"
    start = first.expect("start")
    assert second.expect("start") == start
    x = first if start["turn"] == first.player_id else second
    o = second if x is first else first
    assert start["marks"] == {x.player_id: "X", o.player_id: "O"}

    # A wrong move on the way: the game goes on.
    assert o.request("place", cell=0)["code"] == "not_your_turn"
    moves = [(x, 4), (o, 0), (x, 2), (o, 6), (x, 3), (o, 5), (x, 1), (o, 7), (x, 8)]
    for n, (player, cell) in enumerate(moves):
        if n == 1:
            assert o.request("place", cell=4)["code"] == "cell_taken"
        assert player.request("place", cell=cell)["action"] == "result"
        for client in (x, o):
            placed = client.expect("placed", cell=cell)
            assert placed["player_id"] == player.player_id
    # X holds 1 2 3 4 8, O holds 0 5 6 7: a full board and no line.
    for client in (x, o):
        over = client.expect("game_over")
        assert "winner" in over and over["winner"] is None
        assert over["board"] == ["O", "X", "X", "X", "X", "O", "O", "O", "X"]
    assert x.request("place", cell=0)["action"] == "error"


def test_tictactoe_to_a_win(clients: Clients) -> None:
    first, second = clients.new(), clients.new()
    room_id = first.request("create", room="tictactoe")["room_id"]
    second.request("join", room_id=room_id)
    turn = first.expect("start")["turn"]
    x, o = (first, second) if turn == first.player_id else (second, first)
    for player, cell in [(x, 0), (o, 3), (x, 1), (o, 4), (x, 2)]:
        assert player.request("place", cell=cell)["action"] == "result"
    for client in (x, o):
        assert [client.expect("placed", cell=c)["cell"] for c in (0, 3, 1, 4, 2)]
        assert client.expect("game_over")["winner"] == x.player_id


BAD_INPUT: list[tuple[bytes, str]] = [
    (b"{not json", "bad_json"),
    (b'{"action": "list"} trailing', "bad_json"),
    (b"[1, 2, 3]", "bad_message"),
    (b'{"no_action": 1}', "bad_message"),
    (b'{"action": ""}', "bad_message"),
    (b'{"action": "place", "cell": 1}', "not_in_room"),
    (b'{"action": "leave"}', "not_in_room"),
    (b'{"action": "join", "room_id": "no-such-room"}', "room_not_found"),
    (b'{"action": "join", "room_id": 12}', "bad_arguments"),
    (b'{"action": "join_or_create", "room": "golf"}', "unknown_room_type"),
    (b'{"action": "join_or_create", "room": "chat", "options": "fast"}', "bad_arguments"),
]

BAD_IN_ROOM: list[tuple[bytes, str]] = [
    (b'{"action": "dance"}', "unknown_action"),
    (b'{"action": "say"}', "bad_arguments"),
    (b'{"action": "say", "text": 5}', "bad_arguments"),
    (b'{"action": "say", "text": ""}', "bad_arguments"),
    (b'{"action": "create", "room": "chat"}', "already_in_room"),
]


def test_bad_input_on_a_live_connection(clients: Clients) -> None:
    client = clients.new()
    for line, code in BAD_INPUT:
        client.write(line + b"\n")
        reply = client.expect("error")
        assert reply["code"] == code, (line, reply)
        assert reply["message"]
    # An id is echoed even when the message is otherwise unusable.
    client.write(b'{"action": 7, "id": "bad-1"}\n')
    reply = client.expect("error")
    assert (reply["code"], reply["id"]) == ("bad_message", "bad-1")

    assert client.request("join_or_create", room="chat")["action"] == "joined"
    for line, code in BAD_IN_ROOM:
        client.write(line + b"\n")
        reply = client.expect("error")
        assert reply["code"] == code, (line, reply)
    # After all of that the connection is open and usable.
    client.send(action="say", text="still here")
    assert client.expect("said", text="still here")["player_id"] == client.player_id


def test_room_full(clients: Clients) -> None:
    a, b, c = clients.new(), clients.new(), clients.new()
    room_id = a.request("create", room="tictactoe")["room_id"]
    b.request("join", room_id=room_id)
    reply = c.request("join", room_id=room_id)
    assert reply["code"] == "room_full"
    assert c.request("join_or_create", room="tictactoe")["room_id"] != room_id


def test_frame_too_large_closes_only_that_connection(clients: Clients) -> None:
    alice, mallory = clients.new(), clients.new()
    room_id = alice.request("create", room="chat")["room_id"]
    mallory.request("join", room_id=room_id)
    mallory.write(b'{"action": "say", "text": "' + b"x" * (MAX_FRAME * 2) + b'"}\n')
    error = mallory.expect("error")
    assert error["code"] == "frame_too_large"
    mallory.assert_closed()
    alice.expect("player_left", player_id=mallory.player_id)
    alice.send(action="say", text="good riddance")
    assert alice.expect("said", text="good riddance")["player_id"] == alice.player_id


def test_unterminated_frame_too_large(clients: Clients) -> None:
    client = clients.new()
    client.write(b"{" + b" " * (MAX_FRAME + 10))  # no newline at all
    assert client.expect("error")["code"] == "frame_too_large"
    client.assert_closed()


def test_bad_utf8_closes_the_connection(clients: Clients) -> None:
    bystander, client = clients.new(), clients.new()
    client.write(b'{"action": "list", "x": "\xff"}\n')
    assert client.expect("error")["code"] == "bad_utf8"
    client.assert_closed()
    assert bystander.request("list")["action"] == "rooms"


def test_graceful_shutdown_tells_the_players(tmp_path: Path) -> None:
    with running_server(tmp_path, web=False) as server:
        player, idle = server.connect(), server.connect()
        room_id = player.request("create", room="chat")["room_id"]
        server.process.send_signal(signal.SIGTERM)
        left = player.expect("left")
        assert (left["room_id"], left["reason"]) == (room_id, "shutdown")
        for client in (player, idle):
            assert client.expect("disconnect")["code"] == "server_shutdown"
            client.assert_closed()
            client.close()
        # twistd ends the way it was told to: a clean stop, or by the signal.
        assert server.process.wait(TIMEOUT) in (0, -signal.SIGTERM)


def run_twistd(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [twistd(), *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 2,
        env=twistd_env(),
    )


def test_a_port_in_use_fails_the_start_loudly(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_twistd(
            tmp_path, "-n", "--pidfile=", "gameframe", "--port", f"tcp:{port}:interface={HOST}",
            "--web", "none",
        )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Address already in use" in output
    assert str(port) in output


@pytest.mark.parametrize(
    "args, complaint",
    [
        (["--room", "nonsense"], "NAME=module:Class"),
        (["--room", "x=no_such_module_here:Room"], "cannot import"),
        (["--max-frame", "lots"], "--max-frame"),
        (["--port", "carrier-pigeon:7"], "--port"),
        (["--no-such-option"], "no-such-option"),
    ],
)
def test_bad_options_exit_non_zero_with_usage(tmp_path: Path, args: list[str], complaint: str) -> None:
    result = run_twistd(tmp_path, "-n", "--pidfile=", "gameframe", *args)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "--help" in output
    assert complaint in output
    assert "Traceback" not in output


def test_twistd_help_lists_gameframe_from_another_directory(tmp_path: Path) -> None:
    result = run_twistd(tmp_path, "--help")
    assert result.returncode == 0
    lines = [line.split() for line in result.stdout.splitlines()]
    assert any(words[:1] == ["gameframe"] for words in lines), result.stdout
    result = run_twistd(tmp_path, "gameframe", "--help")
    assert result.returncode == 0
    assert "--room" in result.stdout and "--port" in result.stdout


def test_the_error_arrives_even_while_the_client_keeps_sending(clients: Clients) -> None:
    """
    The server closes only its side and drains what the client still sends,
    so the kernel does not reset the connection and lose the error.
    """
    client = clients.new()
    junk = b"x" * (256 * 1024)  # far past the limit, no newline
    client.sock.setblocking(False)
    sent = 0
    try:
        while sent < len(junk):
            sent += client.sock.send(junk[sent:])
    except BlockingIOError:
        pass  # the server is not reading any more of it; fine
    client.sock.settimeout(TIMEOUT)
    assert client.expect("error")["code"] == "frame_too_large"
    client.assert_closed()
