"""A cluster with a room store: a dead or stopped node's rooms come back on another node, their players still in them."""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import Deferred

from gameframe.demo.chat import ChatRoom
from gameframe.demo.tictactoe import TicTacToe
from gameframe.store.memory import MemoryRoomStore
from gameframe.testing import ClusterHarness, FakeClient

ROOMS = {"chat": ChatRoom, "tictactoe": TicTacToe}


def on_a(nodes: Any, origin: str, room_type: str) -> str:
    """New rooms go to node a (while it lives)."""
    return "a"


def cluster(rooms: Any = ROOMS, **options: Any) -> ClusterHarness:
    return ClusterHarness(rooms, nodes=["a", "b", "c"], placement=on_a, **options)


def nodes_running(kit: ClusterHarness, room_id: str) -> list[str]:
    return [
        name
        for name, node in kit.nodes.items()
        if not node.store.dead and room_id in node.service.rooms
    ]


def saved_owner(store: MemoryRoomStore, room_id: str) -> str:
    """The node the room store says owns the room."""
    owners: list[str] = []
    store.load(room_id).addCallback(lambda saved: owners.append(saved.node))
    (owner,) = owners
    return owner


@attrs.frozen
class Game:
    """A tic-tac-toe room on node a, X and O, two moves played."""

    x: FakeClient
    o: FakeClient
    room_id: str


def half_played(kit: ClusterHarness, first: str, second: str) -> Game:
    """Players on nodes C{first} and C{second}; the room on a; X at 0, O at 4; then a periodic snapshot."""
    alice = kit.node(first).connect()
    room_id = alice.create("tictactoe")["room_id"]
    bob = kit.node(second).connect()
    assert bob.join(room_id)["action"] == "joined"
    assert nodes_running(kit, room_id) == ["a"]
    turn = alice.last("start")["turn"]
    x, o = (alice, bob) if turn == alice.player_id else (bob, alice)
    assert x.request("place", cell=0)["action"] == "result"
    assert o.request("place", cell=4)["action"] == "result"
    kit.advance(TicTacToe.snapshot_interval)  # the moves are in the store now
    return Game(x, o, room_id)


def finish(game: Game) -> None:
    """X takes the top row: 0 (played), 1, 2; O plays 5 between."""
    assert game.x.request("place", cell=1)["action"] == "result"
    assert game.o.request("place", cell=5)["action"] == "result"
    assert game.x.request("place", cell=2)["action"] == "result"
    for client in (game.x, game.o):
        over = client.last("game_over")
        assert (over["winner"], over["reason"]) == (game.x.player_id, "line")


def assert_back(client: FakeClient, game: Game) -> None:
    """The client was seated again (new token, full state as before), never told it left."""
    assert client.received("left") == []
    joined = client.received("joined")
    assert len(joined) == 2 and joined[-1]["room_id"] == game.room_id
    assert joined[-1]["token"] != joined[0]["token"]
    state = client.state
    assert state["board"][0] == "X" and state["board"][4] == "O"
    assert state["turn"] == game.x.player_id


class TestARoomsNodeDies:
    def test_the_room_comes_back_elsewhere_with_its_players_on_other_nodes(self) -> None:
        kit = cluster(room_store=MemoryRoomStore())
        game = half_played(kit, "b", "c")
        kit.kill("a")
        kit.advance(15)
        assert nodes_running(kit, game.room_id) in (["b"], ["c"])
        for client in (game.x, game.o):
            assert_back(client, game)
        finish(game)

    def test_until_it_is_back_their_actions_are_unavailable(self) -> None:
        class SlowToCome(TicTacToe):
            gate: Deferred[None] | None = None  # on_create waits on it (the restore does)

            def on_create(self, options: dict[str, Any]) -> Any:
                super().on_create(options)
                return type(self).gate

        kit = cluster({"tictactoe": SlowToCome}, room_store=MemoryRoomStore())
        game = half_played(kit, "b", "c")
        SlowToCome.gate = gate = Deferred()
        kit.kill("a")
        kit.advance(15)
        reply = game.x.request("place", cell=1)
        assert (reply["action"], reply["code"]) == ("error", "unavailable")
        gate.callback(None)
        kit.settle()
        for client in (game.x, game.o):
            assert_back(client, game)
        finish(game)

    def test_a_player_whose_node_died_reconnects_through_another_with_its_token(self) -> None:
        kit = cluster(room_store=MemoryRoomStore())
        game = half_played(kit, "a", "b")
        on_a, on_b = (game.x, game.o) if game.x.harness is kit.node("a") else (game.o, game.x)
        kit.kill("a")
        kit.advance(15)
        assert_back(on_b, game)
        back = kit.node("c").connect()
        joined = back.request("reconnect", token=on_a.token)
        assert (joined["action"], joined["room_id"]) == ("joined", game.room_id)
        assert back.state == on_b.state
        x, o = (back, on_b) if on_a is game.x else (on_b, back)
        finish(Game(x, o, game.room_id))

    def test_the_restored_room_is_in_the_directory_and_the_store_under_its_new_node(self) -> None:
        store = MemoryRoomStore()
        kit = cluster(room_store=store)
        game = half_played(kit, "b", "c")
        kit.kill("a")
        kit.advance(15)
        (where,) = nodes_running(kit, game.room_id)
        node_id = kit.node(where).node.node_id
        for name in ("b", "c"):
            rooms = {r["room_id"]: r["node"] for r in kit.node(name).connect().request("list")["rooms"]}
            assert rooms.get(game.room_id) == node_id
        assert saved_owner(store, game.room_id) == node_id

    def test_a_room_that_does_not_come_back_is_lost_after_the_bound(self) -> None:
        class Unrestorable(ChatRoom):
            def restore(self, snapshot: Any) -> None:
                raise RuntimeError("this snapshot cannot be read")

        kit = cluster({"chat": Unrestorable}, room_store=MemoryRoomStore())
        alice = kit.node("b").connect()
        room_id = alice.create("chat")["room_id"]
        kit.advance(1)
        kit.kill("a")
        kit.advance(20)
        assert alice.received("left") == []
        kit.advance(20)
        assert alice.last("left") == {"action": "left", "room_id": room_id, "reason": "room_lost"}

    def test_without_a_store_the_players_elsewhere_get_room_lost(self) -> None:
        kit = cluster()
        alice = kit.node("b").connect()
        room_id = alice.create("tictactoe")["room_id"]
        kit.kill("a")
        kit.advance(15)
        assert alice.last("left") == {"action": "left", "room_id": room_id, "reason": "room_lost"}
        assert nodes_running(kit, room_id) == []


class TestARoomsNodeStops:
    def test_its_rooms_come_back_elsewhere_and_its_players_reconnect(self) -> None:
        kit = cluster(room_store=MemoryRoomStore())
        game = half_played(kit, "a", "b")
        on_a, on_b = (game.x, game.o) if game.x.harness is kit.node("a") else (game.o, game.x)
        node = kit.node("a")
        node.service.stopService()
        kit.settle()
        node.node.stopService()
        kit.settle()
        closing = on_a.last("disconnect")
        assert (closing["code"], closing["retry"]) == ("server_shutdown", True)
        kit.advance(3)
        assert nodes_running(kit, game.room_id) in (["b"], ["c"])
        assert_back(on_b, game)
        back = kit.node("c").connect()
        assert back.request("reconnect", token=on_a.token)["action"] == "joined"
        x, o = (back, on_b) if on_a is game.x else (on_b, back)
        finish(Game(x, o, game.room_id))

    def test_players_on_other_nodes_are_seated_again_without_left(self) -> None:
        kit = cluster(room_store=MemoryRoomStore())
        game = half_played(kit, "b", "c")
        node = kit.node("a")
        node.service.stopService()
        kit.settle()
        node.node.stopService()
        kit.advance(3)
        for client in (game.x, game.o):
            assert_back(client, game)
        finish(game)

    def test_its_players_in_rooms_elsewhere_keep_their_seats_for_their_reconnect(self) -> None:
        class NoHold(TicTacToe):
            reconnect_timeout = 0  # a dropped player leaves at once: a deploy is no drop

        kit = ClusterHarness(
            {"tictactoe": NoHold},
            nodes=["a", "b", "c"],
            placement=lambda *_: "b",
            room_store=MemoryRoomStore(),
        )
        kit.advance(1)  # every node has heard of b
        alice, bob = kit.node("a").connect(), kit.node("c").connect()
        room_id = alice.create("tictactoe")["room_id"]
        assert nodes_running(kit, room_id) == ["b"]
        assert bob.join(room_id)["action"] == "joined"
        node = kit.node("a")
        node.service.stopService()
        kit.settle()
        node.node.stopService()
        kit.advance(3)
        assert alice.last("disconnect")["retry"] is True
        back = kit.node("b").connect()
        assert back.request("reconnect", token=alice.token)["action"] == "joined"
        start = bob.last("start")
        x, o = (back, bob) if start["turn"] == alice.player_id else (bob, back)
        for client, cell in [(x, 0), (o, 4), (x, 1), (o, 5), (x, 2)]:
            assert client.request("place", cell=cell)["action"] == "result"
        assert bob.last("game_over")["reason"] == "line"


class TestAFencedNode:
    def test_it_gives_up_its_rooms_to_the_node_that_restored_them(self) -> None:
        store = MemoryRoomStore()
        kit = cluster(room_store=store)
        game = half_played(kit, "b", "c")
        paused = kit.node("a")
        paused.node._loop.stop()  # a long pause: no heartbeats, declared dead
        kit.advance(10)
        (where,) = [n for n in nodes_running(kit, game.room_id) if n != "a"]
        paused.node._loop.start(1.0, now=True)
        kit.advance(3)
        assert paused.node.node_id.startswith("a.2-")
        assert nodes_running(kit, game.room_id) == [where]
        assert saved_owner(store, game.room_id) == kit.node(where).node.node_id
        finish(game)
