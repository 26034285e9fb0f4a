"""Reconnection: a dropped player's seat is held, and a token brings the player back."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from gameframe import Player, Room, action
from gameframe.testing import Harness


class Held(Room):
    """Holds seats for 10 s; records hook calls."""

    max_players = 2
    reconnect_timeout = 10.0

    def on_create(self, options: dict[str, Any]) -> None:
        self.state = {"score": 0}
        self.events: list[tuple[str, str]] = []

    def on_leave(self, player: Player, reason: str) -> None:
        self.events.append(("leave", reason))

    def on_drop(self, player: Player) -> float:
        self.events.append(("drop", player.id))
        return super().on_drop(player)

    def on_reconnect(self, player: Player) -> None:
        self.events.append(("reconnect", player.id))

    @action
    def score(self, player: Player) -> int:
        self.state["score"] += 1
        return int(self.state["score"])

    @action
    def poke(self, player: Player, who: str) -> None:
        self.send(self.players[who], {"action": "poked", "by": player.id})


class ReconnectTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.kit = Harness({"held": Held})
        self.alice, self.bob = self.kit.connect(), self.kit.connect()
        self.alice.join_or_create("held")
        self.bob.join_or_create("held")
        room = self.kit.room_of(self.alice)
        assert isinstance(room, Held)
        self.room = room

    def test_joined_carries_a_token(self) -> None:
        token = self.alice.last("joined")["token"]
        self.assertIsInstance(token, str)
        self.assertGreaterEqual(len(token), 16)
        self.assertNotEqual(token, self.bob.last("joined")["token"])

    def test_reconnect_within_the_window_restores_the_seat(self) -> None:
        self.alice.drop()
        self.assertEqual(self.room.events, [("drop", self.alice.player_id)])
        self.assertIn(self.alice.player_id, self.room.players)
        self.bob.request("score")
        self.kit.advance(9)
        back = self.alice.reconnect()
        joined = back.last("joined")
        self.assertEqual(joined["player_id"], self.alice.player_id)
        self.assertEqual(joined["room_id"], self.room.room_id)
        self.assertEqual(back.player_id, self.alice.player_id)
        self.assertEqual(back.state, {"score": 1})
        self.assertEqual(self.room.events[-1], ("reconnect", self.alice.player_id))
        # The seat is really this player's again: its actions reach the room.
        self.assertEqual(back.request("score")["result"], 2)
        self.kit.advance(60)
        self.assertIn(self.alice.player_id, self.room.players)

    def test_messages_sent_while_dropped_arrive_after_the_state(self) -> None:
        self.alice.drop()
        self.bob.send("poke", who=self.alice.player_id)
        back = self.alice.reconnect()
        actions = [m["action"] for m in back.messages]
        self.assertEqual(actions, ["welcome", "joined", "state", "poked"])

    def test_held_messages_are_bounded(self) -> None:
        self.alice.drop()
        for _ in range(Held.max_held_messages + 20):
            self.bob.send("poke", who=self.alice.player_id)
        back = self.alice.reconnect()
        self.assertEqual(len(back.received("poked")), Held.max_held_messages)

    def test_after_the_window_the_player_leaves(self) -> None:
        self.alice.drop()
        self.kit.advance(10)
        self.assertNotIn(self.alice.player_id, self.room.players)
        self.assertEqual(self.room.events[-1], ("leave", "disconnect"))
        back = self.alice.reconnect()
        self.assertEqual(back.last("error")["code"], "invalid_token")

    def test_token_works_once_and_a_fresh_one_is_handed_out(self) -> None:
        old_token = self.alice.token
        self.alice.drop()
        back = self.alice.reconnect()
        new_token = back.token
        self.assertNotEqual(new_token, old_token)
        again = self.alice.reconnect()  # the old token, a second time
        self.assertEqual(again.last("error")["code"], "invalid_token")
        back.drop()
        third = back.reconnect()
        self.assertEqual(third.last("joined")["player_id"], self.alice.player_id)

    def test_wrong_token(self) -> None:
        stranger = self.kit.connect()
        self.assertEqual(
            stranger.request("reconnect", token="nope")["code"], "invalid_token"
        )
        self.assertEqual(
            stranger.request("reconnect", token=5)["code"], "bad_arguments"
        )
        # The connection goes on.
        self.assertEqual(stranger.request("list")["action"], "rooms")

    def test_token_after_leaving_does_not_work(self) -> None:
        token = self.alice.token
        self.alice.leave()
        stranger = self.kit.connect()
        self.assertEqual(
            stranger.request("reconnect", token=token)["code"], "invalid_token"
        )

    def test_held_seats_count_as_taken(self) -> None:
        self.alice.drop()
        carol = self.kit.connect()
        carol.join(self.room.room_id)
        self.assertEqual(carol.last("error")["code"], "room_full")

    def test_reconnect_replaces_a_connection_not_yet_seen_dead(self) -> None:
        back = self.alice.reconnect()
        self.assertEqual(back.last("joined")["player_id"], self.alice.player_id)
        self.assertEqual(self.alice.link.closed, ("replaced", "the player reconnected elsewhere"))
        # The old connection's close arriving late does not drop the player.
        self.alice.disconnect()
        self.assertIsNotNone(self.room.players[self.alice.player_id].link)
        self.assertEqual(back.request("score")["result"], 1)

    def test_no_hold_means_leaving_at_once(self) -> None:
        class Quick(Room):
            pass

        kit = Harness({"q": Quick})
        alice = kit.connect()
        alice.join_or_create("q")
        room = kit.room_of(alice)
        alice.drop()
        self.assertTrue(room.disposed)
        self.assertEqual(alice.reconnect().last("error")["code"], "invalid_token")
