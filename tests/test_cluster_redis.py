"""
Three real gameframe nodes on one real redis-server, all on 127.0.0.1: they
act as one server to every client, through a node's death and Redis'.
"""

from __future__ import annotations

import contextlib
import json
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import attrs
import pytest

from gameframe.mirror import StateMirror
from tests._redis import RunningRedis
from tests._server import (
    HOST,
    LineClient,
    RunningServer,
    free_port,
    start_server_at,
    poll,
    stop_process,
    wait_for_log,
)

NODES = ("a", "b", "c")
# How long a test waits for the cluster to notice something (a death: lease 5 s + a beat).
NOTICE = 20.0

ROOMS_MODULE = '''
from gameframe import Room, action


class Chat10(Room):
    """A chat room of at most 10."""

    max_players = 10

    @action
    def say(self, player, text: str) -> None:
        self.broadcast({"action": "said", "player_id": player.id, "text": text})
'''


@attrs.frozen
class Cluster:
    redis: RunningRedis
    nodes: dict[str, RunningServer]

    def connect(self, node: str) -> LineClient:
        return self.nodes[node].connect()

    def node_of(self, room_id: str) -> str:
        """The node running a room, as any node's listing says."""
        for name, server in self.nodes.items():
            if server.process.poll() is None:
                with contextlib.closing(server.connect()) as client:
                    for room in client.request("list")["rooms"]:
                        if room["room_id"] == room_id:
                            node: str = room["node"]
                            return node
        raise AssertionError(f"no node lists {room_id}")


@contextlib.contextmanager
def three_nodes(redis: RunningRedis, directory: Path, *more: str) -> Iterator[Cluster]:
    (directory / "rooms10.py").write_text(ROOMS_MODULE)
    nodes: dict[str, RunningServer] = {}
    try:
        for name in NODES:
            port, web_port = free_port(), free_port()
            nodes[name] = start_server_at(
                directory,
                f"tcp:{port}:interface={HOST}",
                port,
                f"tcp:{web_port}:interface={HOST}",
                web_port,
                "--redis", redis.url,
                "--node", name,
                "--room", "chat=gameframe.demo.chat:ChatRoom",
                "--room", "tictactoe=gameframe.demo.tictactoe:TicTacToe",
                "--room", "arena=gameframe.demo.arena:Arena",
                "--room", "chat10=rooms10:Chat10",
                *more,
            )
        for name, server in nodes.items():
            wait_for_log(server, f"node {name}: in the cluster")
        yield Cluster(redis, nodes)
    finally:
        for server in nodes.values():
            stop_process(server.process)


@pytest.fixture
def cluster(redis_server: RunningRedis, tmp_path: Path) -> Iterator[Cluster]:
    with three_nodes(redis_server, tmp_path) as running:
        yield running


def play(first: LineClient, second: LineClient, cells: list[int]) -> None:
    start = first.expect("start")
    second.expect("start")
    x = first if start["turn"] == first.player_id else second
    o = second if x is first else first
    for i, cell in enumerate(cells):
        mover = x if i % 2 == 0 else o
        reply = mover.request("place", cell=cell)
        assert reply["action"] == "result", reply


def test_chat_across_three_nodes_over_tcp_and_websocket(cluster: Cluster) -> None:
    from websockets.sync.client import connect as ws_connect

    alice, bob = cluster.connect("a"), cluster.connect("b")
    room_id = alice.request("join_or_create", room="chat")["room_id"]
    assert bob.request("join_or_create", room="chat")["room_id"] == room_id
    with ws_connect(cluster.nodes["c"].ws_url, open_timeout=10) as carol:
        assert json.loads(carol.recv(timeout=10))["action"] == "welcome"
        carol.send(json.dumps({"action": "join_or_create", "room": "chat", "id": "j"}))
        joined = next(
            m for m in (json.loads(carol.recv(timeout=10)) for _ in range(10)) if m.get("id") == "j"
        )
        assert joined["room_id"] == room_id
        bob.send(action="say", text="hello from b")
        for client in (alice, bob):
            assert client.expect("said", text="hello from b")["player_id"] == bob.player_id
        said = next(
            m for m in (json.loads(carol.recv(timeout=10)) for _ in range(10))
            if m["action"] == "said"
        )
        assert said["text"] == "hello from b"


def test_a_whole_tictactoe_game_with_the_players_on_different_nodes(cluster: Cluster) -> None:
    alice, bob = cluster.connect("a"), cluster.connect("c")
    room_id = alice.request("join_or_create", room="tictactoe")["room_id"]
    assert bob.request("join_or_create", room="tictactoe")["room_id"] == room_id
    play(alice, bob, [0, 3, 1, 4, 2])
    for client in (alice, bob):
        assert client.expect("game_over")["reason"] == "line"


def test_fifty_concurrent_join_or_create_across_three_nodes(cluster: Cluster) -> None:
    clients = [cluster.connect(NODES[i % 3]) for i in range(50)]
    for client in clients:  # every request is out before any reply is read
        client.send(action="join_or_create", room="chat10", id="j")
    joined = [client.expect("joined") for client in clients]
    sizes: dict[str, int] = {}
    for reply in joined:
        sizes[reply["room_id"]] = sizes.get(reply["room_id"], 0) + 1
    assert len(sizes) in (5, 6), sizes
    assert max(sizes.values()) <= 10
    assert sum(size == 10 for size in sizes.values()) >= 4
    # Every node lists them all, with the node each runs on.
    for name, server in cluster.nodes.items():
        with contextlib.closing(server.connect()) as lister:
            listed = {
                r["room_id"]: r for r in lister.request("list", room="chat10")["rooms"]
            }
        assert set(listed) == set(sizes), name
        assert {r["node"] for r in listed.values()} <= set(NODES)
        with urllib.request.urlopen(server.base_url + "/rooms", timeout=10) as response:
            rooms = json.loads(response.read())["rooms"]
        assert {r["room_id"] for r in rooms if r["room"] == "chat10"} == set(sizes)


def test_kill_the_rooms_node_players_elsewhere_get_room_lost(cluster: Cluster) -> None:
    starter = cluster.connect("a")
    room_id = starter.request("create", room="arena")["room_id"]
    home = cluster.node_of(room_id)
    elsewhere = next(n for n in NODES if n != home)
    far = cluster.connect(elsewhere)
    assert far.request("join", room_id=room_id)["action"] == "joined"
    cluster.nodes[home].process.send_signal(signal.SIGKILL)
    cluster.nodes[home].process.wait(timeout=10)
    far.sock.settimeout(NOTICE)
    assert far.expect("left", room_id=room_id)["reason"] == "room_lost"
    # It plays on elsewhere.
    assert far.request("join_or_create", room="chat")["action"] == "joined"


def test_kill_a_players_node_it_reconnects_elsewhere_and_keeps_its_seat(cluster: Cluster) -> None:
    starter = cluster.connect("a")
    room_id = starter.request("create", room="arena")["room_id"]
    home = cluster.node_of(room_id)
    doomed, third = [n for n in NODES if n != home]
    traveller = cluster.connect(doomed)
    joined = traveller.request("join", room_id=room_id)
    assert joined["action"] == "joined"
    cluster.nodes[doomed].process.send_signal(signal.SIGKILL)
    cluster.nodes[doomed].process.wait(timeout=10)
    # The room's node notices the death and holds the seat (the arena holds 30 s).
    wait_for_log(cluster.nodes[home], f"node {doomed} died", timeout=NOTICE)
    back = cluster.connect(third)
    reply = back.request("reconnect", token=joined["token"])
    assert reply["action"] == "joined", reply
    assert reply["player_id"] == traveller.player_id
    assert reply["room_id"] == room_id
    assert back.request("move", x=1, y=1)["action"] == "result"


def follow(client: LineClient, mirror: StateMirror, player_id: str, x: float, y: float) -> None:
    """Apply the client's state patches to its mirror until the player is at (x, y); each one compact."""
    while (mirror.state["players"][player_id]["x"], mirror.state["players"][player_id]["y"]) != (x, y):
        patch = client.expect("patch")
        assert "ops" in patch and "patch" not in patch, patch
        mirror.handle(patch)
        assert not mirror.stale


def test_compact_patches_to_a_player_on_another_node_and_after_its_reconnect(cluster: Cluster) -> None:
    alice = cluster.connect("a")
    room_id = alice.request("create", room="arena")["room_id"]
    home = cluster.node_of(room_id)
    elsewhere, third = [n for n in NODES if n != home]
    bob = cluster.connect(elsewhere)
    joined = bob.request("join", room_id=room_id, encoding="compact")
    assert joined["action"] == "joined", joined
    mirror = StateMirror()
    mirror.handle(bob.expect("state"))
    start = mirror.state["players"][alice.player_id]
    x = start["x"] + 25 if start["x"] < 700 else start["x"] - 25
    alice.send(action="move", x=x, y=start["y"])
    follow(bob, mirror, alice.player_id, x, start["y"])
    # Bob's connection drops; he takes his seat back through the third node, compact again.
    bob.close()
    back = cluster.connect(third)
    assert back.request("reconnect", token=joined["token"], encoding="compact")["action"] == "joined"
    mirror = StateMirror()
    mirror.handle(back.expect("state"))
    y = start["y"] + 25 if start["y"] < 500 else start["y"] - 25
    alice.send(action="move", x=x, y=y)
    follow(back, mirror, alice.player_id, x, y)


def test_restart_redis_mid_game(cluster: Cluster) -> None:
    alice, bob = cluster.connect("a"), cluster.connect("b")
    room_id = alice.request("join_or_create", room="tictactoe")["room_id"]
    bob.request("join_or_create", room="tictactoe")
    home = cluster.node_of(room_id)
    local, remote = (alice, bob) if home == "a" else (bob, alice)
    if home not in ("a", "b"):
        local, remote = None, alice  # both remote: the room is on c
    start = alice.expect("start")
    bob.expect("start")
    cluster.redis.stop()
    # The remote player's actions are refused, its seat is kept...
    reply = poll(
        cluster.nodes[home],
        "actions across nodes are refused while Redis is away",
        lambda: (r := remote.request("place", cell=8))["action"] == "error"
        and r["code"] == "unavailable" and r,
    )
    assert reply["code"] == "unavailable"
    if local is not None:
        # ...while the room plays on for the players on its node.
        assert local.request("place", cell=42)["code"] == "bad_arguments"
    # New connections still get a welcome.
    with contextlib.closing(cluster.connect("c")) as newcomer:
        assert newcomer.welcome["action"] == "welcome"
    cluster.redis.start()
    # Forwarding resumes without a restart; the game goes on to its end.
    x = alice if start["turn"] == alice.player_id else bob
    o = bob if x is alice else alice
    for i, cell in enumerate([0, 3, 1, 4, 2]):
        mover = x if i % 2 == 0 else o
        reply = poll(
            cluster.nodes[home],
            "forwarding resumes once Redis is back",
            lambda: (r := mover.request("place", cell=cell)).get("code") != "unavailable" and r,
        )
        assert reply["action"] == "result", reply
    assert x.expect("game_over")["winner"] == x.player_id
    # Every node's rooms are listed again (once the lister's node is back too:
    # until then it lists its own rooms only).
    with contextlib.closing(cluster.connect("c")) as lister:
        poll(
            cluster.nodes["c"],
            "the room is listed from every node again",
            lambda: room_id in {r["room_id"] for r in lister.request("list")["rooms"]},
        )


def test_readyz_wants_redis_and_healthz_does_not(redis_server: RunningRedis, tmp_path: Path) -> None:
    def status(server: RunningServer, path: str) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(server.base_url + path, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    port, web_port = free_port(), free_port()
    redis_server.stop()  # a node whose Redis is not there
    server = start_server_at(
        tmp_path, f"tcp:{port}:interface={HOST}", port,
        f"tcp:{web_port}:interface={HOST}", web_port,
        "--redis", redis_server.url, "--node", "lonely",
    )
    try:
        assert status(server, "/healthz") == (200, {"status": "alive"})
        code, body = status(server, "/readyz")
        assert code == 503 and any("Redis" in reason for reason in body["reasons"])
        redis_server.start()
        poll(server, "ready once Redis is there", lambda: status(server, "/readyz")[0] == 200, NOTICE)
    finally:
        stop_process(server.process)


def saved_room(redis: RunningRedis, room_id: str) -> dict[str, Any] | None:
    """The room as the Redis room store has it now (read beside the nodes)."""
    reply = redis.command("HGET", f"gf:saved:room:{room_id}", "data")
    if reply.startswith(b"$-1"):
        return None
    found: dict[str, Any] = json.loads(reply.split(b"\r\n", 1)[1].rsplit(b"\r\n", 1)[0])
    return found


def test_with_a_store_kill_the_rooms_node_and_the_game_finishes_on_another(
    redis_server: RunningRedis, tmp_path: Path
) -> None:
    with three_nodes(redis_server, tmp_path, "--store", "redis") as cluster:
        alice = cluster.connect("a")
        created = alice.request("create", room="tictactoe")
        room_id, token = created["room_id"], created["token"]
        home = cluster.node_of(room_id)
        survivors = [n for n in NODES if n != home]
        bob = cluster.connect(survivors[0])
        assert bob.request("join", room_id=room_id)["action"] == "joined"
        start = alice.expect("start")
        x, o = (alice, bob) if start["turn"] == alice.player_id else (bob, alice)
        assert x.request("place", cell=0)["action"] == "result"
        assert o.request("place", cell=4)["action"] == "result"

        def moves_saved() -> bool:
            room = saved_room(cluster.redis, room_id)
            return room is not None and room["room"]["state"]["board"][4] == "O"

        poll(cluster.nodes[home], "the periodic snapshot with both moves", moves_saved)
        for client in (alice, bob):
            client.unread.clear()  # what came before the death (a first state among it)
        cluster.nodes[home].process.send_signal(signal.SIGKILL)
        cluster.nodes[home].process.wait(timeout=10)
        players = {}
        for client in (alice, bob):
            if client is alice and home == "a":
                # Its node died with the room: it reconnects through another with its token.
                back = cluster.connect(survivors[1])
                poll(
                    cluster.nodes[survivors[1]],
                    "the room is back for the token",
                    lambda: back.request("reconnect", token=token)["action"] == "joined",
                    NOTICE,
                )
                players[client.player_id] = back
            else:
                # Connected through a live node: seated again with no left.
                client.sock.settimeout(NOTICE)
                assert client.expect("joined")["room_id"] == room_id
                players[client.player_id] = client
        for client in players.values():
            state = client.expect("state")["state"]
            assert (state["board"][0], state["board"][4]) == ("X", "O")
            assert state["turn"] == x.player_id
            assert not [m for m in client.unread if m["action"] == "left"]
        x2, o2 = players[x.player_id], players[o.player_id]
        for client, cell in [(x2, 1), (o2, 5), (x2, 2)]:
            assert client.request("place", cell=cell)["action"] == "result"
        for client in (x2, o2):
            assert client.expect("game_over")["winner"] == x.player_id
        assert cluster.node_of(room_id) in survivors
