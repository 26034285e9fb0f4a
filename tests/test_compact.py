"""Compact patches: the encoding a client asks for on joining, decoded into the same mirror."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from gameframe import Room, _sync
from gameframe import compact as compact_encoding
from gameframe.codec import encode
from gameframe.compact import decode_ops, encode_ops
from gameframe.jsonpatch import PatchError, apply, diff, to_tree
from gameframe.mirror import StateMirror
from gameframe.store.memory import MemoryRoomStore
from gameframe.testing import ClusterHarness, FakeClient, Harness
from gameframe.vocabulary import Message
from tests.test_sync import RecordingLink


class Board(Room):
    """A room whose state the test sets; patches go out when the test says."""

    patch_rate = None

    def on_create(self, options: dict[str, Any]) -> None:
        self.state: Any = {"n": 0}


class RecordingClient(FakeClient):
    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.link = RecordingLink()
        harness.service.connect(self.link)
        self._ids = itertools.count(1)


keys = st.sampled_from(["a", "b", "x", "y", "~0", "a/b", "", "12"])
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-1000, 1000), st.floats(-1e6, 1e6), st.text(max_size=3)
)
trees = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)
    ),
    max_leaves=20,
)
roots = st.one_of(st.dictionaries(keys, trees, max_size=5), st.lists(trees, max_size=5))

# One step of a session, chosen by hypothesis.
steps = st.one_of(
    st.tuples(st.just("set"), roots),
    st.tuples(st.just("bump"), keys, st.integers(0, 3)),  # one field changes: a known path
    st.tuples(st.just("congest"), st.booleans()),
    st.tuples(st.just("sync")),
    st.tuples(st.just("carol")),
)


class PropertyTests(SynchronousTestCase):
    @settings(max_examples=150, deadline=None)
    @given(st.lists(steps, max_size=25))
    def test_compact_and_json_mirrors_equal_the_servers_tree(self, session: list[Any]) -> None:
        """
        Alice asks for JSON Patches, Bob and (later) Carol for compact ones;
        after every patch tick each mirror that is keeping up equals the
        server's tree, and Alice's patches are the RFC 6902 ones, byte for byte.
        """
        kit = Harness({"board": Board})
        alice = RecordingClient(kit)
        room_id = alice.join_or_create("board")["room_id"]
        bob = kit.connect()
        bob.request("join", room_id=room_id, encoding="compact")
        room = kit.room(room_id)
        carol: FakeClient | None = None
        sent = to_tree(room.state)
        for step in session:
            if step[0] == "set":
                room.state = step[1]
            elif step[0] == "bump":
                if isinstance(room.state, dict):
                    room.state[step[1]] = step[2]
            elif step[0] == "congest":
                bob.link.congested = step[1]  # type: ignore[misc]
            elif step[0] == "sync":
                bob.request("sync")
            elif carol is None:
                carol = kit.connect()
                carol.request("join", room_id=room_id, encoding="compact")
            else:
                carol.leave()
                carol = None
            alice.link.raw.clear()
            room.send_patches()
            tree = to_tree(room.state)
            if tree != sent:
                (data,) = alice.link.raw
                self.assertEqual(
                    data,
                    encode({"action": "patch", "seq": alice.link.mirror.seq, "patch": diff(sent, tree)}),
                )
            sent = tree
            self.assertEqual(alice.state, tree)
            if not bob.link.congested:
                self.assertEqual(bob.state, tree)
            if carol is not None:
                self.assertEqual(carol.state, tree)
        self.assertEqual([m for m in alice.received("patch") if "ops" in m], [])


class CompactTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.kit = Harness({"board": Board})

    def test_paths_are_sent_once_then_by_number(self) -> None:
        alice = self.kit.connect()
        alice.request("join_or_create", room="board", encoding="compact")
        room = self.kit.room_of(alice)
        room.state["n"] = 1
        room.send_patches()
        room.state["n"] = 2
        room.state["m"] = [1]
        room.send_patches()
        room.state["m"].insert(0, 0)
        del room.state["n"]
        room.send_patches()
        patches = alice.received("patch")
        self.assertEqual(patches[0]["ops"], ["/n", 1])
        self.assertTrue(patches[0]["reset"])  # the state before it emptied the table
        self.assertEqual(patches[1]["ops"], [0, 2, ["/m", [1], 1]])
        self.assertEqual(patches[2]["ops"], [[0], ["/m/0", 0, 1]])
        self.assertNotIn("reset", patches[1])
        self.assertNotIn("patch", patches[0])
        self.assertEqual(alice.state, {"m": [0, 1]})

    def test_one_encoding_per_view_per_encoding(self) -> None:
        sizes: list[int] = []
        sync = _sync.StateSync(lambda key, tree: tree, sizes.append)
        links = [RecordingLink() for _ in range(4)]
        links[2].encoding = links[3].encoding = "compact"  # type: ignore[misc]
        for link in links:
            self.kit.service.connect(link)
            sync.subscribe(link.player, None, {"n": 0})
        sync.patch({"n": 1})
        self.assertEqual(len(sizes), 2)
        self.assertIs(links[0].raw[-1], links[1].raw[-1])
        self.assertIs(links[2].raw[-1], links[3].raw[-1])
        self.assertIn(b'"ops"', links[2].raw[-1])
        for link in links[2:]:
            sync.unsubscribe(link.player)
        sync.patch({"n": 2})
        self.assertEqual(len(sizes), 3)  # nobody wants compact: not encoded

    def test_a_compact_member_joining_resets_everyones_table(self) -> None:
        alice, bob = self.kit.connect(), self.kit.connect()
        room_id = alice.request("join_or_create", room="board", encoding="compact")["room_id"]
        room = self.kit.room(room_id)
        room.state["n"] = 1
        room.send_patches()
        bob.request("join", room_id=room_id, encoding="compact")
        room.state["n"] = 2
        room.send_patches()
        self.assertEqual(alice.last("patch")["ops"], ["/n", 2])
        self.assertTrue(alice.last("patch")["reset"])
        self.assertEqual(alice.state, bob.state)
        self.assertEqual(bob.state, {"n": 2})

    def test_the_table_is_emptied_when_full(self) -> None:
        self.patch(compact_encoding, "MAX_PATHS", 3)
        alice = self.kit.connect()
        alice.request("join_or_create", room="board", encoding="compact")
        room = self.kit.room_of(alice)
        for i in range(4):
            room.state[f"k{i}"] = i
            room.send_patches()
        resets = [bool(p.get("reset")) for p in alice.received("patch")]
        self.assertEqual(resets, [True, False, False, True])  # 3 paths known: start over
        self.assertEqual(alice.state, to_tree(room.state))

    def test_reconnect_chooses_the_encoding_again(self) -> None:
        class Held(Board):
            def on_drop(self, player: Any) -> float:
                return 30

        kit = Harness({"held": Held})
        alice = kit.connect()
        alice.request("join_or_create", room="held", encoding="compact")
        room = kit.room_of(alice)
        alice.drop()
        back = kit.connect()
        self.assertEqual(back.request("reconnect", token=alice.token)["action"], "joined")
        room.state["n"] = 5
        room.send_patches()
        self.assertIn("patch", back.last("patch"))  # no encoding asked: JSON Patch
        again = back.reconnect()
        self.assertEqual(again.link.encoding, "json")
        third = kit.connect()
        third.request("reconnect", token=again.token, encoding="compact")
        room.state["n"] = 6
        room.send_patches()
        self.assertEqual(third.last("patch")["ops"], ["/n", 6])
        self.assertEqual(third.state, {"n": 6})

    def test_an_unknown_encoding_is_refused(self) -> None:
        alice = self.kit.connect()
        for encoding in ("msgpack", 1, None):
            reply = alice.request("join_or_create", room="board", encoding=encoding)
            self.assertEqual((reply["action"], reply["code"]), ("error", "bad_arguments"))
        self.assertIsNone(alice.player.room)


class CodecTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        ops: list[dict[str, Any]] = [
            {"op": "replace", "path": "/a", "value": 1},
            {"op": "add", "path": "/b/0", "value": {"c": [2]}},
            {"op": "remove", "path": "/a"},
            {"op": "replace", "path": "", "value": 3},
        ]
        paths: dict[str, int] = {}
        compact = encode_ops(ops, paths)
        self.assertEqual(compact, ["/a", 1, ["/b/0", {"c": [2]}, 1], [0], "", 3])
        # A replace may come as one array element too.
        self.assertEqual(decode_ops([["/a", 1], 0, [5]], []), ops[:1] + [{"op": "replace", "path": "/a", "value": [5]}])
        table: list[str] = []
        self.assertEqual(decode_ops(orjson.loads(orjson.dumps(compact)), table), ops)
        self.assertEqual(table, ["/a", "/b/0", ""])

    def test_bad_operations_raise_patch_error(self) -> None:
        for bad in ([[5, 1]], [["/a", 1, 2]], [[]], ["/a"], {"a": 1}, [[True, 1]], [[-1]], [5, 1], [None, 1]):
            self.assertRaises(PatchError, decode_ops, bad, [])

    def test_the_mirror_goes_stale_on_an_unknown_reference(self) -> None:
        mirror = StateMirror()
        mirror.handle({"action": "state", "seq": 0, "state": {"a": 0}})
        mirror.handle({"action": "patch", "seq": 1, "ops": ["/a", 1]})
        self.assertEqual(mirror.state, {"a": 1})
        mirror.handle({"action": "patch", "seq": 2, "ops": [1, 2]})
        self.assertTrue(mirror.stale)
        mirror.handle({"action": "state", "seq": 2, "state": {"a": 0}})
        self.assertEqual(mirror.paths, [])
        self.assertFalse(mirror.stale)
        self.assertEqual(apply(mirror.state, []), {"a": 0})


def on_a(nodes: Any, origin: str, room_type: str) -> str:
    """New rooms go to node a."""
    return "a"


class HeldBoard(Board):
    """A Board that holds a dropped player's seat."""

    def on_drop(self, player: Any) -> float:
        return 30


def across(**options: Any) -> ClusterHarness:
    """Nodes a, b, c; every room on a."""
    return ClusterHarness({"board": HeldBoard}, nodes=["a", "b", "c"], placement=on_a, **options)


def patches(client: FakeClient) -> list[Message]:
    """The client's patches, as received (seq, ops, reset)."""
    return [m for m in client.messages if m["action"] == "patch"]


# One step of a session across nodes, chosen by hypothesis.
cluster_steps = st.one_of(
    st.tuples(st.just("set"), roots),
    st.tuples(st.just("bump"), keys, st.integers(0, 3)),
    st.tuples(st.just("sync")),
    st.tuples(st.just("reconnect"), st.sampled_from(["a", "b", "c"]), st.booleans()),
    st.tuples(st.just("carol")),
)


class AcrossNodesTests(SynchronousTestCase):
    """A player connected to one node, its room on another: compact patches all the same."""

    def test_a_remote_compact_member_gets_what_a_local_one_gets(self) -> None:
        kit = across()
        local = kit.node("a").connect()
        room_id = local.request("create", room="board", encoding="compact")["room_id"]
        far = kit.node("b").connect()
        self.assertEqual(far.request("join", room_id=room_id, encoding="compact")["action"], "joined")
        plain = kit.node("c").connect()
        self.assertEqual(plain.join(room_id)["action"], "joined")
        self.assertEqual(kit.node("a").service.rooms.keys(), {room_id})  # two of three are remote
        room = kit.rooms()[room_id]
        sent = []
        for change in range(6):
            room.state[f"k{change % 3}"] = change
            if change == 3:
                room.state["list"] = [1, 2]
            if change == 5:
                del room.state["k0"]
                room.state["list"].insert(0, 0)
            room.send_patches()
            kit.settle()
            sent.append(to_tree(room.state))
            for client in (local, far, plain):
                self.assertEqual(client.state, sent[-1])
        self.assertEqual(patches(far), patches(local))
        self.assertEqual(len(patches(far)), 6)
        self.assertTrue(all("ops" in p and "patch" not in p for p in patches(far)))
        self.assertTrue(patches(far)[0]["reset"])
        self.assertEqual(patches(far)[3]["ops"][:2], [0, 3])  # "/k0" went out once, then by number
        self.assertTrue(all("patch" in p and "ops" not in p for p in patches(plain)))

    def test_each_encoding_of_a_patch_crosses_the_bus_once_per_node(self) -> None:
        kit = across()
        room_id = kit.node("a").connect().create("board")["room_id"]
        far = [kit.node("b").connect() for _ in range(6)]
        for i, client in enumerate(far):  # compact and JSON members alternate
            fields = {"encoding": "compact"} if i % 2 else {}
            client.request("join", room_id=room_id, **fields)
        room = kit.rooms()[room_id]
        room.state["n"] = 1
        before = kit.node("b").node.forwarded_in
        room.send_patches()
        kit.settle()
        self.assertEqual(kit.node("b").node.forwarded_in - before, 2)  # one item per encoding
        for i, client in enumerate(far):
            self.assertIn("ops" if i % 2 else "patch", client.last("patch"))
            self.assertEqual(client.state, {"n": 1})

    def test_a_remote_member_is_told_compact_only_if_it_asks(self) -> None:
        kit = across()
        room_id = kit.node("a").connect().create("board")["room_id"]
        far = kit.node("b").connect()
        far.join(room_id)
        far_link = kit.node("a").service.rooms[room_id].players[far.player_id].link
        self.assertEqual(far_link.encoding, "json")  # type: ignore[union-attr]
        room = kit.rooms()[room_id]
        room.state["n"] = 1
        room.send_patches()
        kit.settle()
        self.assertEqual(far.last("patch"), {"action": "patch", "seq": 1, "patch": [{"op": "replace", "path": "/n", "value": 1}]})

    def test_a_full_state_catch_up_empties_the_remote_table(self) -> None:
        kit = across()
        room_id = kit.node("a").connect().create("board")["room_id"]
        far = kit.node("b").connect()
        far.request("join", room_id=room_id, encoding="compact")
        room = kit.rooms()[room_id]
        room.state["n"] = 1
        room.send_patches()
        kit.settle()
        self.assertEqual(far.request("sync")["action"], "state")
        room.state["n"] = 2
        room.send_patches()
        kit.settle()
        self.assertEqual(far.last("patch"), {"action": "patch", "seq": 2, "reset": True, "ops": ["/n", 2]})
        # The cluster's store goes away and comes back: stand-ins get their state again.
        kit.store.down()
        kit.advance(2)
        room.state["n"] = 3
        room.send_patches()
        kit.store.up(empty=True)
        kit.advance(2)
        room.state["n"] = 4
        room.send_patches()
        kit.settle()
        self.assertEqual(far.state, {"n": 4})
        self.assertTrue(far.last("patch")["reset"])

    def test_reconnect_through_any_node_chooses_the_encoding_again(self) -> None:
        kit = across()
        room_id = kit.node("a").connect().create("board")["room_id"]
        far = kit.node("b").connect()
        far.request("join", room_id=room_id, encoding="compact")
        room = kit.rooms()[room_id]
        far.disconnect()
        back = kit.node("c").connect()
        self.assertEqual(back.request("reconnect", token=far.token, encoding="compact")["action"], "joined")
        room.state["n"] = 1
        room.send_patches()
        kit.settle()
        self.assertEqual(back.last("patch")["ops"], ["/n", 1])
        back.disconnect()
        plain = kit.node("b").connect()
        self.assertEqual(plain.request("reconnect", token=back.token)["action"], "joined")
        room.state["n"] = 2
        room.send_patches()
        kit.settle()
        self.assertIn("patch", plain.last("patch"))
        self.assertEqual(plain.state, {"n": 2})

    def test_a_room_restored_on_another_node_goes_on_in_compact(self) -> None:
        kit = across(room_store=MemoryRoomStore())
        room_id = kit.node("a").connect().create("board")["room_id"]
        compact = {}
        for name in ("b", "c"):  # whichever restores the room, the other's player is remote
            compact[name] = kit.node(name).connect()
            compact[name].request("join", room_id=room_id, encoding="compact")
        plain = kit.node("b").connect()
        plain.join(room_id)
        room = kit.rooms()[room_id]
        room.state["n"] = 1
        room.send_patches()
        kit.advance(Board.snapshot_interval)
        kit.kill("a")
        kit.advance(15)
        (restored,) = kit.rooms().values()
        self.assertIsNot(restored, room)
        restored.state["n"] = 2
        restored.send_patches()
        kit.settle()
        for client in compact.values():
            self.assertEqual(len(client.received("joined")), 2)  # seated again
            self.assertIn("ops", client.last("patch"))
            self.assertEqual(client.state, {"n": 2})
        self.assertIn("patch", plain.last("patch"))
        self.assertEqual(plain.state, {"n": 2})

    @settings(max_examples=60, deadline=None)
    @given(st.lists(cluster_steps, max_size=20))
    def test_mirrors_across_nodes_equal_the_rooms_tree(self, session: list[Any]) -> None:
        """
        Bob (on b, compact) and Alice (on a with the room, JSON) play along;
        Bob reconnects through any node, compact or not, asks for the whole
        state again, and Carol (on c, compact) comes and goes: after every
        patch tick each mirror equals the room's tree.
        """
        kit = across()
        alice = kit.node("a").connect()
        room_id = alice.create("board")["room_id"]
        bob = kit.node("b").connect()
        bob.request("join", room_id=room_id, encoding="compact")
        room = kit.rooms()[room_id]
        bob_compact = True
        carol: FakeClient | None = None
        for step in session:
            if step[0] == "set":
                room.state = step[1]
            elif step[0] == "bump":
                if isinstance(room.state, dict):
                    room.state[step[1]] = step[2]
            elif step[0] == "sync":
                bob.request("sync")
            elif step[0] == "reconnect":
                bob.disconnect()
                back = kit.node(step[1]).connect()
                fields = {"encoding": "compact"} if step[2] else {}
                self.assertEqual(back.request("reconnect", token=bob.token, **fields)["action"], "joined")
                bob, bob_compact = back, step[2]
            elif carol is None:
                carol = kit.node("c").connect()
                carol.request("join", room_id=room_id, encoding="compact")
            else:
                carol.leave()
                carol = None
            room.send_patches()
            kit.settle()
            tree = to_tree(room.state)
            for client in (alice, bob, carol):
                if client is not None:
                    self.assertEqual(client.state, tree)
            # Each client's patches are in the encoding its connection asked for.
            self.assertTrue(all("patch" in p for p in patches(alice)))
            self.assertTrue(all(("ops" in p) == bob_compact for p in patches(bob)))
            self.assertTrue(carol is None or all("ops" in p for p in patches(carol)))
