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
def three_nodes(redis: RunningRedis, directory: Path) -> Iterator[Cluster]:
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
