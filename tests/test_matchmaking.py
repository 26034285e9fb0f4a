"""Matchmaking: filter_by options, metadata in list, full rooms lock themselves."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from gameframe import Player, Room
from gameframe.testing import Harness


class Battle(Room):
    max_players = 2
    filter_by = ("mode", "map")

    def on_create(self, options: dict[str, Any]) -> None:
        self.set_metadata(mode=options.get("mode"), map=options.get("map"))

    def on_join(self, player: Player, options: dict[str, Any]) -> None:
        self.set_metadata(names=sorted(self.players))


class FilterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.kit = Harness({"battle": Battle})

    def join(self, **options: Any) -> str:
        client = self.kit.connect()
        return str(client.join_or_create("battle", **options)["room_id"])

    def test_same_options_share_a_room(self) -> None:
        self.assertEqual(self.join(mode="duel", map="a"), self.join(mode="duel", map="a"))

    def test_different_filtered_options_do_not(self) -> None:
        first = self.join(mode="duel", map="a")
        self.assertNotEqual(first, self.join(mode="duel", map="b"))
        self.assertNotEqual(first, self.join(mode="ffa", map="a"))

    def test_unfiltered_options_do_not_matter(self) -> None:
        self.assertEqual(
            self.join(mode="duel", map="a", skin="red"),
            self.join(mode="duel", map="a", skin="blue"),
        )

    def test_full_rooms_lock_and_a_new_one_opens(self) -> None:
        first = self.join(mode="duel", map="a")
        self.assertEqual(first, self.join(mode="duel", map="a"))
        third = self.join(mode="duel", map="a")
        self.assertNotEqual(first, third)
        listed = {r["room_id"]: r for r in self.kit.connect().request("list", room="battle")["rooms"]}
        self.assertTrue(listed[first]["locked"])
        self.assertTrue(listed[first]["full"])
        self.assertFalse(listed[third]["locked"])
        self.assertFalse(listed[third]["full"])

    def test_metadata_is_listed(self) -> None:
        room_id = self.join(mode="duel", map="a")
        (listed,) = self.kit.connect().request("list", room="battle")["rooms"]
        self.assertEqual(listed["room_id"], room_id)
        self.assertEqual(listed["metadata"]["mode"], "duel")
        self.assertEqual(listed["metadata"]["map"], "a")
        self.assertEqual(len(listed["metadata"]["names"]), 1)
        self.assertEqual(listed["max_players"], 2)
        self.assertEqual(listed["players"], 1)


class StrictFilterTests(SynchronousTestCase):
    def test_filters_compare_json_values_exactly(self) -> None:
        kit = Harness({"battle": Battle})
        rooms = {
            str(kit.connect().join_or_create("battle", mode=value, map="a")["room_id"])
            for value in (1, 1.0, True)
        }
        self.assertEqual(len(rooms), 3)
