"""The arena demo: moves, ticks, everyone mirrors everyone, held seats."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from gameframe.demo import DEMO_ROOMS
from gameframe.demo.arena import Arena
from gameframe.testing import FakeClient, Harness


class ArenaTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.kit = Harness(DEMO_ROOMS)
        self.alice, self.bob = self.kit.connect(), self.kit.connect()
        self.alice.join_or_create("arena")
        self.bob.join_or_create("arena")
        room = self.kit.room_of(self.alice)
        assert isinstance(room, Arena)
        self.room = room
        self.kit.advance(0.05)  # one patch: alice's mirror learns of bob

    def where(self, viewer: FakeClient, who: FakeClient) -> tuple[float, float]:
        avatar = viewer.state["players"][who.player_id]
        return avatar["x"], avatar["y"]

    def test_everyone_sees_everyone(self) -> None:
        for viewer in (self.alice, self.bob):
            self.assertEqual(
                set(viewer.state["players"]), {self.alice.player_id, self.bob.player_id}
            )

    def test_move_walks_toward_the_target_at_the_arena_speed(self) -> None:
        start = self.where(self.bob, self.alice)
        self.alice.send("move", x=start[0] + 100, y=start[1])
        self.kit.advance_ticks(5)  # 0.25 s at 200 units/s: 50 units
        x, y = self.where(self.bob, self.alice)
        self.assertAlmostEqual(x, min(start[0] + 50, 800), delta=0.05)
        self.assertAlmostEqual(y, start[1], delta=0.05)
        self.kit.advance(2)
        self.assertEqual(self.where(self.bob, self.alice), (min(start[0] + 100, 800), start[1]))
        self.assertEqual(self.bob.state, self.alice.state)

    def test_targets_are_clamped_to_the_arena(self) -> None:
        self.alice.send("move", x=-500, y=10_000)
        self.kit.advance(10)
        self.assertEqual(self.where(self.bob, self.alice), (0.0, 600.0))

    def test_move_checks_its_arguments(self) -> None:
        self.assertEqual(self.alice.request("move", x="left", y=1)["code"], "bad_arguments")
        self.assertEqual(self.alice.request("move", x=1)["code"], "bad_arguments")

    def test_a_dropped_player_keeps_its_seat_for_30_seconds(self) -> None:
        self.alice.drop()
        self.kit.advance(1)
        self.assertFalse(self.bob.state["players"][self.alice.player_id]["connected"])
        self.kit.advance(28)
        back = self.alice.reconnect()
        self.assertEqual(back.player_id, self.alice.player_id)
        self.kit.advance(0.05)
        self.assertTrue(self.bob.state["players"][self.alice.player_id]["connected"])
        self.assertEqual(back.state, self.bob.state)

    def test_after_30_seconds_the_dropped_player_is_gone(self) -> None:
        self.alice.drop()
        self.kit.advance(30.1)
        self.assertNotIn(self.alice.player_id, self.bob.state["players"])

    def test_hold_option(self) -> None:
        carol = self.kit.connect()
        carol.create("arena", hold=2)
        room = self.kit.room_of(carol)
        carol.drop()
        self.kit.advance(2.1)
        self.assertTrue(room.disposed)
