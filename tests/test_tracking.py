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


# --------------------------------------------------------------------------
# lists: index-level operations, mixed with changes inside their elements


@tracked
class Shelf:
    items: list[Any] = attrs.Factory(list)
    ents: dict[str, Ent] = attrs.Factory(dict)
    other: list[Any] = attrs.Factory(list)


class Shelving(Room):
    patch_rate = None

    def on_create(self, options: dict[str, Any]) -> None:
        self.state = Shelf(items=[1, Ent(x=1), {"k": 1}, [2, Ent(y=2)]], ents={"a": Ent(hp=3)})


def all_lists(value: Any, found: list[TrackedList[Any]]) -> list[TrackedList[Any]]:
    """Every TrackedList inside C{value}, outer ones first (each once)."""
    if isinstance(value, TrackedList):
        if not any(value is seen for seen in found):
            found.append(value)
            for element in value:
                all_lists(element, found)
    elif isinstance(value, dict):
        for element in value.values():
            all_lists(element, found)
    elif isinstance(value, Ent):
        all_lists(value.items, found)
    return found


values = st.one_of(
    st.tuples(st.just("int"), small),
    st.tuples(st.just("ent"), small),
    st.tuples(st.just("dict"), small),
    st.tuples(st.just("list"), small),
    st.tuples(st.just("plain"), small),  # an untracked attrs instance: diffed every tick
    st.tuples(st.just("shared"), keys),  # an Ent of the dict, which stays there too
    st.tuples(st.just("again"), st.integers(0, 50)),  # an element of the same list, twice
)

list_steps = st.one_of(
    st.tuples(st.sampled_from(["append", "insert", "set"]), st.integers(0, 50), st.integers(-60, 60), values),
    st.tuples(st.just("extend"), st.integers(0, 50), st.lists(values, max_size=3)),
    st.tuples(
        st.sampled_from(["pop", "pop_at", "del", "remove", "sort", "reverse", "clear", "slice", "del_slice",
                         "times", "poke", "poke_deep", "move_out", "rebind"]),
        st.integers(0, 50),
        st.integers(-60, 60),
        small,
    ),
    st.tuples(st.just("set_ent"), keys, small),  # an Ent of the dict (maybe also in a list) changes
    st.tuples(st.just("resync"),),  # the clients' tree is taken afresh (a first subscriber)
    st.tuples(st.just("patch"),),
)


def make(value: tuple[Any, Any], shelf: Shelf, target: list[Any]) -> Any:
    kind, arg = value
    if kind == "int":
        return arg
    if kind == "ent":
        return Ent(x=arg)
    if kind == "dict":
        return {"v": arg, "deep": {"w": [arg]}}
    if kind == "list":
        return [arg, Ent(hp=arg)]
    if kind == "plain":
        return Plain(v=arg)
    if kind == "shared":  # (only into the outer lists: an Ent never goes inside itself)
        outer = target is shelf.items or target is shelf.other
        return shelf.ents.get(arg, 0) if outer else 0
    return target[arg % len(target)] if target else 0


def step_list(shelf: Shelf, step: tuple[Any, ...], root: TrackedList[Any] | None = None) -> None:
    kind = step[0]
    if kind in ("patch", "resync"):
        return
    if kind == "set_ent":
        if step[1] in shelf.ents:
            shelf.ents[step[1]].x = step[2]
        else:
            shelf.ents[step[1]] = Ent(x=step[2])
        return
    lists = all_lists(root, []) if root is not None else all_lists(shelf.items, []) + all_lists(shelf.other, [])
    target = lists[step[1] % len(lists)]
    at = step[2] % len(target) if target and isinstance(step[2], int) else 0
    if kind == "append":
        target.append(make(step[3], shelf, target))
    elif kind == "insert":
        target.insert(step[2], make(step[3], shelf, target))
    elif kind == "set" and target:
        target[step[2] % len(target) - (len(target) if step[2] < 0 else 0)] = make(step[3], shelf, target)
    elif kind == "extend":
        target.extend([make(v, shelf, target) for v in step[2]])
    elif kind == "pop" and target:
        target.pop()
    elif kind == "pop_at" and target:
        target.pop(at - (len(target) if step[2] < 0 else 0))
    elif kind == "del" and target:
        del target[at]
    elif kind == "remove" and target:
        target.remove(target[at])
    elif kind == "sort":
        target.sort(key=lambda v: repr(to_tree(v)))
    elif kind == "reverse":
        target.reverse()
    elif kind == "clear":
        target.clear()
    elif kind == "slice":
        target[at:at + 2] = [step[3], [step[3]]]
    elif kind == "del_slice":
        del target[at::2]
    elif kind == "times" and len(target) < 8:
        target *= 2
    elif kind in ("poke", "poke_deep") and target:
        element = target[at]
        if isinstance(element, Ent):
            element.hp += step[3]
            if kind == "poke_deep":
                element.items.append(step[3])
                element.tags["t"] = {"n": step[3]}
        elif isinstance(element, dict):
            element["k"] = step[3]
            if kind == "poke_deep" and isinstance(element.get("deep"), dict):
                element["deep"]["w"].append(step[3])
        elif isinstance(element, TrackedList):
            element.append(step[3])
        elif isinstance(element, Plain):
            element.v += step[3]
    elif kind == "move_out" and target:
        # out of this list into the other one, or into the dict
        element = target.pop(at)
        if isinstance(element, Ent):
            shelf.ents[f"m{step[3]}"] = element
        else:
            shelf.other.append(element)
    elif kind == "rebind":
        shelf.other = [v for v in target[:2]]  # a new list holding some of the same objects


class TrackedListPropertyTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(st.lists(list_steps, max_size=50))
    def test_list_operations_reach_every_mirror(self, steps: list[tuple[Any, ...]]) -> None:
        """
        For any list operations (append, insert, pop, removal and assignment
        at an index, sorting, slices, clearing...) on lists holding scalars,
        tracked objects, dicts, lists, plain values, the same object twice,
        objects also held by a dict, mixed with changes inside the elements,
        every client's mirror (JSON Patch and compact) equals the state's tree
        after every patch.
        """
        kit = Harness({"shelving": Shelving})
        clients = [kit.connect() for _ in range(2)]
        clients[0].join_or_create("shelving")
        clients[1].request("join_or_create", room="shelving", encoding="compact")
        room = kit.room_of(clients[0])
        assert isinstance(room, Shelving)
        for step in steps:
            if step[0] == "resync":
                clients.append(kit.connect())
                clients[-1].join_or_create("shelving")
                continue
            step_list(room.state, step)
            if step[0] == "patch":
                room.send_patches()
                tree = to_tree(room.state)
                for client in clients:
                    self.assertEqual(client.state, tree)
        room.send_patches()
        tree = to_tree(room.state)
        for client in clients:
            self.assertEqual(client.state, tree)

    @settings(max_examples=300, deadline=None)
    @given(st.lists(list_steps, max_size=50))
    def test_list_changes_turn_the_last_tree_into_the_new_one(self, steps: list[tuple[Any, ...]]) -> None:
        """
        The operations of each tick, applied to the last tree, give the
        state's tree; also when the tree is taken afresh between ticks (the
        lists' logs since their last walk no longer apply to it).
        """
        shelf = Shelf(items=[1, Ent(x=1), {"k": 1}, [2, Ent(y=2)]], ents={"a": Ent(hp=3)})
        self.assertTrue(is_tracked(shelf))
        base = to_tree(shelf)
        mirror = copy.deepcopy(base)
        for step in steps:
            if step[0] == "resync":
                base = to_tree(shelf)
                mirror = copy.deepcopy(base)
                continue
            step_list(shelf, step)
            if step[0] == "patch":
                ops, base = changes(shelf, base)
                mirror = apply(mirror, copy.deepcopy(ops))
                self.assertEqual(mirror, to_tree(shelf))
                self.assertEqual(base, to_tree(shelf))
        ops, base = changes(shelf, base)
        self.assertEqual(apply(mirror, copy.deepcopy(ops)), to_tree(shelf))

    @settings(max_examples=200, deadline=None)
    @given(st.lists(list_steps, max_size=40))
    def test_a_list_at_the_root(self, steps: list[tuple[Any, ...]]) -> None:
        """A TrackedList as the whole state patches by index too."""
        root: TrackedList[Any] = TrackedList([1, Ent(x=1), [2]])
        base = to_tree(root)
        shelf = Shelf()
        for step in steps:
            if step[0] in ("rebind", "move_out"):
                continue
            step_list(shelf, step, root)
            if step[0] == "patch":
                ops, base = changes(root, base)
                self.assertEqual(base, to_tree(root))


class TrackedListOperationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.shelf = Shelf(items=[Ent(x=i) for i in range(1000)])
        self.assertTrue(is_tracked(self.shelf))
        self.base = to_tree(self.shelf)
        self.tick()  # the first tick after the tree was taken compares the list once

    def tick(self) -> list[dict[str, Any]]:
        self.shelf.items.append(0)
        self.shelf.items.pop()
        ops, self.base = changes(self.shelf, self.base)
        self.assertEqual(self.base, to_tree(self.shelf))
        return ops

    def test_a_change_inside_one_element_is_one_operation(self) -> None:
        """Moving one entity of a thousand in a list: one operation, at its index."""
        self.shelf.items[500].x = -1
        ops, self.base = changes(self.shelf, self.base)
        self.assertEqual(ops, [{"op": "replace", "path": "/items/500/x", "value": -1}])

    def test_appends_pops_and_assignments_are_index_operations(self) -> None:
        items = self.shelf.items
        items.append(Ent(x=7))
        items.pop(0)
        items[3] = Ent(x=9)
        del items[-2]
        items.insert(1, 5)
        ops, self.base = changes(self.shelf, self.base)
        self.assertEqual(
            ops,
            [
                {"op": "add", "path": "/items/1000", "value": to_tree(Ent(x=7))},
                {"op": "remove", "path": "/items/0"},
                {"op": "replace", "path": "/items/3/x", "value": 9},
                {"op": "remove", "path": "/items/998"},
                {"op": "add", "path": "/items/1", "value": 5},
            ],
        )
        self.assertEqual(self.base, to_tree(self.shelf))

    def test_after_a_removal_an_element_changes_at_its_new_index(self) -> None:
        items = self.shelf.items
        moved = items[600]
        del items[10]
        moved.y = 3
        ops, self.base = changes(self.shelf, self.base)
        self.assertEqual(
            ops,
            [{"op": "remove", "path": "/items/10"}, {"op": "replace", "path": "/items/599/y", "value": 3}],
        )

    def test_a_value_that_left_the_list_and_no_longer_converts(self) -> None:
        """Appended then taken out in one tick, then made unconvertible: the tick still patches the list."""
        items = self.shelf.items
        gone = Ent()
        items.append(gone)
        items.insert(0, 5)
        items.pop()
        gone.tags["bad"] = {1, 2}  # a set: not JSON
        ops, self.base = changes(self.shelf, self.base)
        self.assertEqual(self.base, to_tree(self.shelf))
        mirror = apply(to_tree(Shelf(items=[Ent(x=i) for i in range(1000)])), copy.deepcopy(ops))
        self.assertEqual(mirror, to_tree(self.shelf))

    def test_sorting_compares_the_list_whole(self) -> None:
        self.shelf.items.sort(key=lambda e: -e.x)
        ops, self.base = changes(self.shelf, self.base)
        self.assertEqual(self.base, to_tree(self.shelf))
        self.assertEqual(self.base["items"][0]["x"], 999)

    def test_a_long_log_turns_into_a_whole_comparison(self) -> None:
        """Many operations since the last tick (more than the list is long): the list is compared whole, once."""
        items = self.shelf.items
        for i in range(3000):
            items.append(i)
            items.pop(0)
        ops, self.base = changes(self.shelf, self.base)
        self.assertEqual(self.base, to_tree(self.shelf))
        self.assertEqual(len(ops), 1000)  # each place replaced, not 6,000 operations replayed
        items.append(Ent())
        items[-1].hp = 1
        ops, self.base = changes(self.shelf, self.base)
        self.assertEqual([op["op"] for op in ops], ["add"])
        self.assertEqual(self.base, to_tree(self.shelf))


@tracked(on_setattr=attrs.setters.convert)
class Hooked:
    n: int = attrs.field(default=0, converter=int)
    m: int = attrs.field(default=0, on_setattr=lambda instance, attribute, value: value * 2)
    _hidden: int = attrs.field(default=0, converter=int)


@tracked
class Wide:
    """More fields than the walk writes out: its loop over the changed names."""

    f0: int = 0
    f1: int = 0
    f2: int = 0
    f3: int = 0
    f4: int = 0
    f5: int = 0
    f6: int = 0
    f7: int = 0
    f8: int = 0
    f9: int = 0
    f10: int = 0
    f11: int = 0
    f12: Any = None


class MoreAttrsTests(SynchronousTestCase):
    def test_class_and_field_hooks_run_then_the_assignment_is_recorded(self) -> None:
        hooked = Hooked()
        world = TrackedDict(h=hooked)
        base = to_tree(world)
        hooked.n = "3"  # type: ignore[assignment]
        hooked.m = 4
        hooked._hidden = "5"  # type: ignore[assignment]
        self.assertEqual((hooked.n, hooked.m, hooked._hidden), (3, 8, 5))
        ops, base = changes(world, base)
        self.assertEqual(
            sorted(ops, key=lambda op: op["path"]),
            [{"op": "replace", "path": "/h/m", "value": 8}, {"op": "replace", "path": "/h/n", "value": 3}],
        )

    def test_a_class_with_many_fields(self) -> None:
        world = TrackedDict(w={"a": Wide()})
        base = to_tree(world)
        wide = world["w"]["a"]
        wide.f3 = 1
        wide.f12 = {"deep": [1]}
        ops, base = changes(world, base)
        self.assertEqual(base, to_tree(world))
        wide.f12["deep"].append(2)
        wide.f11 = 2
        ops, base = changes(world, base)
        self.assertEqual(
            sorted(ops, key=lambda op: op["path"]),
            [
                {"op": "replace", "path": "/w/a/f11", "value": 2},
                {"op": "add", "path": "/w/a/f12/deep/1", "value": 2},
            ],
        )
        self.assertEqual(base, to_tree(world))


class ConstructionTests(SynchronousTestCase):
    def test_dicts_and_lists_are_tracked_from_construction(self) -> None:
        """A reference taken before the first sync is the one the state keeps, so its changes are sent."""
        kit = Harness({"tracking": Tracking})
        room_state = World(ents={"a": Ent(x=1)}, misc={"n": {"deep": 0}})
        deep = room_state.misc["n"]  # read before any client joined
        items = room_state.ents["a"].items
        self.assertIs(type(room_state.ents), TrackedDict)
        self.assertIs(type(deep), TrackedDict)
        self.assertIs(type(items), TrackedList)
        client = kit.connect()
        client.join_or_create("tracking")
        room = kit.room_of(client)
        room.state = room_state
        room.send_patches()
        deep["deep"] = 5
        items.append(3)
        room.send_patches()
        self.assertEqual(client.state, to_tree(room_state))
        self.assertEqual(client.state["misc"]["n"], {"deep": 5})
