"""A room's area of interest: every player's mirror holds exactly what is near what it follows, after every patch."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from gameframe import Player, Room
from gameframe.interest import Interest
from gameframe.jsonpatch import to_tree
from gameframe.testing import ClusterHarness, FakeClient, Harness
from gameframe.tracking import tracked

RADIUS = 10.0


@tracked
class Field:
    things: dict[Any, Any]
    round: int = 0


class Tracked(Room):
    """Entities in a tracked state: patches from the recorded changes."""

    patch_rate = None  # the tests send patches when they choose
    interest = Interest(collection="things", radius=RADIUS, cell_size=4, followed_field="me")

    def on_create(self, options: dict[str, Any]) -> None:
        self.state = Field(things={"a": {"x": 0, "y": 0, "hp": 1}})

    def on_join(self, player: Player, options: dict[str, Any]) -> None:
        things_of(self)[player.id] = {"x": 3, "y": 3, "hp": 1}


class Untracked(Tracked):
    """The same in plain dicts: each tick diffs the whole tree."""

    interest = Interest(collection="things", radius=RADIUS, cell_size=25)

    def on_create(self, options: dict[str, Any]) -> None:
        self.state = {"things": {"a": {"x": 0, "y": 0, "hp": 1}}, "round": 0}


def things_of(room: Room) -> Any:
    state = room.state
    return state["things"] if isinstance(state, dict) else state.things


def expected_view(room: Room, follows: Any) -> Any:
    """The state's tree with its things cut to those within RADIUS of what is followed."""
    tree = to_tree(room.state)
    field = room.interest.followed_field if room.interest else None
    if field is not None:
        tree[field] = str(follows)
    things = tree["things"]
    center = things.get(str(follows))
    if not isinstance(center, dict) or not all(
        type(center.get(axis)) in (int, float) for axis in "xy"
    ):
        tree["things"] = {}
        return tree
    tree["things"] = {
        key: value
        for key, value in things.items()
        if isinstance(value, dict)
        and all(type(value.get(axis)) in (int, float) for axis in "xy")
        and math.hypot(value["x"] - center["x"], value["y"] - center["y"]) <= RADIUS
    }
    return tree


KEYS = ["a", "b", "c/d", "e~f", 7]
where = st.integers(-5, 40)
step_strategy = st.one_of(
    st.tuples(st.just("put"), st.integers(0, 8), where, where),  # new, or replaced whole
    st.tuples(st.just("nudge"), st.integers(0, 8), st.integers(-3, 3), st.integers(-3, 3)),
    st.tuples(st.just("jump"), st.integers(0, 8), where, where),  # across many cells
    st.tuples(st.just("hp"), st.integers(0, 8), st.integers(0, 3)),  # not a move
    st.tuples(st.just("lose_x"), st.integers(0, 8)),  # no position any more
    st.tuples(st.just("remove"), st.integers(0, 8)),
    st.tuples(st.just("round"), st.integers(0, 3)),  # outside the collection: everyone
    st.tuples(st.just("follow"), st.integers(0, 2), st.integers(0, 8)),
    st.tuples(st.just("congest"), st.integers(0, 2), st.booleans()),
    st.tuples(st.just("all_new"), where),  # the collection replaced whole
    st.tuples(st.just("patch"),),
)


class InterestPropertyTests(SynchronousTestCase):
    def run_steps(self, room_class: type[Room], steps: list[tuple[Any, ...]], late: int) -> None:
        kit = Harness({"field": room_class})
        clients = [kit.connect() for _ in range(3)]
        clients[0].join_or_create("field")
        clients[1].request("join_or_create", room="field", encoding="compact")
        room = kit.room_of(clients[0])
        joined = clients[:2]
        follows: dict[FakeClient, Any] = {c: c.player_id for c in joined}
        keys = KEYS + [c.player_id for c in clients]

        def key(index: int) -> Any:
            return keys[index % len(keys)]

        for index, step in enumerate(steps):
            if index == late:  # a late joiner starts from the last tree sent
                clients[2].join_or_create("field")
                joined.append(clients[2])
                follows[clients[2]] = clients[2].player_id
            things = things_of(room)
            kind = step[0]
            if kind == "put":
                things[key(step[1])] = {"x": step[2], "y": step[3], "hp": 0}
            elif kind in ("nudge", "jump") and isinstance(things.get(key(step[1])), dict):
                thing = things[key(step[1])]
                if "x" in thing:
                    thing["x"] = thing["x"] + step[2] if kind == "nudge" else step[2]
                    thing["y"] = thing["y"] + step[3] if kind == "nudge" else step[3]
            elif kind == "hp" and key(step[1]) in things:
                things[key(step[1])]["hp"] = step[2]
            elif kind == "lose_x" and key(step[1]) in things:
                things[key(step[1])].pop("x", None)
            elif kind == "remove":
                things.pop(key(step[1]), None)
            elif kind == "round":
                if isinstance(room.state, dict):
                    room.state["round"] = step[1]
                else:
                    room.state.round = step[1]
            elif kind == "follow" and clients[step[1]] in follows:
                room.follow(clients[step[1]].player, key(step[2]))
                follows[clients[step[1]]] = key(step[2])
            elif kind == "congest":
                clients[step[1]].link.congested = step[2]
            elif kind == "all_new":
                fresh = {k: {"x": step[1] + i, "y": step[1], "hp": 2} for i, k in enumerate(keys[:4])}
                if isinstance(room.state, dict):
                    room.state["things"] = fresh
                else:
                    room.state.things = fresh
            elif kind == "patch":
                room.send_patches()
                self.assert_views(room, joined, follows)
        for client in clients:
            client.link.congested = False
        room.send_patches()
        room.send_patches()  # a client back from congestion catches up at the next patch
        self.assert_views(room, joined, follows)

    def assert_views(self, room: Room, clients: list[FakeClient], follows: dict[FakeClient, Any]) -> None:
        for client in clients:
            if client.link.congested:
                continue
            self.assertEqual(client.state, expected_view(room, follows[client]))
            self.assertEqual(
                room.visible_to(client.player), frozenset(client.state["things"])
            )

    @settings(max_examples=150, deadline=None)
    @given(st.lists(step_strategy, max_size=50), st.integers(0, 50))
    def test_tracked_state(self, steps: list[tuple[Any, ...]], late: int) -> None:
        """
        For any moves (small, and jumps across cells), entities added,
        replaced, removed or losing their position, changes outside the
        collection, players following other entities, congested players,
        and the collection replaced whole: each player's mirror (JSON or
        compact, a late joiner too) equals the state's tree with the
        collection cut to what is within the radius of what it follows.
        """
        self.run_steps(Tracked, steps, late)

    @settings(max_examples=75, deadline=None)
    @given(st.lists(step_strategy, max_size=50), st.integers(0, 50))
    def test_untracked_state(self, steps: list[tuple[Any, ...]], late: int) -> None:
        """The same holds for a state of plain dicts (each tick a diff)."""
        self.run_steps(Untracked, steps, late)


class Arena(Room):
    patch_rate = None
    interest = Interest(collection="things", radius=RADIUS)
    moved: ClassVar[int] = 0

    def on_create(self, options: dict[str, Any]) -> None:
        self.state = Field(things={})
        for i in range(1000):  # a row of far-apart things
            self.state.things[f"n{i}"] = {"x": i * 100, "y": 0}

    def on_join(self, player: Player, options: dict[str, Any]) -> None:
        self.state.things[player.id] = {"x": 0, "y": 5}


class InterestTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.kit = Harness({"arena": Arena})
        self.alice = self.kit.connect()
        self.alice.join_or_create("arena")
        self.room = self.kit.room_of(self.alice)

    def test_a_player_gets_only_what_is_near(self) -> None:
        self.assertEqual(set(self.alice.state["things"]), {"n0", self.alice.player_id})

    def test_what_moves_far_away_is_never_sent(self) -> None:
        """Far things moving cost nobody a byte; a near one moving is one operation."""
        before = len(self.alice.messages)
        for i in range(10, 20):
            self.room.state.things[f"n{i}"]["y"] = 1
        self.room.send_patches()
        self.assertEqual(len(self.alice.messages), before)
        self.room.state.things["n0"]["y"] = 1
        self.room.send_patches()
        self.assertEqual(
            self.alice.last("patch")["patch"], [{"op": "replace", "path": "/things/n0/y", "value": 1}]
        )

    def test_entering_and_leaving_are_add_and_remove(self) -> None:
        self.room.state.things[self.alice.player_id]["x"] = 100
        self.room.send_patches()
        ops = self.alice.last("patch")["patch"]
        self.assertIn({"op": "remove", "path": "/things/n0"}, ops)
        self.assertIn({"op": "add", "path": "/things/n1", "value": {"x": 100, "y": 0}}, ops)

    def test_follow_another_entity(self) -> None:
        self.room.follow(self.alice.player, "n500")
        self.room.send_patches()
        self.assertEqual(set(self.alice.state["things"]), {"n500"})
        self.assertEqual(self.room.visible_to(self.alice.player), frozenset({"n500"}))

    def test_a_room_with_interest_cannot_define_views(self) -> None:
        with self.assertRaises(TypeError):

            class Both(Arena):
                def view_key(self, player: Player) -> Any:
                    return None

    def test_follow_needs_an_interest(self) -> None:
        class Plain(Room):
            def on_create(self, options: dict[str, Any]) -> None:
                self.state = {}

        kit = Harness({"plain": Plain})
        client = kit.connect()
        client.join_or_create("plain")
        with self.assertRaises(TypeError):
            kit.room_of(client).follow(client.player, "x")


class InterestAcrossNodesTests(SynchronousTestCase):
    def test_a_player_on_another_node_sees_its_own_area(self) -> None:
        kit = ClusterHarness({"arena": Arena}, nodes=["a", "b"])
        alice = kit.node("a").connect()
        alice.create("arena")
        room_id = alice.last("joined")["room_id"]
        bob = kit.node("b").connect()
        kit.settle()
        bob.join(room_id)
        kit.settle()
        room = kit.rooms()[room_id]
        room.state.things[bob.player_id]["x"] = 500
        room.send_patches()
        kit.settle()
        self.assertEqual(set(bob.state["things"]), {"n5", bob.player_id})
        self.assertEqual(set(alice.state["things"]), {"n0", alice.player_id})
        room.state.things["n5"]["y"] = 3
        room.state.things["n0"]["y"] = 4
        room.send_patches()
        kit.settle()
        self.assertEqual(bob.state["things"]["n5"], {"x": 500, "y": 3})
        self.assertNotIn("n0", bob.state["things"])
        self.assertEqual(alice.state["things"]["n0"], {"x": 0, "y": 4})

    def test_compact_patches_of_its_area_reach_a_player_on_another_node(self) -> None:
        kit = ClusterHarness({"arena": Arena}, nodes=["a", "b"], placement=lambda nodes, origin, kind: "a")
        room_id = kit.node("a").connect().create("arena")["room_id"]
        bob = kit.node("b").connect()
        self.assertEqual(bob.request("join", room_id=room_id, encoding="compact")["action"], "joined")
        self.assertEqual(kit.node("a").service.rooms.keys(), {room_id})  # bob is remote
        room = kit.rooms()[room_id]
        room.state.things[bob.player_id]["x"] = 500
        room.send_patches()
        room.state.things["n5"]["y"] = 3
        room.send_patches()
        kit.settle()
        patches = bob.received("patch")
        self.assertEqual(len(patches), 2)
        self.assertTrue(all("ops" in p and "patch" not in p for p in patches))
        self.assertEqual(patches[1]["ops"], ["/things/n5/y", 3])
        self.assertEqual(set(bob.state["things"]), {"n5", bob.player_id})
        self.assertEqual(bob.state["things"]["n5"], {"x": 500, "y": 3})
