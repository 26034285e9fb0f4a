"""The chat demo room, tested the way a room author would: with gameframe.testing."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from gameframe.demo.chat import ChatRoom
from gameframe.testing import FakeClient, Harness


class ChatTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.kit = Harness({"chat": ChatRoom})
        self.alice, self.bob, self.carol = (self.kit.connect() for _ in range(3))
        self.room_id = self.alice.join_or_create("chat")["room_id"]
        for client in (self.bob, self.carol):
            self.assertEqual(client.join_or_create("chat")["room_id"], self.room_id)
        self.everyone = (self.alice, self.bob, self.carol)

    def test_say_reaches_everyone_with_the_senders_id(self) -> None:
        self.bob.send("say", text="hello, room")
        for client in self.everyone:
            self.assertEqual(
                client.last("said"),
                {"action": "said", "player_id": self.bob.player_id, "text": "hello, room"},
            )

    def test_messages_arrive_in_order(self) -> None:
        self.alice.send("say", text="one")
        self.bob.send("say", text="two")
        self.alice.send("say", text="three")
        for client in self.everyone:
            self.assertEqual(
                [(m["player_id"], m["text"]) for m in client.received("said")],
                [(self.alice.player_id, "one"), (self.bob.player_id, "two"), (self.alice.player_id, "three")],
            )

    def test_unicode_and_the_longest_text(self) -> None:
        self.alice.send("say", text="héllo ☃ 🎲")
        self.assertEqual(self.carol.last("said")["text"], "héllo ☃ 🎲")
        longest = "x" * ChatRoom.max_text
        self.alice.send("say", text=longest)
        self.assertEqual(self.carol.last("said")["text"], longest)

    def test_says_stay_in_their_room(self) -> None:
        dave = self.kit.connect()
        dave.create("chat")
        dave.send("say", text="anyone?")
        for client in self.everyone:
            self.assertEqual([m for m in client.received("said") if m["text"] == "anyone?"], [])
        self.assertEqual(dave.last("said")["text"], "anyone?")

    def assertRefused(self, client: FakeClient, **fields: object) -> None:
        reply = client.request("say", **fields)
        self.assertEqual(reply["action"], "error")
        self.assertEqual(reply["code"], "bad_arguments")
        for other in self.everyone:
            self.assertEqual(other.received("said"), [])

    def test_empty_text(self) -> None:
        for text in ("", "   ", "\n\t"):
            self.assertRefused(self.alice, text=text)

    def test_too_long_text(self) -> None:
        self.assertRefused(self.alice, text="x" * (ChatRoom.max_text + 1))

    def test_text_must_be_a_string(self) -> None:
        self.assertRefused(self.alice)
        for text in (None, 5, ["hi"], {"t": "hi"}):
            self.assertRefused(self.alice, text=text)
        self.assertRefused(self.alice, text="hi", colour="red")

    def test_joins_and_leaves_are_announced(self) -> None:
        self.assertEqual(
            [m["player_id"] for m in self.alice.received("player_joined")],
            [self.alice.player_id, self.bob.player_id, self.carol.player_id],
        )
        self.carol.leave()
        self.bob.disconnect()
        self.assertEqual(
            [m["player_id"] for m in self.alice.received("player_left")],
            [self.carol.player_id, self.bob.player_id],
        )
        self.assertEqual(self.carol.received("player_left"), [])

    def test_still_chatting_after_an_error(self) -> None:
        self.assertRefused(self.alice, text="")
        self.alice.send("say", text="ok now")
        self.assertEqual(self.bob.last("said")["text"], "ok now")
