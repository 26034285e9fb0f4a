"""Tests for gameframe.jsonpatch: to_tree, diff and apply (RFC 6902)."""

from __future__ import annotations

import copy
import enum
from collections import OrderedDict
from typing import Any, NamedTuple

import attrs
import jsonpatch as third_party  # the PyPI "jsonpatch" package
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gameframe.jsonpatch import JSON, PatchError, apply, diff, to_tree


def same(a: Any, b: Any) -> bool:
    """Type-strict deep equality: True != 1 and 1 != 1.0 (unlike ==)."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return a.keys() == b.keys() and all(same(v, b[k]) for k, v in a.items())
    if type(a) is list:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def check(old: Any, new: Any) -> list[dict[str, Any]]:
    """diff old -> new; check that ours and the PyPI package both apply it."""
    before = copy.deepcopy(old)
    ops = diff(old, new)
    assert same(old, before), "diff must not modify its input"
    assert same(apply(copy.deepcopy(old), ops), new)
    assert same(third_party.apply_patch(old, ops), new)
    return ops


# ---------------------------------------------------------------- diff


def test_equal_trees_give_empty_patch() -> None:
    tree: JSON = {"a": [1, {"b": None}], "c": "x"}
    assert diff(tree, tree) == []
    assert diff(tree, copy.deepcopy(tree)) == []
    assert diff(3, 3) == []
    big, text = int("9" * 30), "".join(["ab", "c"])  # equal but not identical
    assert diff({"n": big, "s": text, "l": [big, text]}, {"n": int("9" * 30), "s": "abc", "l": [int("9" * 30), "abc"]}) == []


def test_pointer_escaping() -> None:
    old = {"a/b": 1, "m~n": {"~1": 2}, "": 0}
    new = {"a/b": 3, "m~n": {"~1": 5}, "": 0, "/~": True}
    assert check(old, new) == [
        {"op": "replace", "path": "/a~1b", "value": 3},
        {"op": "replace", "path": "/m~0n/~01", "value": 5},
        {"op": "add", "path": "/~1~0", "value": True},
    ]
    assert check({"": 1}, {"": 2}) == [{"op": "replace", "path": "/", "value": 2}]


def test_nested_dict_add_remove_replace() -> None:
    old = {"room": {"tick": 1, "players": {"ann": {"hp": 10}, "bob": {"hp": 5}}}}
    new = {"room": {"tick": 2, "players": {"ann": {"hp": 7}, "cy": {"hp": 9}}}}
    assert check(old, new) == [
        {"op": "replace", "path": "/room/tick", "value": 2},
        {"op": "replace", "path": "/room/players/ann/hp", "value": 7},
        {"op": "remove", "path": "/room/players/bob"},
        {"op": "add", "path": "/room/players/cy", "value": {"hp": 9}},
    ]


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ([1, 2, 3, 4], [1, 2, 9, 3, 4], [{"op": "add", "path": "/2", "value": 9}]),
        ([1, 2, 3], [1, 2, 3, 4], [{"op": "add", "path": "/3", "value": 4}]),
        ([], [1, 2], [{"op": "add", "path": "/0", "value": 1}, {"op": "add", "path": "/1", "value": 2}]),
        ([1, 2, 3, 4], [1, 4], [{"op": "remove", "path": "/2"}, {"op": "remove", "path": "/1"}]),
        ([0, 1, 2], [1, 2], [{"op": "remove", "path": "/0"}]),
        (
            [1, 2, 3],
            [],
            [{"op": "remove", "path": "/2"}, {"op": "remove", "path": "/1"}, {"op": "remove", "path": "/0"}],
        ),
        (
            [1, 2, 3, 4],
            [1, 8, 9, 4, 4],
            [
                {"op": "replace", "path": "/1", "value": 8},
                {"op": "replace", "path": "/2", "value": 9},
                {"op": "add", "path": "/3", "value": 4},
            ],
        ),
        ([[1, 2], "x"], [[1, 3], "x"], [{"op": "replace", "path": "/0/1", "value": 3}]),
        (
            [{"id": 1, "hp": 3}, {"id": 2, "hp": 4}],
            [{"id": 1, "hp": 3}, {"id": 2, "hp": 1}, {"id": 3, "hp": 9}],
            [
                {"op": "replace", "path": "/1/hp", "value": 1},
                {"op": "add", "path": "/2", "value": {"id": 3, "hp": 9}},
            ],
        ),
    ],
)
def test_lists(old: Any, new: Any, expected: Any) -> None:
    assert check(old, new) == expected


@pytest.mark.parametrize(
    "old, new",
    [
        ({"a": {"x": 1}}, {"a": [1]}),
        ({"a": 1}, {"a": "1"}),
        ({"a": True}, {"a": 1}),
        ({"a": 0}, {"a": False}),
        ({"a": 1}, {"a": 1.0}),
        ({"a": None}, {"a": 0}),
        ({"a": []}, {"a": {}}),
    ],
)
def test_type_change_is_one_replace(old: Any, new: Any) -> None:
    assert check(old, new) == [{"op": "replace", "path": "/a", "value": new["a"]}]


def test_strict_types_inside_lists() -> None:
    # [True] == [1] in Python, but not in JSON: trimming must not skip it.
    assert check([True, 5], [1, 5]) == [{"op": "replace", "path": "/0", "value": 1}]
    assert check([1, [True], 2], [1, [1], 3, 2]) == [
        {"op": "replace", "path": "/1/0", "value": 1},
        {"op": "add", "path": "/2", "value": 3},
    ]


def test_root_replace() -> None:
    assert check({"a": 1}, [1]) == [{"op": "replace", "path": "", "value": [1]}]
    assert check(1, 2) == [{"op": "replace", "path": "", "value": 2}]
    assert check(True, 1) == [{"op": "replace", "path": "", "value": 1}]


# ---------------------------------------------------------------- to_tree


class Color(enum.IntEnum):
    RED = 1


class Mode(enum.StrEnum):
    FAST = "fast"


class Ratio(float):
    pass


class Point(NamedTuple):
    x: int
    y: int


@attrs.define
class Item:
    name: str
    weight: float = 1.0


@attrs.define
class Player:
    name: str
    hp: int
    pos: tuple[float, float]
    items: list[Item] = attrs.Factory(list)
    alive: bool = True
    _session: object = None  # private: never sent to clients


@attrs.frozen
class Room:
    tick: int
    players: dict[str, Player]
    scores: dict[int, int]


def test_to_tree_attrs() -> None:
    room = Room(
        tick=3,
        players={"ann": Player("ann", 10, (1.5, 2.0), [Item("sword", 3.5)], session=object())},
        scores={7: 100},
    )
    assert to_tree(room) == {
        "tick": 3,
        "players": {
            "ann": {
                "name": "ann",
                "hp": 10,
                "pos": [1.5, 2.0],
                "items": [{"name": "sword", "weight": 3.5}],
                "alive": True,
            }
        },
        "scores": {"7": 100},
    }
    tree: Any = to_tree(room)
    assert type(tree["players"]["ann"]["pos"]) is list


def test_to_tree_scalars_and_subclasses() -> None:
    for value in (None, True, 0, -3, 2.5, "x", ""):
        assert same(to_tree(value), value)
    tree = to_tree(OrderedDict([("c", Color.RED), (Color.RED, [Color.RED])]))
    assert same(tree, {"c": 1, "1": [1]})
    tree = to_tree({Mode.FAST: [Mode.FAST, Ratio(0.5), Point(1, 2)]})
    assert same(tree, {"fast": ["fast", 0.5, [1, 2]]})


def test_to_tree_never_aliases() -> None:
    items = [Item("a")]
    state: Any = {"p": Player("ann", 1, (0.0, 0.0), items), "l": [[1], {"x": [2]}], "t": ([3],)}
    tree: Any = to_tree(state)
    snapshot = copy.deepcopy(tree)
    items.append(Item("b"))
    state["p"].hp = 0
    state["l"][0].append(9)
    state["l"][1]["x"].append(9)
    state["t"][0].append(9)
    state["new"] = 1
    assert same(tree, snapshot)
    # and mutating the tree does not change the next snapshot of the state
    tree["l"][0].append("junk")
    assert same(to_tree(state), {**snapshot, "l": [[1, 9], {"x": [2, 9]}], "t": [[3, 9]], "new": 1}
                | {"p": {**snapshot["p"], "hp": 0, "items": [{"name": "a", "weight": 1.0}, {"name": "b", "weight": 1.0}]}})


def test_to_tree_rejects_set_with_path() -> None:
    bad: Any = {1}
    room = Room(tick=0, players={"a/b": Player("x", 1, (0.0, 0.0), [Item(bad)])}, scores={})
    with pytest.raises(TypeError, match=r"set.*'/players/a~1b/items/0/name'"):
        to_tree(room)
    with pytest.raises(TypeError, match="set.*root"):
        to_tree({1, 2})


@pytest.mark.parametrize("key", [object(), 1.5, (1, 2), None, True])
def test_to_tree_rejects_bad_keys(key: Any) -> None:
    with pytest.raises(TypeError, match=r"dict keys must be str or int.* at '/x'$"):
        to_tree({"x": {key: 1}})


# ---------------------------------------------------------------- apply


def test_apply_add_remove_replace() -> None:
    doc: Any = {"a": [1, 2], "b": {"c": 1}}
    doc = apply(doc, [
        {"op": "add", "path": "/a/-", "value": 3},
        {"op": "add", "path": "/a/0", "value": 0},
        {"op": "add", "path": "/b/-", "value": "dash is a key in objects"},
        {"op": "remove", "path": "/b/c"},
        {"op": "replace", "path": "/a/1", "value": {"x": None}},
    ])
    assert doc == {"a": [0, {"x": None}, 2, 3], "b": {"-": "dash is a key in objects"}}
    assert apply(doc, [{"op": "replace", "path": "", "value": [1]}]) == [1]
    assert apply(doc, [{"op": "add", "path": "", "value": 5}]) == 5


def test_apply_copies_patch_values() -> None:
    value = {"x": [1]}
    doc = apply({}, [{"op": "add", "path": "/v", "value": value}])
    value["x"].append(2)
    assert doc == {"v": {"x": [1]}}


def test_apply_move_copy_test() -> None:
    doc: Any = {"a": {"b": [1, 2, 3]}, "c": None}
    doc = apply(doc, [
        {"op": "move", "from": "/a/b/0", "path": "/a/b/-"},
        {"op": "copy", "from": "/a/b", "path": "/c"},
        {"op": "move", "from": "/a", "path": "/d"},
        {"op": "move", "from": "/c", "path": "/c"},
        {"op": "test", "path": "/d/b", "value": [2, 3, 1]},
        {"op": "test", "path": "/c/0", "value": 2.0},  # RFC: numbers compare by value
        {"op": "test", "path": "", "value": {"d": {"b": [2, 3, 1]}, "c": [2, 3, 1]}},
    ])
    assert doc == {"c": [2, 3, 1], "d": {"b": [2, 3, 1]}}
    doc["c"].append(4)  # copy made a deep copy
    assert doc["d"]["b"] == [2, 3, 1]


@pytest.mark.parametrize(
    "op, message",
    [
        ({"op": "test", "path": "/a", "value": 1}, "test failed"),
        ({"op": "test", "path": "/t", "value": 1}, "test failed"),  # true is not 1
        ({"op": "add", "path": "a", "value": 1}, "must start with '/'"),
        ({"op": "add", "path": "/x/y", "value": 1}, "no member 'x'"),
        ({"op": "add", "path": "/a/b/c", "value": 1}, "not an object or array"),
        ({"op": "test", "path": "/a/b/c", "value": 1}, "scalar"),
        ({"op": "add", "path": "/l/3", "value": 1}, "out of range"),
        ({"op": "add", "path": "/l/01", "value": 1}, "bad array index"),
        ({"op": "add", "path": "/l/-1", "value": 1}, "bad array index"),
        ({"op": "add", "path": "/~2", "value": 1}, "bad '~' escape"),
        ({"op": "add", "path": "/a"}, "no 'value'"),
        ({"op": "add", "value": 1}, "string 'path'"),
        ({"op": "remove", "path": "/l/2"}, "out of range"),
        ({"op": "remove", "path": "/l/-"}, "bad array index"),
        ({"op": "remove", "path": "/nope"}, "no member"),
        ({"op": "remove", "path": ""}, "whole document"),
        ({"op": "replace", "path": "/nope", "value": 1}, "no member"),
        ({"op": "move", "from": "/a", "path": "/a/x"}, "own child"),
        ({"op": "move", "from": "/nope", "path": "/x"}, "no member"),
        ({"op": "copy", "path": "/x"}, "string 'from'"),
        ({"op": "frobnicate", "path": "/a"}, "unknown operation"),
        ({"path": "/a"}, "unknown operation"),
        ("add", "must be an object"),
    ],
)
def test_apply_errors(op: Any, message: str) -> None:
    with pytest.raises(PatchError, match=message):
        apply({"a": {"b": 2}, "l": [0, 1], "t": True}, [op])
    assert issubclass(PatchError, ValueError)


# ---------------------------------------------------------------- properties

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5)
)
keys = st.text(alphabet="ab/~01-", max_size=3) | st.text(max_size=4)
json_trees = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=5),
    max_leaves=20,
)


@st.composite
def edited(draw: st.DrawFn, tree: Any) -> Any:
    """A copy of ``tree`` with random local edits (so diffs are interesting)."""
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return draw(json_trees)
    if type(tree) is list:
        items: list[Any] = [draw(edited(v)) if draw(st.booleans()) else copy.deepcopy(v) for v in tree]
        for _ in range(draw(st.integers(0, 2))):
            if draw(st.booleans()) and items:
                del items[draw(st.integers(0, len(items) - 1))]
            else:
                items.insert(draw(st.integers(0, len(items))), draw(scalars))
        return items
    if type(tree) is dict:
        members: dict[str, Any] = {
            k: draw(edited(v)) if draw(st.booleans()) else copy.deepcopy(v) for k, v in tree.items()
        }
        for k in draw(st.lists(st.sampled_from(sorted(members)), max_size=2)) if members else []:
            members.pop(k, None)
        members.update(draw(st.dictionaries(keys, scalars, max_size=2)))
        return members
    return tree if choice < 5 else draw(scalars)


tree_pairs = st.tuples(json_trees, json_trees) | json_trees.flatmap(
    lambda old: st.tuples(st.just(old), edited(old))
)


@settings(max_examples=200)
@given(tree_pairs)
def test_diff_then_apply_roundtrips(pair: tuple[Any, Any]) -> None:
    old, new = pair
    ops = check(old, new)  # ours and the PyPI jsonpatch package
    assert {op["op"] for op in ops} <= {"add", "remove", "replace"}
    if same(old, new):
        assert ops == []


@st.composite
def mutations(draw: st.DrawFn) -> tuple[Any, ...]:
    kind = draw(st.sampled_from(["join", "leave", "hit", "move", "give", "drop", "log", "tick", "score"]))
    small = st.integers(0, 1000)
    if kind == "join":
        return (kind, draw(keys))
    if kind == "log":
        return (kind, draw(st.text(max_size=5)), draw(small))
    if kind == "score":
        return (kind, draw(st.integers(-3, 3)), draw(st.none() | small))
    if kind == "move":
        coord = st.floats(-100, 100)
        return (kind, draw(small), draw(coord), draw(coord))
    if kind == "give":
        return (kind, draw(small), draw(st.text(max_size=3)), draw(small))
    return (kind, draw(small), draw(st.sampled_from([1, 0, 2.5, True, False])))


@attrs.define
class State:
    tick: int = 0
    players: dict[str, Player] = attrs.Factory(dict)
    log: list[str] = attrs.Factory(list)
    scores: dict[int, int] = attrs.Factory(dict)
    _dirty: bool = False


def mutate(state: State, m: tuple[Any, ...]) -> None:
    kind, *args = m
    names = sorted(state.players)
    player = None
    if names and kind in ("leave", "hit", "move", "give", "drop"):
        player = state.players[names[args[0] % len(names)]]
    if kind == "join":
        state.players[args[0]] = Player(args[0], 10, (0.0, 0.0))
    elif kind == "log":
        state.log.insert(args[1] % (len(state.log) + 1), args[0])
        del state.log[:-6]
    elif kind == "score":
        if args[1] is None:
            state.scores.pop(args[0], None)
        else:
            state.scores[args[0]] = args[1]
    elif kind == "tick":
        state.tick += 1
    elif player is None:
        return
    elif kind == "leave":
        del state.players[player.name]
    elif kind == "hit":
        player.hp -= 3
        player.alive = player.hp > 0 if args[1] is not True else not player.alive
    elif kind == "move":
        player.pos = (args[1], args[2])
    elif kind == "give":
        player.items.insert(args[2] % (len(player.items) + 1), Item(args[1], args[2] / 7))
    elif kind == "drop" and player.items:
        player.items.pop(args[0] % len(player.items))
    elif kind == "drop":
        player.hp = args[1]  # int -> float/bool type changes


@settings(max_examples=100)
@given(st.lists(st.lists(mutations(), max_size=5), max_size=8))
def test_client_mirror_tracks_evolving_state(batches: list[list[tuple[Any, ...]]]) -> None:
    state = State(players={"ann": Player("ann", 10, (1.0, 2.0), [Item("sword")])})
    prev = to_tree(state)
    mirror = copy.deepcopy(prev)
    other = copy.deepcopy(prev)  # a mirror kept by the PyPI jsonpatch package
    for batch in batches:
        for m in batch:
            mutate(state, m)
        current = to_tree(state)
        wire = orjson.loads(orjson.dumps(diff(prev, current)))  # as sent to clients
        mirror = apply(mirror, wire)
        other = third_party.apply_patch(other, wire, in_place=True)
        assert same(mirror, current)
        assert same(other, current)
        prev = current
