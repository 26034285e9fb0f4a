"""A cluster in one process: nodes on the in-memory store and one fake clock (gameframe.testing.ClusterHarness)."""

from __future__ import annotations

from typing import Any

import attrs

from gameframe import Player, Room, action
from gameframe.demo.chat import ChatRoom
from gameframe.demo.tictactoe import TicTacToe
from gameframe.testing import ClusterHarness, FakeClient, host_of

ROOMS = {"chat": ChatRoom, "tictactoe": TicTacToe}


def cluster(**options: Any) -> ClusterHarness:
    return ClusterHarness(ROOMS, nodes=["a", "b", "c"], **options)


def node_of(kit: ClusterHarness, room_id: str) -> str:
    return next(name for name, node in kit.nodes.items() if room_id in node.service.rooms)


@attrs.frozen
class Split:
    """A room on one node, and a player in it connected to another node."""

    first: FakeClient  # created the room
    far: FakeClient  # joined it from another node
    room_id: str
    home: str  # the room's node
    other: str  # the far player's node


def split(kit: ClusterHarness, room: str = "chat") -> Split:
    first = kit.node("a").connect()
    room_id = first.create(room)["room_id"]
    home = node_of(kit, room_id)
    other = next(n for n in kit.nodes if n != home)
    far = kit.node(other).connect()
    assert far.join(room_id)["action"] == "joined"
    return Split(first, far, room_id, home, other)


def play(first: FakeClient, second: FakeClient, cells: list[int]) -> None:
    """Alternate moves, X first (whoever it is)."""
    start = first.last("start")
    x = first if start["turn"] == first.player_id else second
    o = second if x is first else first
    for i, cell in enumerate(cells):
        mover = x if i % 2 == 0 else o
        reply = mover.request("place", cell=cell)
        assert reply["action"] == "result", reply


class TestAcrossNodes:
    def test_chat_between_players_on_different_nodes(self) -> None:
        kit = cluster()
        alice = kit.node("a").connect()
        bob = kit.node("b").connect()
        carol = kit.node("c").connect()
        joined = [c.join_or_create("chat") for c in (alice, bob, carol)]
        assert all(j["action"] == "joined" for j in joined), joined
        assert len({j["room_id"] for j in joined}) == 1
        assert len(kit.rooms()) == 1
        bob.request("say", text="hello from b")
        for client in (alice, bob, carol):
            said = client.last("said")
            assert said["text"] == "hello from b"
            assert said["player_id"] == bob.player_id

    def test_a_whole_tictactoe_game_with_the_players_on_two_nodes(self) -> None:
        kit = cluster()
        alice = kit.node("a").connect()
        bob = kit.node("b").connect()
        alice.join_or_create("tictactoe")
        bob.join_or_create("tictactoe")
        assert alice.last("joined")["room_id"] == bob.last("joined")["room_id"]
        play(alice, bob, [0, 3, 1, 4, 2])
        for client in (alice, bob):
            over = client.last("game_over")
            assert over["reason"] == "line"
        winner = alice.last("game_over")["winner"]
        assert winner in (alice.player_id, bob.player_id)

    def test_order_is_kept_per_player(self) -> None:
        kit = cluster()
        alice = kit.node("a").connect()
        bob = kit.node("b").connect()
        alice.join_or_create("chat")
        bob.join_or_create("chat")
        for i in range(50):
            bob.send("say", text=str(i))
        said = [m["text"] for m in alice.received("said")]
        assert said == [str(i) for i in range(50)]

    def test_a_broadcast_crosses_to_each_node_once_per_flush(self) -> None:
        kit = cluster()
        room_home = kit.node("a").connect()
        room_home.join_or_create("chat")
        room_id = room_home.last("joined")["room_id"]
        home = node_of(kit, room_id)
        others = [n for n in kit.nodes if n != home]
        far = [kit.node(others[0]).connect() for _ in range(5)]
        for client in far:
            client.join(room_id)
        before = kit.store.sent_batches
        host_of(kit.rooms()[room_id]).broadcast({"action": "hi"}, ())
        kit.settle()
        assert kit.store.sent_batches - before == 1
        assert all(c.last("hi") == {"action": "hi"} for c in far)

    def test_list_from_every_node_shows_every_room_with_its_node(self) -> None:
        kit = cluster()
        for name in kit.nodes:
            kit.node(name).connect().create("chat")
        kit.advance(1)
        for name in kit.nodes:
            rooms = kit.node(name).connect().request("list")["rooms"]
            assert len(rooms) == 3
            assert {r["node"] for r in rooms} <= set(kit.nodes)

    def test_leave_and_sync_go_to_the_rooms_node(self) -> None:
        kit = cluster()
        s = split(kit, "tictactoe")
        room_id, bob = s.room_id, s.far
        left = bob.leave()
        assert left == {"action": "left", "room_id": room_id, "reason": "leave", "id": left["id"]}
        assert len(kit.rooms()[room_id].players) == 1
        assert bob.join_or_create("chat")["action"] == "joined"

    def test_errors_from_a_remote_room_reach_the_player(self) -> None:
        bob = split(cluster(), "tictactoe").far
        reply = bob.request("place", cell=42)
        assert reply["action"] == "error" and reply["code"] == "bad_arguments"
        reply = bob.request("nope")
        assert reply["code"] == "unknown_action"

    def test_already_in_a_remote_room(self) -> None:
        bob = split(cluster()).far
        assert bob.join_or_create("chat")["code"] == "already_in_room"


class TestMatchmaking:
    def test_max_players_holds_under_concurrent_joins_from_every_node(self) -> None:
        kit = ClusterHarness({"chat10": Chat10}, nodes=["a", "b", "c"])
        clients = [kit.node("abc"[i % 3]).connect() for i in range(50)]
        for client in clients:
            client.harness.service.receive(
                client.player, {"action": "join_or_create", "room": "chat10", "id": "j"}
            )
        kit.settle()
        joined = [c.last("joined") for c in clients]
        rooms = kit.rooms()
        assert len(rooms) in (5, 6)
        assert all(len(r.players) <= 10 for r in rooms.values())
        assert sum(len(r.players) == 10 for r in rooms.values()) >= 4
        assert sum(len(r.players) for r in rooms.values()) == 50
        assert len({j["room_id"] for j in joined}) == len(rooms)

    def test_create_places_on_the_least_loaded_node(self) -> None:
        kit = cluster()
        busy = kit.node("a")
        for _ in range(5):
            busy.connect().create("chat")
        kit.advance(1)  # a heartbeat: every node knows the others' load
        newcomer = kit.node("a").connect()
        room_id = newcomer.create("chat")["room_id"]
        assert node_of(kit, room_id) != "a"

    def test_join_by_id_of_a_full_or_missing_room(self) -> None:
        kit = cluster()
        alice, bob = kit.node("a").connect(), kit.node("b").connect()
        alice.join_or_create("tictactoe")
        room_id = alice.last("joined")["room_id"]
        bob.join(room_id)
        carol = kit.node("c").connect()
        assert carol.join(room_id)["code"] == "room_full"
        assert carol.join("nope")["code"] == "room_not_found"


class Chat10(Room):
    max_players = 10

    @action
    def say(self, player: Player, text: str) -> None:
        self.broadcast({"action": "said", "text": text})


class TestReconnect:
    def test_a_dropped_player_reconnects_through_any_node(self) -> None:
        kit = cluster()
        s = split(kit)
        alice, bob = s.first, s.far
        third = next(n for n in kit.nodes if n not in (s.home, s.other))
        ChatRoom.on_drop = lambda self, player: 30  # type: ignore[method-assign]
        try:
            bob.disconnect()
            kit.advance(1)
            back = kit.node(third).connect()
            reply = back.request("reconnect", token=bob.token)
            assert reply["action"] == "joined", reply
            assert reply["player_id"] == bob.player_id
            back.request("say", text="back again")
            assert alice.last("said")["player_id"] == bob.player_id
        finally:
            del ChatRoom.on_drop  # type: ignore[attr-defined]

    def test_a_player_on_the_rooms_node_reconnects_elsewhere(self) -> None:
        kit = cluster()
        first = kit.node("a").connect()
        first.create("chat")
        room_id = first.last("joined")["room_id"]
        home = node_of(kit, room_id)
        local = kit.node(home).connect()
        local.join(room_id)
        ChatRoom.on_drop = lambda self, player: 30  # type: ignore[method-assign]
        try:
            local.disconnect()
            other = next(n for n in kit.nodes if n != home)
            back = kit.node(other).connect()
            assert back.request("reconnect", token=local.token)["action"] == "joined"
            back.request("say", text="from afar")
            assert first.last("said")["text"] == "from afar"
        finally:
            del ChatRoom.on_drop  # type: ignore[attr-defined]

    def test_a_bad_token_anywhere(self) -> None:
        kit = cluster()
        alice = kit.node("a").connect()
        alice.join_or_create("chat")
        token = alice.token
        assert token is not None
        player_id, _, _ = token.rpartition(".")
        for name in kit.nodes:
            reply = kit.node(name).connect().request("reconnect", token=f"{player_id}.wrong")
            assert reply["code"] == "invalid_token"


class TestFailures:
    def test_a_node_dies_players_elsewhere_get_room_lost(self) -> None:
        kit = cluster()
        s = split(kit)
        far, room_id, home = s.far, s.room_id, s.home
        third = next(n for n in kit.nodes if n not in (home, s.other))
        kit.kill(home)
        kit.advance(10)
        assert far.last("left") == {"action": "left", "room_id": room_id, "reason": "room_lost"}
        # It plays on: a new room on a live node.
        assert far.join_or_create("chat")["action"] == "joined"
        lister = kit.node(third).connect()
        assert all(r["node"] != home for r in lister.request("list")["rooms"])

    def test_a_node_dies_its_players_reconnect_elsewhere_and_keep_their_seats(self) -> None:
        kit = cluster()
        first = kit.node("a").connect()
        first.create("chat")
        room_id = first.last("joined")["room_id"]
        home = node_of(kit, room_id)
        doomed = next(n for n in kit.nodes if n != home)
        third = next(n for n in kit.nodes if n not in (home, doomed))
        victim = kit.node(doomed).connect()
        victim.join(room_id)
        ChatRoom.on_drop = lambda self, player: 30  # type: ignore[method-assign]
        try:
            kit.kill(doomed)
            kit.advance(10)
            room = kit.rooms()[room_id]
            assert victim.player_id in room.players  # held, not gone
            back = kit.node(third).connect()
            assert back.request("reconnect", token=victim.token)["action"] == "joined"
        finally:
            del ChatRoom.on_drop  # type: ignore[attr-defined]

    def test_the_store_goes_away_and_comes_back_empty(self) -> None:
        kit = cluster()
        alice = kit.node("a").connect()
        alice.create("chat")
        room_id = alice.last("joined")["room_id"]
        home = node_of(kit, room_id)
        other = next(n for n in kit.nodes if n != home)
        local = kit.node(home).connect()
        local.join(room_id)
        far = kit.node(other).connect()
        far.join(room_id)
        kit.store.down()
        kit.advance(2)
        # The room plays on for the players on its node...
        local.request("say", text="still here")
        assert local.last("said")["text"] == "still here"
        # ...a player elsewhere is refused, and keeps its seat.
        assert far.request("say", text="hello?")["code"] == "unavailable"
        assert far.player_id in kit.rooms()[room_id].players
        # New connections still get a welcome; join_or_create uses local rooms.
        newcomer = kit.node(other).connect()
        assert newcomer.last("welcome")
        assert newcomer.join_or_create("chat")["action"] == "joined"
        assert kit.node(other).connect().join(room_id)["code"] == "unavailable"
        kit.store.up(empty=True)
        kit.advance(2)
        far.request("say", text="back")
        assert local.last("said")["text"] == "back"
        lister = kit.node(other).connect()
        assert {r["room_id"] for r in lister.request("list")["rooms"]} >= {room_id}

    def test_a_node_cut_off_past_its_lease_rejoins_as_a_new_node(self) -> None:
        kit = cluster()
        alice = kit.node("a").connect()
        alice.create("chat")
        room_id = alice.last("joined")["room_id"]
        home = node_of(kit, room_id)
        node = kit.node(home)
        node.node._loop.stop()  # a long pause: no heartbeats
        kit.advance(10)
        node.node._loop.start(1.0, now=True)
        kit.advance(3)
        new_id = node.node.node_id
        assert new_id.startswith(f"{home}.2-")
        lister = kit.node(next(n for n in kit.nodes if n != home)).connect()
        nodes = {r["node"] for r in lister.request("list")["rooms"]}
        assert new_id in nodes and home not in nodes

    def test_a_draining_node_gets_no_new_rooms(self) -> None:
        kit = cluster()
        kit.node("a").node.drain()
        kit.advance(1)
        for _ in range(6):
            room_id = kit.node("a").connect().create("chat")["room_id"]
            assert node_of(kit, room_id) != "a"



class TestRoomsAcrossNodes:
    def test_state_sync_reaches_players_on_other_nodes(self) -> None:
        from gameframe.demo.arena import Arena

        kit = ClusterHarness({"arena": Arena}, nodes=["a", "b"])
        s = split(kit, "arena")
        alice, bob = s.first, s.far
        alice.send("move", x=10, y=20)
        bob.send("move", x=700, y=500)
        kit.advance(2)
        assert set(bob.state["players"]) == {alice.player_id, bob.player_id}
        assert bob.state == alice.state

    def test_a_kicked_remote_player_is_out_and_free_to_join_again(self) -> None:
        kit = cluster()
        s = split(kit)
        bob, room_id = s.far, s.room_id
        room = kit.rooms()[room_id]
        room.kick(room.players[bob.player_id], "bye")
        kit.settle()
        assert bob.last("left")["room_id"] == room_id
        assert bob.player_id not in room.players
        assert bob.join(room_id)["action"] == "joined"

    def test_a_node_stopping_ends_its_rooms_and_frees_its_players_seats_elsewhere(self) -> None:
        kit = cluster()
        s = split(kit)
        far, room_id, home, other = s.far, s.room_id, s.home, s.other
        # A player of the stopping node, in a room on another node:
        far_room = kit.node(other).connect()
        far_room.create("tictactoe")
        far_room_id = far_room.last("joined")["room_id"]
        traveller = kit.node(home).connect()
        if node_of(kit, far_room_id) != home:
            traveller.join(far_room_id)
        node = kit.node(home)
        node.service.stopService()
        kit.settle()
        node.node.stopService()
        kit.settle()
        assert far.last("left") == {"action": "left", "room_id": room_id, "reason": "shutdown"}
        if node_of(kit, far_room_id) != home:
            assert traveller.player_id not in kit.rooms()[far_room_id].players
        kit.advance(10)
        lister = kit.node(other).connect()
        assert all(r["node"] != home for r in lister.request("list")["rooms"])


def test_a_node_restarted_under_the_same_name_is_a_death_and_a_new_node() -> None:
    from gameframe.testing import NodeHarness

    kit = cluster()
    s = split(kit)
    far, room_id, home = s.far, s.room_id, s.home
    kit.kill(home)
    # A new process under the same name, at once (a supervisor restarting it).
    reborn = kit.nodes[home] = NodeHarness(kit, ROOMS, home)
    reborn.node.startService()
    kit.advance(3)
    assert far.last("left") == {"action": "left", "room_id": room_id, "reason": "room_lost"}
    assert reborn.node.node_id.startswith(f"{home}.2-")
    assert reborn.connect().join_or_create("chat")["action"] == "joined"


def test_a_connection_closing_while_its_remote_join_runs_frees_the_seat() -> None:
    kit = cluster()
    alice = kit.node("a").connect()
    alice.create("chat")
    room_id = alice.last("joined")["room_id"]
    other = next(n for n in kit.nodes if n != node_of(kit, room_id))
    node = kit.node(other)
    bob = node.connect()
    node.service.receive(bob.player, {"action": "join", "room_id": room_id, "id": "j"})
    node.service.disconnect(bob.player, bob.link)  # before any answer crossed the bus
    kit.advance(1)
    assert set(kit.rooms()[room_id].players) == {alice.player_id}
    assert not node.node.members


def test_two_live_processes_under_one_name_settle_under_two_names() -> None:
    from gameframe.testing import NodeHarness

    kit = cluster()
    twin = NodeHarness(kit, ROOMS, "a")
    twin.node.startService()
    kit.advance(5)
    first, second = kit.node("a").node.node_id, twin.node.node_id
    assert first != second
    kit.advance(10)
    assert (kit.node("a").node.node_id, twin.node.node_id) == (first, second)


def test_a_drop_while_the_store_is_away_frees_the_seat_once_it_is_back() -> None:
    kit = cluster()
    s = split(kit)
    kit.store.down()
    kit.advance(2)
    s.far.disconnect()
    kit.store.up(empty=True)
    kit.advance(3)
    assert set(kit.rooms()[s.room_id].players) == {s.first.player_id}


def test_a_placement_policy_chooses_the_node() -> None:
    kit = ClusterHarness(ROOMS, nodes=["a", "b", "c"], placement=lambda nodes, origin, room_type: "c")
    kit.advance(1)
    for name in ("a", "b"):
        room_id = kit.node(name).connect().create("chat")["room_id"]
        assert node_of(kit, room_id) == "c"


def test_a_placement_policy_that_fails_or_names_no_live_node_falls_back_to_the_default() -> None:
    def broken(nodes: Any, origin: str, room_type: str) -> str:
        if room_type == "chat":
            raise RuntimeError("oops")
        return "nowhere"

    kit = ClusterHarness(ROOMS, nodes=["a", "b"], placement=broken)
    kit.advance(1)
    for room in ("chat", "tictactoe"):
        assert kit.node("a").connect().create(room)["action"] == "joined"


def test_a_flush_interval_sends_what_came_meanwhile_in_one_batch() -> None:
    kit = ClusterHarness(ROOMS, nodes=["a", "b"], flush_interval=0.005)
    s = split(kit)
    before = kit.store.sent_batches
    room = s.far.harness.service
    for i in range(5):  # five actions in five reactor turns, within 5 ms
        room.receive(s.far.player, {"action": "say", "text": str(i)})
        kit.clock.advance(0.0005)
    kit.advance(0.01)
    # One batch there with the five actions, one back with the five broadcasts.
    assert kit.store.sent_batches - before == 2
    assert [m["text"] for m in s.far.received("said")] == [str(i) for i in range(5)]


def test_an_idle_node_sends_at_once_and_a_busy_one_batches() -> None:
    kit = cluster()
    s = split(kit)
    kit.advance(1)  # idle
    room = s.far.harness.service
    before = kit.store.sent_batches
    room.receive(s.far.player, {"action": "say", "text": "0"})
    kit.clock.advance(0)  # the end of the turn: it leaves at once, and comes back
    assert kit.store.sent_batches - before == 2
    for i in (1, 2, 3):  # three more, each in its own turn, within 2 ms
        kit.clock.advance(0.0004)
        room.receive(s.far.player, {"action": "say", "text": str(i)})
    assert kit.store.sent_batches - before == 2  # not yet: 2 ms after the last batch
    kit.advance(0.01)
    assert kit.store.sent_batches - before == 4  # the three there in one, back in one
    texts = [m["text"] for m in s.far.received("said")]
    assert texts == ["0", "1", "2", "3"]


def test_a_fenced_node_answers_its_pending_remote_joins_at_once() -> None:
    kit = cluster()
    s = split(kit)
    node = kit.node(s.other)
    newcomer = node.connect()
    node.service.receive(newcomer.player, {"action": "join", "room_id": s.room_id, "id": "j"})
    node.node._fenced()  # before the room's node answered
    assert newcomer.last("error") == {
        "action": "error",
        "code": "unavailable",
        "message": "this node lost the cluster: try again",
        "id": "j",
    }
