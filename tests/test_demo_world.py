"""The world demo: each player sees only what is within sight of its avatar, and the rest as it walks."""

from __future__ import annotations

import math

from twisted.trial.unittest import SynchronousTestCase

from gameframe.demo.world import World
from gameframe.testing import FakeClient, Harness, MemoryRoomStore, host_of


class SmallWorld(World):
    """The same world, smaller, so the tests run quickly."""

    npcs = 400
    size = 2000


class WorldTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.kit = Harness({"world": SmallWorld}, store=MemoryRoomStore())
        self.alice = self.kit.connect()
        self.alice.join_or_create("world")
        self.room = self.kit.room_of(self.alice)

    def seen(self, client: FakeClient) -> dict[str, dict[str, float]]:
        entities: dict[str, dict[str, float]] = client.state["entities"]
        return entities

    def assert_sees_exactly_what_is_near(self, client: FakeClient) -> None:
        everything = host_of(self.room).room.state.entities
        me = everything[client.player_id]
        near = {
            e
            for e, where in everything.items()
            if math.hypot(where["x"] - me["x"], where["y"] - me["y"]) <= World.sight
        }
        self.assertEqual(set(self.seen(client)), near)

    def test_a_player_sees_only_what_is_in_sight(self) -> None:
        self.kit.advance(1)
        self.assertEqual(self.alice.state["you"], self.alice.player_id)
        seen = self.seen(self.alice)
        self.assertIn(self.alice.player_id, seen)
        self.assertLess(len(seen), SmallWorld.npcs // 4)  # a small part of the world
        self.assert_sees_exactly_what_is_near(self.alice)

    def test_walking_across_the_world_changes_what_is_seen(self) -> None:
        me = self.seen(self.alice)[self.alice.player_id]
        far = (SmallWorld.size - me["x"], SmallWorld.size - me["y"])
        before = set(self.seen(self.alice))
        self.alice.request("move", x=far[0], y=far[1])
        self.kit.advance(15)
        self.assert_sees_exactly_what_is_near(self.alice)
        after = set(self.seen(self.alice))
        self.assertLess(len(before & after), len(before))

    def test_two_players_near_each_other_see_each_other(self) -> None:
        bob = self.kit.connect()
        bob.join_or_create("world")
        where = self.seen(self.alice)[self.alice.player_id]
        bob.request("move", x=where["x"], y=where["y"])
        self.kit.advance(15)
        self.assertIn(bob.player_id, self.seen(self.alice))
        self.assertIn(self.alice.player_id, self.seen(bob))
        self.assertEqual(self.seen(bob)[bob.player_id]["kind"], "player")

    def test_the_world_comes_back_after_a_restart(self) -> None:
        self.kit.advance(1)
        self.kit.restart()
        again = self.alice.reconnect()
        self.assertEqual(again.last("joined")["player_id"], self.alice.player_id)
        self.room = self.kit.room_of(again)
        self.kit.advance(1)
        self.assert_sees_exactly_what_is_near(again)
