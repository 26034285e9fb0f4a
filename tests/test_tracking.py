"""Change tracking: tracked state patches from its recorded changes, and every mirror keeps up."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from gameframe import Room
from gameframe.jsonpatch import apply, to_tree
from gameframe.testing import FakeClient, Harness
from gameframe.tracking import TrackedDict, TrackedList, changes, is_tracked, tracked


@tracked
class Ent:
    x: int = 0
    y: int = 0
    hp: int = 100
    items: list[Any] = attrs.Factory(list)
    tags: dict[str, Any] = attrs.Factory(dict)
    _secret: int = 0  # not synchronized, not recorded


@attrs.define
class Plain:
    """Not tracked: changes in place are found by a diff of its subtree."""

    v: int = 0
    more: list[int] = attrs.Factory(list)


@tracked
class World:
    ents: dict[Any, Ent] = attrs.Factory(dict)
    bags: list[list[Any]] = attrs.Factory(lambda: [[], []])
    misc: dict[str, Any] = attrs.Factory(dict)
    plain: Plain = attrs.Factory(Plain)
    pair: tuple[int, ...] = (1, 2)


class Tracking(Room):
    patch_rate = None  # the tests send patches when they choose

    def on_create(self, options: dict[str, Any]) -> None:
        self.state = World(ents={"a": Ent(x=1), "b": Ent(y=2)})


KEYS = ["a", "b", "c", "d/e", "f~g", 7]
keys = st.sampled_from(KEYS)
small = st.integers(-3, 3)

mutations = st.one_of(
    st.tuples(st.just("set"), keys, st.sampled_from(["x", "y", "hp", "_secret"]), small),
    st.tuples(st.just("add"), keys, small),
    st.tuples(st.just("delete"), keys),
    st.tuples(st.just("items"), keys, st.lists(small, max_size=3)),  # nested replacement
    st.tuples(st.just("tags"), keys, st.dictionaries(st.sampled_from("pq"), small, max_size=2)),
    st.tuples(st.just("append"), keys, small),
    st.tuples(st.just("tag"), keys, st.sampled_from("pq"), small),
    st.tuples(st.just("cull"), small),  # deleting while iterating
    st.tuples(st.just("prune"), keys, small),  # removing from a list while iterating it
    st.tuples(st.just("share"), keys, keys),  # the same object under two keys
    st.tuples(st.just("bag"), keys, st.integers(0, 1)),  # the same object in a list and a dict
    st.tuples(st.just("move"), keys, st.integers(0, 1)),  # out of the dict, into a list
    st.tuples(st.just("unbag"), st.integers(0, 1), keys),  # out of a list, into the dict
    st.tuples(st.just("poke"), st.integers(0, 1), small),  # an Ent inside a list changes
    st.tuples(st.just("sort"), st.integers(0, 1)),
    st.tuples(st.just("misc"), st.sampled_from("pq"), st.one_of(small, st.lists(small, max_size=2))),
    st.tuples(st.just("plain"), small),  # untracked, changed in place
    st.tuples(st.just("plain_in_dict"), keys, small),
    st.tuples(st.just("new_world"),),  # the whole state replaced
    st.tuples(st.just("patch"),),
)


def mutate(state: World, step: tuple[Any, ...]) -> World:
    kind = step[0]
    ents = state.ents
    if kind == "set" and step[1] in ents:
        setattr(ents[step[1]], step[2], step[3])
    elif kind == "add":
        ents[step[1]] = Ent(x=step[2])
    elif kind == "delete":
        ents.pop(step[1], None)
    elif kind == "items" and step[1] in ents:
        ents[step[1]].items = [{"n": n} for n in step[2]]
    elif kind == "tags" and step[1] in ents:
        ents[step[1]].tags = {k: {"deep": v} for k, v in step[2].items()}
    elif kind == "append" and step[1] in ents:
        ents[step[1]].items.append(step[2])
    elif kind == "tag" and step[1] in ents:
        ents[step[1]].tags.setdefault(step[2], {})["deep"] = step[3]
    elif kind == "cull":
        for key in list(ents):
            if ents[key].x <= step[1]:
                del ents[key]
    elif kind == "prune" and step[1] in ents:
        items = ents[step[1]].items
        for item in items[:]:
            if item == step[2] or item == {"n": step[2]}:
                items.remove(item)
    elif kind == "share" and step[1] in ents:
        ents[step[2]] = ents[step[1]]
    elif kind == "bag" and step[1] in ents:
        state.bags[step[2]].append(ents[step[1]])
    elif kind == "move" and step[1] in ents:
        state.bags[step[2]].insert(0, ents.pop(step[1]))
    elif kind == "unbag" and state.bags[step[1]]:
        ents[step[2]] = state.bags[step[1]].pop()
    elif kind == "poke" and state.bags[step[1]]:
        state.bags[step[1]][-1].hp += step[2]
    elif kind == "sort":
        state.bags[step[1]].sort(key=lambda e: (e.x, e.hp))
    elif kind == "misc":
        state.misc[step[1]] = step[2]
    elif kind == "plain":
        state.plain.v += step[1]
        state.plain.more.append(step[1])
    elif kind == "plain_in_dict" and step[1] in ents:
        ents[step[1]].tags["plain"] = Plain(v=step[2])
        ents[step[1]].tags["plain"].more.append(step[2])
    elif kind == "new_world":
        return World(ents={"z": Ent(hp=1)})
    return state


class TrackedStatePropertyTests(SynchronousTestCase):
    @settings(max_examples=200, deadline=None)
    @given(st.lists(mutations, max_size=40), st.integers(0, 40))
    def test_mirrors_equal_the_state_after_every_patch(
        self, steps: list[tuple[Any, ...]], late_join_at: int
    ) -> None:
        """
        For any mutations of a tracked state (tracked attrs objects and
        containers, nested replacement, deletion while iterating, one
        object reachable twice, objects moved between containers, plain
        values changed in place, the whole state replaced), every client's
        mirror equals the state's tree after every patch, with JSON Patches
        and with compact patches; a late joiner too.
        """
        kit = Harness({"tracking": Tracking})
        clients = [kit.connect() for _ in range(3)]
        clients[0].join_or_create("tracking")
        clients[1].join_or_create("tracking")
        clients[2].request("join_or_create", room="tracking", encoding="compact")
        room = kit.room_of(clients[0])
        assert isinstance(room, Tracking)
        late = kit.connect()
        for index, step in enumerate(steps):
            if index == late_join_at:
                late.request("join_or_create", room="tracking", encoding="compact")
                clients.append(late)
            room.state = mutate(room.state, step)
            if step[0] == "patch":
                room.send_patches()
                self.assert_mirrors(room, clients)
        room.send_patches()
        self.assert_mirrors(room, clients)

    def assert_mirrors(self, room: Room, clients: list[FakeClient]) -> None:
        tree = to_tree(room.state)
        for client in clients:
            self.assertEqual(client.state, tree)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(mutations, max_size=40))
    def test_changes_turn_the_last_tree_into_the_new_one(
        self, steps: list[tuple[Any, ...]]
    ) -> None:
        """The operations of each tick, applied to the last tree, give the state's tree."""
        state = World(ents={"a": Ent(x=1), "b": Ent(y=2)})
        self.assertTrue(is_tracked(state))
        base = to_tree(state)
        mirror = copy.deepcopy(base)
        for step in steps:
            if step[0] == "new_world":
                continue
            mutate(state, step)
            if step[0] == "patch":
                ops, base = changes(state, base)
                mirror = apply(mirror, copy.deepcopy(ops))
                self.assertEqual(mirror, to_tree(state))
                self.assertEqual(base, to_tree(state))


class TrackingTests(SynchronousTestCase):
    def test_a_tick_sends_only_what_changed(self) -> None:
        """One field of one entity among many: one operation, at its path."""
        kit = Harness({"tracking": Tracking})
        client = kit.connect()
        client.join_or_create("tracking")
        room = kit.room_of(client)
        for i in range(100):
            room.state.ents[f"e{i}"] = Ent(x=i)
        room.send_patches()
        room.state.ents["e42"].x = -1
        room.send_patches()
        self.assertEqual(
            client.received("patch")[-1]["patch"],
            [{"op": "replace", "path": "/ents/e42/x", "value": -1}],
        )
        self.assertEqual(client.state, to_tree(room.state))

    def test_assigned_containers_are_tracked(self) -> None:
        """A plain dict or list stored into tracked state is wrapped, nested ones too."""
        world = World()
        self.assertTrue(is_tracked(world))
        world.misc["p"] = {"inner": [1, {"deep": 2}]}
        self.assertIsInstance(world.misc, TrackedDict)
        self.assertIsInstance(world.misc["p"], TrackedDict)
        self.assertIsInstance(world.misc["p"]["inner"], TrackedList)
        self.assertIsInstance(world.misc["p"]["inner"][1], TrackedDict)
        self.assertEqual(world.misc["p"], {"inner": [1, {"deep": 2}]})

    def test_untracked_state_is_not_tracked(self) -> None:
        self.assertFalse(is_tracked({"a": 1}))
        self.assertFalse(is_tracked(Plain()))
        self.assertTrue(is_tracked(TrackedDict(a=1)))
        self.assertTrue(is_tracked(TrackedList([1])))

    def test_copies_and_pickles_are_plain_data(self) -> None:
        """Copies, deep copies and pickles of tracked containers hold the data, not the links."""
        world = World(misc={"p": [1, {"q": 2}]})
        is_tracked(world)
        for copied in (copy.deepcopy(world.misc), pickle.loads(pickle.dumps(world.misc))):
            self.assertEqual(copied, {"p": [1, {"q": 2}]})
            copied["p"].append(3)
            self.assertEqual(world.misc["p"], [1, {"q": 2}])
        self.assertIs(type(world.misc.copy()), dict)

    def test_snapshot_and_restore_with_tracked_state(self) -> None:
        """Room.snapshot() turns tracked state into a plain tree that JSON holds."""
        kit = Harness({"tracking": Tracking})
        client = kit.connect()
        client.join_or_create("tracking")
        room = kit.room_of(client)
        room.state.misc["p"] = [1, {"q": 2}]
        snapshot = room.snapshot()
        self.assertEqual(snapshot["state"]["misc"], {"p": [1, {"q": 2}]})
        self.assertIs(type(snapshot["state"]["misc"]), dict)
        self.assertIs(type(snapshot["state"]["misc"]["p"]), list)

    def test_an_object_reachable_twice_keeps_its_other_place(self) -> None:
        """Taken out of one place, an object shared by two still reports its changes from the other."""
        world = World(ents={"a": Ent()})
        base = to_tree(world)
        self.assertTrue(is_tracked(world))
        for step in [("share", "a", "c"), ("bag", "a", 0), ("patch",), ("delete", "a"), ("patch",),
                     ("set", "c", "x", 3), ("patch",), ("move", "c", 1), ("poke", 0, 2), ("patch",)]:
            mutate(world, step)
            if step[0] == "patch":
                ops, base = changes(world, base)
                self.assertEqual(base, to_tree(world))

    def test_root_tracked_dict(self) -> None:
        """A TrackedDict at the root is tracked too; its changes reach the mirror."""

        class DictRoom(Room):
            patch_rate = None

            def on_create(self, options: dict[str, Any]) -> None:
                self.state = TrackedDict(players={})

        kit = Harness({"d": DictRoom})
        client = kit.connect()
        client.join_or_create("d")
        room = kit.room_of(client)
        room.state["players"]["p1"] = {"x": 1}
        room.send_patches()
        room.state["players"]["p1"]["x"] = 2
        room.send_patches()
        self.assertEqual(
            client.received("patch")[-1]["patch"],
            [{"op": "replace", "path": "/players/p1/x", "value": 2}],
        )
        self.assertEqual(client.state, {"players": {"p1": {"x": 2}}})


@tracked
class Checked:
    n: int = attrs.field(default=0, converter=int, validator=attrs.validators.ge(0))


class AttrsHooksTests(SynchronousTestCase):
    def test_converters_and_validators_still_run_on_assignment(self) -> None:
        """A tracked class converts and validates assignments as attrs.define does."""
        checked = Checked()
        checked.n = "3"  # type: ignore[assignment]
        self.assertEqual(checked.n, 3)
        with self.assertRaises(ValueError):
            checked.n = -1
        world = TrackedDict(c=checked)
        base = to_tree(world)
        checked.n = "4"  # type: ignore[assignment]
        ops, base = changes(world, base)
        self.assertEqual(ops, [{"op": "replace", "path": "/c/n", "value": 4}])


class SharedTreeTests(SynchronousTestCase):
    def test_a_resync_after_an_equal_new_state_is_current(self) -> None:
        """A new state equal to the old one sends no patch, and later full states still follow the changes."""
        kit = Harness({"tracking": Tracking})
        client = kit.connect()
        client.join_or_create("tracking")
        room = kit.room_of(client)
        room.state = World(ents={"a": Ent(x=1), "b": Ent(y=2)})
        room.send_patches()
        self.assertEqual(client.received("patch"), [])
        room.state.ents["a"].x = 5
        room.send_patches()
        client.send("sync")
        self.assertEqual(client.received("state")[-1]["state"], to_tree(room.state))
        self.assertEqual(client.state, to_tree(room.state))
