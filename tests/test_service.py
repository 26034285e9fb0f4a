"""RoomService: the lobby actions, matchmaking, routing, error codes, disconnects and shutdown."""

from __future__ import annotations

from typing import Any, cast

from twisted.application.service import IService
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

import gameframe
from gameframe import GameError, Player, Room, action
from gameframe.testing import FakeClient, Harness

# Shared by the rooms and the links of a test, to check the order of events.
timeline: list[tuple[Any, ...]] = []


class Game(Room):
    max_players = 3
    filter_by = ("mode",)

    def on_create(self, options: dict[str, Any]) -> None:
        if options.get("explode"):
            raise RuntimeError("on_create broke")
        if options.get("refuse"):
            raise GameError("bad_mode", "no such mode")

    def on_leave(self, player: Player, reason: str) -> None:
        closed = player.link is not None and getattr(player.link, "closed", None)
        timeline.append(("leave", player.id, reason, bool(closed)))

    def on_dispose(self) -> Any:
        timeline.append(("dispose", self.room_id))
        if self.options.get("slow_dispose"):
            self.disposing: Deferred[None] = Deferred()
            return self.disposing
        return None

    @action
    def poke(self, player: Player, n: int = 0) -> int:
        return n + 1

    @action
    def crash(self, player: Player) -> None:
        raise KeyError("crash")


class Other(Room):
    pass


def ok(reply: dict[str, Any], action_name: str = "joined") -> dict[str, Any]:
    assert reply["action"] == action_name, reply
    return reply


def error_code(reply: dict[str, Any]) -> str:
    assert reply["action"] == "error", reply
    assert isinstance(reply["message"], str) and reply["message"], reply
    return cast(str, reply["code"])


class LobbyTests(SynchronousTestCase):
    def setUp(self) -> None:
        del timeline[:]
        self.kit = Harness({"game": Game, "other": Other})
        self.service = self.kit.service
        self.alice, self.bob, self.carol = (self.kit.connect() for _ in range(3))

    def test_welcome(self) -> None:
        welcome = self.alice.messages[0]
        self.assertEqual(welcome["action"], "welcome")
        self.assertEqual(welcome["player_id"], self.alice.player_id)
        self.assertEqual(welcome["server"], "gameframe")
        self.assertEqual(welcome["version"], gameframe.__version__)
        self.assertNotEqual(self.alice.player_id, self.bob.player_id)

    def test_joined_reply(self) -> None:
        joined = ok(self.alice.join_or_create("game"))
        self.assertEqual(joined["room"], "game")
        self.assertEqual(joined["player_id"], self.alice.player_id)
        self.assertEqual(joined["players"], [self.alice.player_id])
        self.assertIn(joined["room_id"], self.service.rooms)
        joined = ok(self.bob.join(joined["room_id"]))
        self.assertEqual(set(joined["players"]), {self.alice.player_id, self.bob.player_id})

    def test_join_or_create_fills_open_rooms_first(self) -> None:
        first = ok(self.alice.join_or_create("game"))["room_id"]
        self.assertEqual(ok(self.bob.join_or_create("game"))["room_id"], first)
        self.assertEqual(ok(self.carol.join_or_create("game"))["room_id"], first)
        # Full (max_players 3): the next one gets a new room, the one after joins it.
        dave, erin = self.kit.connect(), self.kit.connect()
        second = ok(dave.join_or_create("game"))["room_id"]
        self.assertNotEqual(second, first)
        self.assertEqual(ok(erin.join_or_create("game"))["room_id"], second)
        # A seat frees up in the first room: it is filled before the second.
        self.bob.leave()
        frank = self.kit.connect()
        self.assertEqual(ok(frank.join_or_create("game"))["room_id"], first)
        self.assertEqual(len(self.service.rooms), 2)

    def test_join_or_create_never_mixes_room_types(self) -> None:
        game = ok(self.alice.join_or_create("game"))["room_id"]
        other = ok(self.bob.join_or_create("other"))["room_id"]
        self.assertNotEqual(game, other)
        self.assertEqual(self.service.rooms[other].room_type, "other")

    def test_join_or_create_matches_filter_by_options(self) -> None:
        ranked = ok(self.alice.join_or_create("game", mode="ranked"))["room_id"]
        casual = ok(self.bob.join_or_create("game", mode="casual"))["room_id"]
        self.assertNotEqual(ranked, casual)
        self.assertEqual(ok(self.carol.join_or_create("game", mode="ranked"))["room_id"], ranked)

    def test_create_always_makes_a_new_room(self) -> None:
        first = ok(self.alice.create("game"))["room_id"]
        second = ok(self.bob.create("game"))["room_id"]
        self.assertNotEqual(first, second)
        self.assertEqual(len(self.service.rooms), 2)
        self.assertEqual(list(self.service.rooms[second].players), [self.bob.player_id])

    def test_list(self) -> None:
        game = ok(self.alice.create("game"))["room_id"]
        other = ok(self.bob.create("other"))["room_id"]
        everything = ok(self.carol.request("list"), "rooms")
        self.assertEqual({r["room_id"] for r in everything["rooms"]}, {game, other})
        (listed,) = ok(self.carol.request("list", room="game"), "rooms")["rooms"]
        self.assertEqual(listed["room_id"], game)
        self.assertEqual(listed["room"], "game")
        self.assertEqual(listed["players"], 1)
        self.assertEqual(listed["max_players"], 3)
        self.assertEqual(listed["metadata"], {})
        self.assertEqual(ok(self.carol.request("list", room="other"), "rooms")["rooms"][0]["room_id"], other)
        self.assertEqual(self.carol.last("rooms")["id"], self.carol.messages[-1]["id"])

    def test_list_of_nothing(self) -> None:
        self.assertEqual(ok(self.alice.request("list"), "rooms")["rooms"], [])
        self.assertEqual(ok(self.alice.request("list", room="game"), "rooms")["rooms"], [])

    def test_leave(self) -> None:
        room_id = ok(self.alice.join_or_create("game"))["room_id"]
        self.bob.join(room_id)
        left = self.alice.leave()
        self.assertEqual(left["action"], "left")
        self.assertEqual(left["room_id"], room_id)
        self.assertEqual(left["reason"], "leave")
        self.assertIsNone(self.alice.player.room)
        self.assertEqual(list(self.service.rooms[room_id].players), [self.bob.player_id])
        self.assertIn(("leave", self.alice.player_id, "leave", False), timeline)
        # Back in the lobby, the player can go anywhere.
        ok(self.alice.join_or_create("other"))

    def test_a_player_is_in_at_most_one_room(self) -> None:
        room_id = ok(self.alice.join_or_create("game"))["room_id"]
        other_id = ok(self.bob.create("game"))["room_id"]
        for reply in (
            self.alice.join_or_create("game"),
            self.alice.join_or_create("other"),
            self.alice.create("game"),
            self.alice.join(other_id),
            self.alice.join(room_id),
        ):
            self.assertEqual(error_code(reply), "already_in_room")
        self.assertEqual(self.alice.player.room, self.service.rooms[room_id])
        self.assertEqual(list(self.service.rooms[other_id].players), [self.bob.player_id])
        self.assertEqual(
            sum(self.alice.player_id in r.players for r in self.service.rooms.values()), 1
        )
        self.assertEqual(len(self.service.rooms), 2)

    def test_room_actions_are_routed_to_the_players_room(self) -> None:
        self.alice.join_or_create("game")
        self.assertEqual(ok(self.alice.request("poke", n=41), "result")["result"], 42)


class ErrorCodeTests(SynchronousTestCase):
    """Every lobby error code of issue 2, with the id echoed, and the player goes on."""

    def setUp(self) -> None:
        del timeline[:]
        self.kit = Harness({"game": Game})
        self.service = self.kit.service
        self.client: FakeClient = self.kit.connect()

    def assertCode(self, code: str, action_name: str, **fields: Any) -> dict[str, Any]:
        reply = self.client.request(action_name, **fields)
        self.assertEqual(error_code(reply), code, reply)
        self.assertTrue(str(reply["id"]).startswith("t"))
        return reply

    def tearDown(self) -> None:
        # Whatever the error, the connection is still usable.
        self.assertEqual(ok(self.client.request("list"), "rooms")["action"], "rooms")

    def test_unknown_room_type(self) -> None:
        for action_name in ("join_or_create", "create"):
            reply = self.assertCode("unknown_room_type", action_name, room="golf")
            self.assertIn("golf", reply["message"])
        self.assertCode("unknown_room_type", "list", room="golf")
        self.assertEqual(self.service.rooms, {})

    def test_room_not_found(self) -> None:
        self.assertCode("room_not_found", "join", room_id="nope")
        room_id = ok(self.kit.connect().create("game"))["room_id"]
        self.service.rooms[room_id].dispose()
        self.assertCode("room_not_found", "join", room_id=room_id)

    def test_room_full(self) -> None:
        room_id = ok(self.kit.connect().create("game"))["room_id"]
        self.kit.connect().join(room_id)
        self.kit.connect().join(room_id)
        self.assertCode("room_full", "join", room_id=room_id)
        self.assertIsNone(self.client.player.room)

    def test_not_in_room(self) -> None:
        self.assertCode("not_in_room", "poke")
        self.assertCode("not_in_room", "leave")
        self.assertCode("not_in_room", "anything_else")

    def test_already_in_room(self) -> None:
        self.client.join_or_create("game")
        self.assertCode("already_in_room", "join_or_create", room="game")
        self.assertCode("already_in_room", "create", room="game")

    def test_bad_arguments_room_not_a_string(self) -> None:
        for action_name in ("join_or_create", "create"):
            self.assertCode("bad_arguments", action_name)
            for bad in (None, 1, ["game"], {"name": "game"}):
                self.assertCode("bad_arguments", action_name, room=bad)
        self.assertCode("bad_arguments", "list", room=1)
        self.assertEqual(self.service.rooms, {})

    def test_bad_arguments_options_not_an_object(self) -> None:
        for bad in (None, "fast", 1, ["a"]):
            self.assertCode("bad_arguments", "join_or_create", room="game", options=bad)
            self.assertCode("bad_arguments", "create", room="game", options=bad)
        room_id = ok(self.kit.connect().create("game"))["room_id"]
        self.assertCode("bad_arguments", "join", room_id=room_id, options="x")
        self.assertIsNone(self.client.player.room)

    def test_bad_arguments_room_id_not_a_string(self) -> None:
        self.assertCode("bad_arguments", "join")
        for bad in (None, 1, ["x"], {"id": "x"}):
            self.assertCode("bad_arguments", "join", room_id=bad)

    def test_unknown_action(self) -> None:
        self.client.join_or_create("game")
        reply = self.assertCode("unknown_action", "fly")
        self.assertIn("fly", reply["message"])
        self.assertEqual(ok(self.client.request("poke"), "result")["result"], 1)

    def test_internal_error_from_a_handler(self) -> None:
        self.client.join_or_create("game")
        self.assertCode("internal_error", "crash")
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)
        self.assertEqual(ok(self.client.request("poke"), "result")["result"], 1)

    def test_internal_error_from_on_create_leaves_no_room(self) -> None:
        self.assertCode("internal_error", "join_or_create", room="game", options={"explode": True})
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.service.rooms, {})
        self.assertIsNone(self.client.player.room)

    def test_game_error_from_on_create(self) -> None:
        self.assertCode("bad_mode", "create", room="game", options={"refuse": True})
        self.assertEqual(self.service.rooms, {})
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_errors_without_an_id_have_no_id(self) -> None:
        self.client.send("join", room_id="nope")
        reply = self.client.messages[-1]
        self.assertEqual(error_code(reply), "room_not_found")
        self.assertNotIn("id", reply)


class DisconnectTests(SynchronousTestCase):
    def setUp(self) -> None:
        del timeline[:]
        self.kit = Harness({"game": Game})
        self.service = self.kit.service

    def test_disconnect_leaves_the_room(self) -> None:
        alice, bob = self.kit.connect(), self.kit.connect()
        room_id = ok(alice.join_or_create("game"))["room_id"]
        bob.join(room_id)
        alice.disconnect()
        self.assertEqual(timeline, [("leave", alice.player_id, "disconnect", False)])
        self.assertEqual(list(self.service.rooms[room_id].players), [bob.player_id])
        self.assertNotIn(alice.player_id, self.service.players)
        bob.disconnect()
        self.assertEqual(timeline[-1], ("dispose", room_id))
        self.assertEqual(self.service.rooms, {})

    def test_disconnect_while_the_room_is_being_created_leaves_no_empty_room(self) -> None:
        class SlowStart(Game):
            def on_create(self, options: dict[str, Any]) -> Deferred[None]:
                self.starting: Deferred[None] = Deferred()
                return self.starting

        kit = Harness({"slow": SlowStart})
        alice = kit.connect()
        alice.send("join_or_create", room="slow")
        (room,) = cast(list[SlowStart], list(kit.service.rooms.values()))
        alice.disconnect()
        room.starting.callback(None)
        # Nobody will ever be in it: an auto_dispose room must not linger.
        self.assertEqual(kit.service.rooms, {})
        self.assertTrue(room.disposed)
        self.assertEqual(kit.connect().request("list")["rooms"], [])

    def test_disconnect_outside_a_room(self) -> None:
        alice = self.kit.connect()
        alice.disconnect()
        self.assertNotIn(alice.player_id, self.service.players)
        self.assertEqual(timeline, [])


class ShutdownTests(SynchronousTestCase):
    def setUp(self) -> None:
        del timeline[:]
        self.kit = Harness({"game": Game})
        self.service = self.kit.service
        self.assertTrue(IService.providedBy(self.service))
        self.service.startService()

    def test_stop_disposes_rooms_then_closes_connections(self) -> None:
        alice, bob, idle = self.kit.connect(), self.kit.connect(), self.kit.connect()
        room_id = ok(alice.join_or_create("game"))["room_id"]
        bob.join(room_id)
        self.successResultOf(self.service.stopService())
        self.assertFalse(self.service.running)
        self.assertEqual(
            sorted(timeline[:2]),
            sorted(
                [
                    ("leave", alice.player_id, "shutdown", False),
                    ("leave", bob.player_id, "shutdown", False),
                ]
            ),
        )
        self.assertEqual(timeline[2:], [("dispose", room_id)])
        self.assertEqual(self.service.rooms, {})
        for client in (alice, bob):
            self.assertEqual(
                [m["action"] for m in client.messages[-2:]], ["left", "disconnect"]
            )
            self.assertEqual(client.messages[-2]["reason"], "shutdown")
        for client in (alice, bob, idle):
            self.assertEqual(client.messages[-1]["code"], "server_shutdown")
            self.assertEqual(client.link.closed[0], "server_shutdown")  # type: ignore[index]

    def test_stop_waits_for_async_on_dispose_before_closing(self) -> None:
        alice = self.kit.connect()
        room_id = ok(alice.join_or_create("game", slow_dispose=True))["room_id"]
        room = cast(Game, self.service.rooms[room_id])
        stopped = self.service.stopService()
        self.assertNoResult(stopped)
        self.assertIsNone(alice.link.closed)
        self.assertEqual(alice.last("left")["reason"], "shutdown")
        room.disposing.callback(None)
        self.successResultOf(stopped)
        self.assertEqual(alice.link.closed[0], "server_shutdown")  # type: ignore[index]

    def test_no_new_players_while_stopping(self) -> None:
        self.successResultOf(self.service.stopService())
        late = self.kit.connect()
        self.assertEqual(late.link.closed[0], "server_shutdown")  # type: ignore[index]
        self.assertEqual(late.received("welcome"), [])
