"""State sync: full state on join, JSON Patches after, per-player views, the simulation clock."""

from __future__ import annotations

from typing import Any, Hashable, TypeVar

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from gameframe import Player, Room, action
from gameframe.jsonpatch import to_tree
from gameframe.testing import FakeClient, FakeLink, Harness


@attrs.define
class Card:
    suit: str
    rank: int


class CardTable(Room):
    """Each player sees its own hand; everyone sees the table and hand sizes."""

    patch_rate = None  # the tests send patches when they choose

    def on_create(self, options: dict[str, Any]) -> None:
        self.state: dict[str, Any] = {"table": [], "hands": {}, "scores": {}}

    def on_join(self, player: Player, options: dict[str, Any]) -> None:
        self.state["hands"][player.id] = []
        self.state["scores"][player.id] = 0

    def on_leave(self, player: Player, reason: str) -> None:
        del self.state["hands"][player.id]
        del self.state["scores"][player.id]

    def view_key(self, player: Player) -> Hashable:
        return player.id

    def view_state(self, key: Hashable, tree: Any) -> Any:
        hands = tree["hands"]
        return {
            **tree,
            "hands": {pid: (hand if pid == key else len(hand)) for pid, hand in hands.items()},
        }


def hidden_view(room: CardTable, player_id: str) -> Any:
    return room.view_state(player_id, to_tree(room.state))


# One mutation of the table's state, chosen by hypothesis.
mutations = st.one_of(
    st.tuples(st.just("deal"), st.integers(0, 3), st.sampled_from("SHDC"), st.integers(1, 13)),
    st.tuples(st.just("play"), st.integers(0, 3), st.integers(0, 10)),
    st.tuples(st.just("discard"), st.integers(0, 10)),
    st.tuples(st.just("insert"), st.integers(0, 10), st.sampled_from("SHDC"), st.integers(1, 13)),
    st.tuples(st.just("score"), st.integers(0, 3), st.integers(-5, 5)),
    st.tuples(st.just("note"), st.text(max_size=5), st.none() | st.integers(-(2**53), 2**53) | st.text(max_size=3)),
    st.tuples(st.just("forget"), st.text(max_size=5)),
    st.tuples(st.just("patch")),
)


def mutate(room: CardTable, step: tuple[Any, ...]) -> None:
    state = room.state
    ids = list(room.players)
    kind = step[0]
    if kind == "deal":
        state["hands"][ids[step[1] % len(ids)]].append(Card(step[2], step[3]))
    elif kind == "play":
        hand = state["hands"][ids[step[1] % len(ids)]]
        if hand:
            state["table"].append(hand.pop(step[2] % len(hand)))
    elif kind == "discard":
        if state["table"]:
            del state["table"][step[1] % len(state["table"])]
    elif kind == "insert":
        table = state["table"]
        table.insert(step[1] % (len(table) + 1), Card(step[2], step[3]))
    elif kind == "score":
        state["scores"][ids[step[1] % len(ids)]] += step[2]
    elif kind == "note":
        state.setdefault("notes", {})[step[1]] = step[2]
    elif kind == "forget":
        state.get("notes", {}).pop(step[1], None)
    elif kind == "patch":
        room.send_patches()


class StateSyncPropertyTests(SynchronousTestCase):
    @settings(max_examples=150, deadline=None)
    @given(st.lists(mutations, max_size=30), st.integers(0, 30))
    def test_mirrors_equal_each_players_view(
        self, steps: list[tuple[Any, ...]], late_join_at: int
    ) -> None:
        """
        For any mutations (nested containers, deletions, list inserts and
        removals) with a hidden hand per player, every client's mirror (its
        full state plus every patch, applied as a client applies them)
        equals the server's view for that player; a late joiner too.
        """
        kit = Harness({"cards": CardTable})
        clients = [kit.connect() for _ in range(3)]
        for client in clients:
            client.join_or_create("cards")
        room = kit.room_of(clients[0])
        assert isinstance(room, CardTable)
        late = kit.connect()
        for index, step in enumerate(steps):
            if index == late_join_at:
                late.join_or_create("cards")
                clients.append(late)
            mutate(room, step)
        room.send_patches()
        for client in clients:
            self.assertEqual(client.state, hidden_view(room, client.player_id))
            self.assertNotIn("patch", [m["action"] for m in client.messages[:2]])

    def test_hands_are_hidden_from_other_players(self) -> None:
        kit = Harness({"cards": CardTable})
        alice, bob = kit.connect(), kit.connect()
        alice.join_or_create("cards")
        bob.join_or_create("cards")
        room = kit.room_of(alice)
        room.state["hands"][alice.player_id].append(Card("S", 1))
        room.send_patches()
        self.assertEqual(alice.state["hands"][alice.player_id], [{"suit": "S", "rank": 1}])
        self.assertEqual(bob.state["hands"][alice.player_id], 1)
        self.assertNotIn(b'"S"', repr(bob.messages).encode())


class Shared(Room):
    """One view for everyone; patches on the default 50 ms clock."""

    def on_create(self, options: dict[str, Any]) -> None:
        self.state = {"players": {}}

    def on_join(self, player: Player, options: dict[str, Any]) -> None:
        self.state["players"][player.id] = {"x": 0}

    def on_leave(self, player: Player, reason: str) -> None:
        del self.state["players"][player.id]

    @action
    def move(self, player: Player, x: int) -> None:
        self.state["players"][player.id]["x"] = x


class Plain(Room):
    """A room without state."""


R = TypeVar("R", bound=Room)


def alone_in(room_class: type[R]) -> tuple[Harness, FakeClient, R]:
    """A harness with one player, alone in a room of this class; the room."""
    kit = Harness({"solo": room_class})
    alice = kit.connect()
    alice.join_or_create("solo")
    room = kit.room_of(alice)
    assert isinstance(room, room_class)
    return kit, alice, room


class RecordingLink(FakeLink):
    """A FakeLink that also keeps the exact bytes objects it was handed."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: list[bytes] = []

    def send_encoded(self, data: bytes) -> None:
        self.raw.append(data)
        super().send_encoded(data)


class StateMessagesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.kit = Harness({"shared": Shared})

    def test_join_gets_full_state_after_joined(self) -> None:
        alice = self.kit.connect()
        alice.join_or_create("shared")
        actions = [m["action"] for m in alice.messages]
        self.assertEqual(actions, ["welcome", "joined", "state"])
        state = alice.last("state")
        self.assertEqual(state["state"], {"players": {alice.player_id: {"x": 0}}})
        self.assertIsInstance(state["seq"], int)

    def test_patches_on_the_patch_clock_with_seq_growing_by_one(self) -> None:
        alice = self.kit.connect()
        alice.join_or_create("shared")
        first = alice.last("state")["seq"]
        for x in (1, 2, 3):
            alice.send("move", x=x)
            self.kit.advance(0.05)
        patches = alice.received("patch")
        self.assertEqual([p["seq"] for p in patches], [first + 1, first + 2, first + 3])
        self.assertEqual(
            patches[0]["patch"],
            [{"op": "replace", "path": f"/players/{alice.player_id}/x", "value": 1}],
        )
        self.assertEqual(alice.state, {"players": {alice.player_id: {"x": 3}}})

    def test_no_change_sends_no_patch(self) -> None:
        alice = self.kit.connect()
        alice.join_or_create("shared")
        self.kit.advance(1)
        self.assertEqual(alice.received("patch"), [])

    def test_changes_between_patches_merge_into_one(self) -> None:
        alice = self.kit.connect()
        alice.join_or_create("shared")
        for x in range(10):
            alice.send("move", x=x)
        self.kit.advance(0.05)
        self.assertEqual(len(alice.received("patch")), 1)
        self.assertEqual(alice.state["players"][alice.player_id]["x"], 9)

    def test_one_encoding_per_view(self) -> None:
        """Players sharing a view get the very same bytes object."""
        links = []
        for _ in range(3):
            link = RecordingLink()
            self.kit.service.connect(link)
            self.kit.service.receive(link.player, {"action": "join_or_create", "room": "shared"})
            links.append(link)
        self.kit.service.receive(links[0].player, {"action": "move", "x": 5})
        self.kit.advance(0.05)
        patches = [link.raw[-1] for link in links]
        self.assertIn(b'"patch"', patches[0])
        self.assertTrue(all(p is patches[0] for p in patches))

    def test_sync_resends_full_state(self) -> None:
        alice = self.kit.connect()
        alice.join_or_create("shared")
        alice.send("move", x=7)
        self.kit.advance(0.05)
        reply = alice.request("sync")
        self.assertEqual(reply["action"], "state")
        self.assertEqual(reply["state"], {"players": {alice.player_id: {"x": 7}}})
        self.assertEqual(reply["seq"], alice.received("patch")[-1]["seq"])

    def test_sync_outside_a_room(self) -> None:
        alice = self.kit.connect()
        self.assertEqual(alice.request("sync")["code"], "not_in_room")

    def test_mirror_detects_a_gap(self) -> None:
        alice = self.kit.connect()
        alice.join_or_create("shared")
        alice.link.mirror.seq = -5  # as if a patch had been lost
        alice.send("move", x=1)
        self.kit.advance(0.05)
        self.assertTrue(alice.link.mirror.stale)
        alice.send("sync")
        self.assertFalse(alice.link.mirror.stale)
        self.assertEqual(alice.state["players"][alice.player_id]["x"], 1)

    def test_room_without_state_sends_none(self) -> None:
        kit, alice, _ = alone_in(Plain)
        kit.advance(1)
        self.assertEqual([m["action"] for m in alice.messages], ["welcome", "joined"])


class Ticker(Room):
    tick_rate = 20

    def on_create(self, options: dict[str, Any]) -> None:
        self.dts: list[float] = []

    def on_tick(self, dt: float) -> None:
        self.dts.append(dt)


class SimulationClockTests(SynchronousTestCase):
    def test_ticks_at_the_rate_with_dt(self) -> None:
        kit, _, room = alone_in(Ticker)
        kit.advance_ticks(20)
        self.assertEqual(kit.ticks(room), 20)
        self.assertEqual(len(room.dts), 20)
        for dt in room.dts:
            self.assertAlmostEqual(dt, 0.05)
        self.assertEqual(kit.tick_overruns(room), 0)

    def test_late_ticks_are_counted_as_overruns(self) -> None:
        kit, _, room = alone_in(Ticker)
        kit.clock.advance(0.5)  # the reactor was busy for half a second
        self.assertEqual(kit.ticks(room), 1)
        self.assertEqual(kit.tick_overruns(room), 9)
        self.assertAlmostEqual(room.dts[-1], 0.5)

    def test_ticks_stop_on_dispose(self) -> None:
        kit, alice, room = alone_in(Ticker)
        alice.leave()
        self.assertTrue(room.disposed)
        kit.advance(1)
        self.assertEqual(kit.ticks(room), 0)
        self.assertEqual(kit.clock.getDelayedCalls(), [])

    def test_set_tick_rate(self) -> None:
        kit, _, room = alone_in(Ticker)
        room.set_tick_rate(10)
        kit.advance(1.0001)
        self.assertEqual(kit.ticks(room), 10)
        room.set_tick_rate(None)
        kit.advance(1)
        self.assertEqual(kit.ticks(room), 10)

    def test_failing_tick_is_logged_and_ticking_goes_on(self) -> None:
        class Broken(Ticker):
            def on_tick(self, dt: float) -> None:
                super().on_tick(dt)
                raise ValueError("boom")

        kit, _, room = alone_in(Broken)
        kit.advance_ticks(3)
        self.assertEqual(kit.ticks(room), 3)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 3)


class NoStateTests(SynchronousTestCase):
    def test_sync_in_a_room_without_state_is_an_error(self) -> None:
        _, alice, _ = alone_in(Plain)
        self.assertEqual(alice.request("sync")["code"], "no_state")


class SharedClockTests(SynchronousTestCase):
    def test_rooms_share_one_timer_per_rate(self) -> None:
        """A thousand rooms ticking at 20 Hz cost one timer, not a thousand."""
        kit = Harness({"t": Ticker})
        clients = [kit.connect() for _ in range(3)]
        for client in clients:
            client.create("t")
        rooms = [kit.room_of(c) for c in clients]
        # Ticks (20/s) and patches (every 50 ms) beat together on one timer.
        self.assertEqual(len(kit.clock.getDelayedCalls()), 1)
        kit.advance_ticks(4, rooms[0])
        self.assertEqual([kit.ticks(r) for r in rooms], [4, 4, 4])
        clients[0].leave()
        kit.advance_ticks(2, rooms[1])
        self.assertEqual([kit.ticks(r) for r in rooms], [4, 6, 6])


class EdgeTests(SynchronousTestCase):
    def test_state_set_after_players_joined_reaches_them(self) -> None:
        class Late(Room):
            @action
            def begin(self, player: Player) -> None:
                self.state = {"round": 1}

        kit = Harness({"late": Late})
        alice, bob = kit.connect(), kit.connect()
        alice.join_or_create("late")
        bob.join_or_create("late")
        self.assertEqual(alice.received("state"), [])
        alice.send("begin")
        kit.advance(0.05)
        self.assertEqual(alice.state, {"round": 1})
        self.assertEqual(bob.state, {"round": 1})

    def test_a_state_that_cannot_be_sent_does_not_hang_the_player(self) -> None:
        class Broken(Room):
            def on_create(self, options: dict[str, Any]) -> None:
                self.state = {"tags": {"a", "b"}}  # a set is not JSON

        kit = Harness({"broken": Broken})
        alice = kit.connect()
        self.assertEqual(alice.join_or_create("broken")["action"], "joined")
        self.assertEqual(alice.last("error")["code"], "internal_error")
        self.assertEqual(alice.request("list")["action"], "rooms")
        self.assertTrue(self.flushLoggedErrors(TypeError))

    def test_ticks_come_before_patches_in_a_shared_beat(self) -> None:
        class Counter(Room):
            tick_rate = 20

            def on_create(self, options: dict[str, Any]) -> None:
                self.state = {"n": 0}

            def on_tick(self, dt: float) -> None:
                self.state["n"] += 1

        kit, alice, room = alone_in(Counter)
        room.set_tick_rate(20)  # registered again, after the patch clock
        kit.advance_ticks(5)
        self.assertEqual(alice.state, room.state)

    def test_no_tick_is_lost_to_float_rounding(self) -> None:
        kit, _, room = alone_in(Ticker)
        for _ in range(500):
            kit.advance_ticks(1)
        self.assertEqual((kit.ticks(room), kit.tick_overruns(room)), (500, 0))

    def test_a_patch_that_does_not_apply_makes_the_mirror_stale(self) -> None:
        from gameframe.mirror import StateMirror

        mirror = StateMirror()
        mirror.handle({"action": "state", "seq": 3, "state": {"a": 1}})
        mirror.handle({"action": "patch", "seq": 4, "patch": [{"op": "remove", "path": "/zzz"}]})
        self.assertTrue(mirror.stale)


class PatchRateTests(SynchronousTestCase):
    def test_set_patch_rate(self) -> None:
        kit = Harness({"shared": Shared})
        alice = kit.connect()
        alice.join_or_create("shared")
        room = kit.room_of(alice)
        room.set_patch_rate(0.5)
        alice.send("move", x=1)
        kit.advance(0.3)
        self.assertEqual(alice.received("patch"), [])
        kit.advance(0.2)
        self.assertEqual(len(alice.received("patch")), 1)
        room.set_patch_rate(None)
        alice.send("move", x=2)
        kit.advance(5)
        self.assertEqual(len(alice.received("patch")), 1)
        room.send_patches()
        self.assertEqual(alice.state["players"][alice.player_id]["x"], 2)


class CongestedTests(SynchronousTestCase):
    """A player whose socket is backed up gets no patches queued, then one full state."""

    def test_patches_are_skipped_while_congested_then_one_full_state(self) -> None:
        class Counter(Room):
            def on_create(self, options: dict[str, Any]) -> None:
                self.state = {"n": -1}

        kit = Harness({"plain": Counter})
        alice, bob = kit.connect(), kit.connect()
        room_id = alice.join_or_create("plain")["room_id"]
        bob.join(room_id)
        room = kit.room(room_id)
        bob.link.congested = True  # type: ignore[misc]
        bob.clear()
        for n in range(5):
            room.state["n"] = n
            kit.advance(0.05)
        self.assertEqual(bob.messages, [])
        self.assertEqual(len(alice.received("patch")), 5)
        bob.link.congested = False  # type: ignore[misc]
        room.send_patches()  # nothing changed since: bob still catches up
        (caught_up,) = bob.messages
        self.assertEqual(caught_up["action"], "state")
        self.assertEqual(bob.state, alice.state)
        room.state["n"] = 99
        room.send_patches()
        self.assertEqual(bob.last()["action"], "patch")
        self.assertEqual(bob.state, alice.state)
        self.assertEqual(bob.state["n"], 99)
