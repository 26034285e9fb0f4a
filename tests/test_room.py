"""Room: lifecycle hooks, async hooks and handlers, replies, broadcast, seats, listing, timers."""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from gameframe import GameError, IPlayerLink, Player, Room, action
from gameframe.codec import encode
from gameframe.testing import FakeClient, Harness


class Recorder(Room):
    """Records every hook and handler call, in order."""

    def on_create(self, options: dict[str, Any]) -> None:
        self.events: list[tuple[Any, ...]] = [("create", options)]

    def on_join(self, player: Player, options: dict[str, Any]) -> None:
        self.events.append(("join", player.id, options))
        if options.get("refuse"):
            raise GameError("no_entry", "you may not come in")
        self.send(player, {"action": "hello", "from": "on_join"})

    def on_leave(self, player: Player, reason: str) -> None:
        self.events.append(("leave", player.id, reason))

    def on_dispose(self) -> None:
        self.events.append(("dispose",))

    @action
    def echo(self, player: Player, value: Any = None) -> Any:
        self.events.append(("echo", player.id, value))
        return value

    @action
    def boom(self, player: Player) -> None:
        self.events.append(("boom", player.id))
        1 / 0

    @action
    def unencodable(self, player: Player) -> object:
        return object()

    @action
    def shout(self, player: Player, text: str, skip: list[str] | None = None) -> None:
        exclude = [self.players[p] for p in skip] if skip is not None else player
        self.broadcast({"action": "shouted", "by": player.id, "text": text}, exclude=exclude)

    @action
    def tell(self, player: Player, to: str, text: str) -> None:
        self.send(self.players[to], {"action": "told", "by": player.id, "text": text})

    @action("lock")
    def do_lock(self, player: Player) -> None:
        self.lock()

    @action("unlock")
    def do_unlock(self, player: Player) -> None:
        self.unlock()


def joined_ok(reply: dict[str, Any]) -> str:
    assert reply["action"] == "joined", reply
    return cast(str, reply["room_id"])


class LifecycleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.kit = Harness({"rec": Recorder})

    def test_hooks_run_in_order(self) -> None:
        alice, bob = self.kit.connect(), self.kit.connect()
        room_id = joined_ok(alice.join_or_create("rec", mode="x"))
        room = cast(Recorder, self.kit.room(room_id))
        self.assertEqual(joined_ok(bob.join_or_create("rec", mode="x")), room_id)
        alice.leave()
        bob.leave()
        self.assertEqual(
            room.events,
            [
                ("create", {"mode": "x"}),
                ("join", alice.player_id, {"mode": "x"}),
                ("join", bob.player_id, {"mode": "x"}),
                ("leave", alice.player_id, "leave"),
                ("leave", bob.player_id, "leave"),
                ("dispose",),
            ],
        )
        self.assertTrue(room.disposed)
        self.assertNotIn(room_id, self.kit.service.rooms)
        self.assertEqual(room.options, {"mode": "x"})
        self.assertEqual(room.room_type, "rec")

    def test_joined_reply_comes_before_what_on_join_sent(self) -> None:
        alice, bob = self.kit.connect(), self.kit.connect()
        alice.join_or_create("rec")
        bob.join_or_create("rec")
        actions = [m["action"] for m in bob.messages]
        self.assertEqual(actions, ["welcome", "joined", "hello"])
        joined = bob.last("joined")
        self.assertEqual(joined["room"], "rec")
        self.assertEqual(joined["player_id"], bob.player_id)
        self.assertEqual(set(joined["players"]), {alice.player_id, bob.player_id})

    def test_on_join_refusal_with_the_only_player_disposes_the_room(self) -> None:
        alice = self.kit.connect()
        reply = alice.join_or_create("rec", refuse=True)
        self.assertEqual(reply["action"], "error")
        self.assertEqual(reply["code"], "no_entry")
        self.assertEqual(reply["message"], "you may not come in")
        self.assertIsNone(alice.player.room)
        self.assertEqual(alice.received("joined"), [])
        self.assertEqual(alice.received("hello"), [])
        self.assertEqual(self.kit.service.rooms, {})
        # The refused player can go elsewhere.
        joined_ok(alice.join_or_create("rec"))

    def test_on_join_refusal_keeps_a_room_with_players(self) -> None:
        alice, bob = self.kit.connect(), self.kit.connect()
        room_id = joined_ok(alice.join_or_create("rec"))
        reply = bob.join(room_id, refuse=True)
        self.assertEqual(reply["code"], "no_entry")
        room = self.kit.room(room_id)
        self.assertEqual(list(room.players), [alice.player_id])
        self.assertIsNone(bob.player.room)
        self.assertFalse(room.disposed)
        # Messages queued for bob in on_join never reach him.
        self.assertEqual(bob.received("hello"), [])

    def test_dispose_makes_everyone_leave(self) -> None:
        alice, bob = self.kit.connect(), self.kit.connect()
        room_id = joined_ok(alice.join_or_create("rec"))
        bob.join(room_id)
        room = cast(Recorder, self.kit.room(room_id))
        self.successResultOf(room.dispose())
        for client in (alice, bob):
            self.assertEqual(
                client.last("left"), {"action": "left", "room_id": room_id, "reason": "disposed"}
            )
            self.assertIsNone(client.player.room)
        self.assertEqual(
            sorted(e for e in room.events if e[0] == "leave"),
            sorted([("leave", alice.player_id, "disposed"), ("leave", bob.player_id, "disposed")]),
        )
        self.assertEqual(room.events[-1], ("dispose",))
        self.assertNotIn(room_id, self.kit.service.rooms)
        self.assertEqual(alice.request("echo")["code"], "not_in_room")

    def test_on_leave_never_sees_the_leaving_player_seated(self) -> None:
        class Watcher(Recorder):
            def on_leave(self, player: Player, reason: str) -> None:
                self.events.append(("seated?", reason, player.id in self.players))

        kit = Harness({"watcher": Watcher})
        a, b, c, d = (kit.connect() for _ in range(4))
        room_id = joined_ok(a.join_or_create("watcher"))
        for client in (b, c, d):
            client.join(room_id)
        room = cast(Watcher, kit.room(room_id))
        a.leave()
        b.disconnect()
        self.successResultOf(room.dispose())
        seated = [e for e in room.events if e[0] == "seated?"]
        self.assertEqual(
            seated,
            [
                ("seated?", "leave", False),
                ("seated?", "disconnect", False),
                ("seated?", "disposed", False),
                ("seated?", "disposed", False),
            ],
        )

    def test_disconnect_is_a_leave_with_reason_disconnect(self) -> None:
        alice, bob = self.kit.connect(), self.kit.connect()
        room_id = joined_ok(alice.join_or_create("rec"))
        bob.join(room_id)
        room = cast(Recorder, self.kit.room(room_id))
        bob.disconnect()
        self.assertEqual(room.events[-1], ("leave", bob.player_id, "disconnect"))
        self.assertEqual(list(room.players), [alice.player_id])


class AsyncRoom(Room):
    """Hooks and handlers that wait on Deferreds the test fires."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: dict[str, Deferred[Any]] = {}
        self.events: list[Any] = []

    def wait(self, name: str) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.waiting[name] = d
        return d

    def on_create(self, options: dict[str, Any]) -> Deferred[Any] | None:
        self.events.append("create")
        if options.get("slow_create"):
            return self.wait("create").addCallback(lambda _: self.events.append("created"))
        return None

    async def on_join(self, player: Player, options: dict[str, Any]) -> None:
        self.events.append(("join", player.id))
        if options.get("slow_join"):
            verdict = await self.wait("join")
            if verdict == "refuse":
                raise GameError("refused_later", "changed my mind")
        self.events.append(("joined", player.id))

    def on_leave(self, player: Player, reason: str) -> Deferred[Any]:
        self.events.append(("leave", player.id, reason))
        return self.wait("leave").addCallback(
            lambda _: self.events.append(("left", player.id))
        )

    def on_dispose(self) -> Deferred[Any]:
        self.events.append("dispose")
        return self.wait("dispose").addCallback(lambda _: self.events.append("disposed"))

    @action
    def slow(self, player: Player, tag: str) -> Deferred[Any]:
        self.events.append(("slow", tag))
        return self.wait(tag).addCallback(lambda value: {"tag": tag, "value": value})

    @action
    async def coro(self, player: Player, tag: str) -> Any:
        self.events.append(("coro", tag))
        value = await self.wait(tag)
        self.events.append(("coro done", tag))
        return value * 2

    @action
    async def coro_fails(self, player: Player) -> None:
        await self.wait("fail")
        raise ValueError("async handler broke")

    @action
    def quick(self, player: Player, tag: str) -> str:
        self.events.append(("quick", tag))
        return tag


class AsyncTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.kit = Harness({"async": AsyncRoom})
        self.alice = self.kit.connect()

    def seated(self, client: FakeClient) -> AsyncRoom:
        client.join_or_create("async")
        return cast(AsyncRoom, self.kit.room_of(client))

    def test_deferred_on_create_delays_the_join(self) -> None:
        self.alice.send("join_or_create", id="j", room="async", options={"slow_create": True})
        self.assertEqual(self.alice.received("joined"), [])
        (room,) = cast(list[AsyncRoom], list(self.kit.service.rooms.values()))
        self.assertEqual(room.events, ["create"])
        room.waiting["create"].callback(None)
        self.assertEqual(self.alice.last("joined")["id"], "j")
        self.assertEqual(
            room.events, ["create", "created", ("join", self.alice.player_id), ("joined", self.alice.player_id)]
        )

    def test_async_on_join_delays_joined_and_later_messages(self) -> None:
        self.alice.send("join_or_create", id="j", room="async", options={"slow_join": True})
        self.alice.send("quick", id="q", tag="after")
        room = cast(AsyncRoom, self.alice.player.room)
        self.assertEqual(self.alice.received("joined"), [])
        self.assertEqual(self.alice.received("result"), [])
        self.assertNotIn(("quick", "after"), room.events)
        room.waiting["join"].callback("ok")
        self.assertEqual(
            [m["action"] for m in self.alice.messages], ["welcome", "joined", "result"]
        )
        self.assertEqual(self.alice.last("result"), {"action": "result", "result": "after", "id": "q"})

    def test_async_on_join_refusal(self) -> None:
        self.alice.send("join_or_create", id="j", room="async", options={"slow_join": True})
        room = cast(AsyncRoom, self.alice.player.room)
        room.waiting["join"].callback("refuse")
        reply = self.alice.last("error")
        self.assertEqual((reply["code"], reply["id"]), ("refused_later", "j"))
        self.assertIsNone(self.alice.player.room)
        self.assertEqual(room.players, {})
        self.assertEqual(self.alice.received("joined"), [])

    def test_deferred_handler_result_becomes_the_reply(self) -> None:
        room = self.seated(self.alice)
        self.alice.send("slow", id=41, tag="a")
        self.assertEqual(self.alice.received("result"), [])
        room.waiting["a"].callback("done")
        self.assertEqual(
            self.alice.last("result"),
            {"action": "result", "result": {"tag": "a", "value": "done"}, "id": 41},
        )

    def test_async_def_handler_result_becomes_the_reply(self) -> None:
        room = self.seated(self.alice)
        self.alice.send("coro", id="c", tag="x")
        self.assertEqual(self.alice.received("result"), [])
        room.waiting["x"].callback(21)
        self.assertEqual(self.alice.last("result"), {"action": "result", "result": 42, "id": "c"})

    def test_one_players_messages_are_handled_in_order(self) -> None:
        room = self.seated(self.alice)
        self.alice.send("slow", id=1, tag="first")
        self.alice.send("quick", id=2, tag="second")
        self.alice.send("coro", id=3, tag="third")
        self.alice.send("quick", id=4, tag="fourth")
        # Nothing after the waiting message has run.
        self.assertEqual(room.events[-1], ("slow", "first"))
        room.waiting["first"].callback(None)
        self.assertEqual(room.events[-2:], [("quick", "second"), ("coro", "third")])
        self.assertEqual([m["id"] for m in self.alice.received("result")], [1, 2])
        room.waiting["third"].callback(1)
        self.assertEqual(room.events[-2:], [("coro done", "third"), ("quick", "fourth")])
        self.assertEqual([m["id"] for m in self.alice.received("result")], [1, 2, 3, 4])

    def test_a_waiting_player_does_not_hold_up_the_others(self) -> None:
        room = self.seated(self.alice)
        bob = self.kit.connect()
        bob.join(room.room_id)
        self.alice.send("slow", id=1, tag="a")
        self.assertEqual(bob.request("quick", tag="bob")["result"], "bob")
        self.assertEqual(self.alice.received("result"), [])
        room.waiting["a"].callback(None)
        self.assertEqual(self.alice.last("result")["id"], 1)

    def test_async_handler_failure_is_internal_error_and_the_queue_goes_on(self) -> None:
        room = self.seated(self.alice)
        self.alice.send("coro_fails", id="f")
        self.alice.send("quick", id="q", tag="next")
        room.waiting["fail"].callback(None)
        error = self.alice.last("error")
        self.assertEqual((error["code"], error["id"]), ("internal_error", "f"))
        self.assertNotIn("async handler broke", error["message"])
        self.assertEqual(self.alice.last("result")["id"], "q")
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_async_on_leave_and_on_dispose_run_in_order(self) -> None:
        room = self.seated(self.alice)
        self.alice.leave()
        self.assertEqual(room.events[-1], ("leave", self.alice.player_id, "leave"))
        self.assertIsNone(self.alice.player.room)
        room.waiting["leave"].callback(None)
        self.assertEqual(room.events[-2:], [("left", self.alice.player_id), "dispose"])
        room.waiting["dispose"].callback(None)
        self.assertEqual(room.events[-1], "disposed")


class RepliesAndFailuresTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.kit = Harness({"rec": Recorder})
        self.alice, self.bob = self.kit.connect(), self.kit.connect()
        self.room_id = joined_ok(self.alice.join_or_create("rec"))
        self.bob.join(self.room_id)
        self.room = cast(Recorder, self.kit.room(self.room_id))
        self.alice.clear()
        self.bob.clear()

    def test_result_echoes_the_id(self) -> None:
        for request_id in ("abc", 7, 0, [1, "x"]):
            self.alice.send("echo", id=request_id, value={"v": request_id})
            self.assertEqual(
                self.alice.messages[-1],
                {"action": "result", "result": {"v": request_id}, "id": request_id},
            )
        self.alice.send("echo", id="none")
        self.assertEqual(self.alice.messages[-1], {"action": "result", "result": None, "id": "none"})

    def test_no_id_no_reply(self) -> None:
        self.alice.send("echo", value=1)
        self.assertEqual(self.room.events[-1], ("echo", self.alice.player_id, 1))
        self.assertEqual(self.alice.messages, [])

    def test_errors_echo_the_id(self) -> None:
        self.alice.send("echo", id="x1", value=1, extra=2)
        self.assertEqual(self.alice.messages[-1]["id"], "x1")
        self.assertEqual(self.alice.messages[-1]["code"], "bad_arguments")
        self.alice.send("nope", id="x2")
        self.assertEqual(self.alice.messages[-1]["id"], "x2")
        self.assertEqual(self.alice.messages[-1]["code"], "unknown_action")

    def test_handler_exception_is_logged_and_the_room_goes_on(self) -> None:
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.alice.send("boom", id="b")
        error = self.alice.messages[-1]
        self.assertEqual(error["action"], "error")
        self.assertEqual(error["code"], "internal_error")
        self.assertEqual(error["id"], "b")
        self.assertNotIn("division", error["message"])
        failures = [e for e in logged if "log_failure" in e]
        self.assertEqual(len(failures), 1)
        self.assertIsInstance(failures[0]["log_failure"].value, ZeroDivisionError)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        # Nobody else heard about it; the room, the player and the others go on.
        self.assertEqual(self.bob.messages, [])
        self.assertIn(self.room_id, self.kit.service.rooms)
        self.assertIs(self.alice.player.room, self.room)
        self.assertEqual(self.alice.request("echo", value=1)["result"], 1)
        self.assertEqual(self.bob.request("echo", value=2)["result"], 2)

    def test_handler_exception_without_id(self) -> None:
        self.alice.send("boom")
        self.assertEqual(
            self.alice.messages[-1],
            {"action": "error", "code": "internal_error", "message": self.alice.messages[-1]["message"]},
        )
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_unencodable_result_is_an_internal_error(self) -> None:
        reply = self.alice.request("unencodable")
        self.assertEqual(reply["code"], "internal_error")
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)
        self.assertEqual(self.alice.request("echo", value=3)["result"], 3)

    def test_game_error_from_a_handler_is_not_logged(self) -> None:
        class Strict(Room):
            @action
            def go(self, player: Player) -> None:
                raise GameError("not_now", "try later")

        kit = Harness({"strict": Strict})
        client = kit.connect()
        client.join_or_create("strict")
        reply = client.request("go")
        self.assertEqual((reply["code"], reply["message"]), ("not_now", "try later"))
        self.assertEqual(self.flushLoggedErrors(), [])


@implementer(IPlayerLink)
class RecordingLink:
    """A link that keeps the very objects it is handed."""

    congested = False

    def __init__(self) -> None:
        self.player: Player | None = None  # set by the RoomService on connect
        self.encoded: list[bytes] = []
        self.closed: tuple[str, str] | None = None

    def send(self, message: Any) -> None:
        self.send_encoded(encode(message))

    def send_encoded(self, data: bytes) -> None:
        self.encoded.append(data)

    def close(self, code: str, message: str, retry: bool = False) -> None:
        self.closed = (code, message)


class BroadcastTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.kit = Harness({"rec": Recorder})
        self.service = self.kit.service
        self.links = [RecordingLink() for _ in range(3)]
        for link in self.links:
            verifyObject(IPlayerLink, link)
        self.players = [self.service.connect(link) for link in self.links]
        self.service.receive(self.players[0], {"action": "create", "room": "rec"})
        self.room = cast(Recorder, self.players[0].room)
        for player in self.players[1:]:
            self.service.receive(player, {"action": "join", "room_id": self.room.room_id})
        for link in self.links:
            del link.encoded[:]

    def test_broadcast_encodes_once_and_sends_the_same_bytes(self) -> None:
        self.room.broadcast({"action": "tick", "n": 1})
        first = self.links[0].encoded
        self.assertEqual(len(first), 1)
        for link in self.links:
            self.assertEqual(len(link.encoded), 1)
            self.assertIs(link.encoded[0], first[0])
        self.assertEqual(first[0], b'{"action":"tick","n":1}')

    def test_broadcast_from_a_handler_excludes_the_sender(self) -> None:
        sender = self.players[0]
        self.service.receive(sender, {"action": "shout", "text": "hi"})
        self.assertEqual(self.links[0].encoded, [])
        self.assertIs(self.links[1].encoded[0], self.links[2].encoded[0])

    def test_exclude_several(self) -> None:
        skip = [self.players[1].id, self.players[2].id]
        self.service.receive(self.players[0], {"action": "shout", "text": "hi", "skip": skip})
        self.assertEqual(len(self.links[0].encoded), 1)
        self.assertEqual(self.links[1].encoded + self.links[2].encoded, [])

    def test_send_reaches_one_player(self) -> None:
        self.service.receive(
            self.players[0], {"action": "tell", "to": self.players[2].id, "text": "psst"}
        )
        self.assertEqual(self.links[0].encoded + self.links[1].encoded, [])
        self.assertEqual(len(self.links[2].encoded), 1)


class Small(Recorder):
    max_players = 2


class SeatsAndListingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.kit = Harness({"small": Small, "rec": Recorder})

    def listed(self, room_type: str | None = None) -> list[dict[str, Any]]:
        client = self.kit.connect()
        fields = {} if room_type is None else {"room": room_type}
        reply = client.request("list", **fields)
        self.assertEqual(reply["action"], "rooms")
        return cast(list[dict[str, Any]], reply["rooms"])

    def test_max_players_and_room_full(self) -> None:
        a, b, c = self.kit.connect(), self.kit.connect(), self.kit.connect()
        room_id = joined_ok(a.join_or_create("small"))
        self.assertEqual(joined_ok(b.join_or_create("small")), room_id)
        reply = c.join(room_id)
        self.assertEqual(reply["action"], "error")
        self.assertEqual(reply["code"], "room_full")
        self.assertIsNone(c.player.room)
        # Matchmaking skips the full room...
        other = joined_ok(c.join_or_create("small"))
        self.assertNotEqual(other, room_id)
        # ...and fills it again once a seat frees up.
        b.leave()
        d = self.kit.connect()
        self.assertEqual(joined_ok(d.join_or_create("small")), room_id)

    def test_lock_and_unlock(self) -> None:
        a, b, c = self.kit.connect(), self.kit.connect(), self.kit.connect()
        room_id = joined_ok(a.join_or_create("rec"))
        a.send("lock")
        reply = b.join(room_id)
        self.assertEqual((reply["action"], reply["code"]), ("error", "room_locked"))
        self.assertIsNone(b.player.room)
        self.assertNotEqual(joined_ok(b.join_or_create("rec")), room_id)
        (listed,) = [r for r in self.listed("rec") if r["room_id"] == room_id]
        self.assertTrue(listed["locked"])
        a.send("unlock")
        self.assertEqual(joined_ok(c.join_or_create("rec")), room_id)

    def test_private_rooms_are_not_listed_or_matched_but_joinable_by_id(self) -> None:
        class Hideout(Recorder):
            def on_create(self, options: dict[str, Any]) -> None:
                super().on_create(options)
                self.private = bool(options.get("private"))

        kit = Harness({"hideout": Hideout})
        a, b, c = kit.connect(), kit.connect(), kit.connect()
        secret = joined_ok(a.create("hideout", private=True))
        self.assertEqual(c.request("list", room="hideout")["rooms"], [])
        self.assertEqual(c.request("list")["rooms"], [])
        public = joined_ok(b.join_or_create("hideout"))
        self.assertNotEqual(public, secret)
        self.assertEqual([r["room_id"] for r in c.request("list")["rooms"]], [public])
        self.assertEqual(joined_ok(c.join(secret)), secret)
        self.assertEqual(set(kit.room(secret).players), {a.player_id, c.player_id})

    def test_list_shows_id_players_max_players_and_metadata(self) -> None:
        a, b, c = self.kit.connect(), self.kit.connect(), self.kit.connect()
        small = joined_ok(a.join_or_create("small"))
        b.join(small)
        rec = joined_ok(c.join_or_create("rec"))
        self.kit.room(small).set_metadata(map="desert", round=2)
        self.kit.room(small).set_metadata(round=3)
        rooms = {r["room_id"]: r for r in self.listed()}
        self.assertEqual(set(rooms), {small, rec})
        self.assertEqual(rooms[small]["room"], "small")
        self.assertEqual(rooms[small]["players"], 2)
        self.assertEqual(rooms[small]["max_players"], 2)
        self.assertEqual(rooms[small]["metadata"], {"map": "desert", "round": 3})
        self.assertEqual(rooms[rec]["room"], "rec")
        self.assertEqual(rooms[rec]["players"], 1)
        self.assertIsNone(rooms[rec]["max_players"])
        self.assertEqual(rooms[rec]["metadata"], {})
        self.assertEqual([r["room_id"] for r in self.listed("small")], [small])

    def test_empty_rooms_dispose_themselves(self) -> None:
        a = self.kit.connect()
        room_id = joined_ok(a.join_or_create("rec"))
        room = cast(Recorder, self.kit.room(room_id))
        a.leave()
        self.assertTrue(room.disposed)
        self.assertEqual(room.events[-1], ("dispose",))
        self.assertEqual(self.listed(), [])
        b = self.kit.connect()
        self.assertEqual(b.join(room_id)["code"], "room_not_found")

    def test_auto_dispose_off_keeps_the_empty_room(self) -> None:
        class Lasting(Recorder):
            auto_dispose = False

        kit = Harness({"lasting": Lasting})
        a, b = kit.connect(), kit.connect()
        room_id = joined_ok(a.join_or_create("lasting"))
        room = cast(Lasting, kit.room(room_id))
        a.leave()
        self.assertFalse(room.disposed)
        self.assertNotIn(("dispose",), room.events)
        self.assertEqual(
            [(r["room_id"], r["players"]) for r in b.request("list")["rooms"]], [(room_id, 0)]
        )
        self.assertEqual(joined_ok(b.join_or_create("lasting")), room_id)
        b.leave()
        self.successResultOf(room.dispose())
        self.assertEqual(room.events[-1], ("dispose",))
        self.assertEqual(b.request("list")["rooms"], [])


class FailingHooks(Recorder):
    def on_leave(self, player: Player, reason: str) -> None:
        super().on_leave(player, reason)
        raise RuntimeError("on_leave broke")

    def on_dispose(self) -> None:
        super().on_dispose()
        raise RuntimeError("on_dispose broke")


class FailingHookTests(SynchronousTestCase):
    def test_failing_on_leave_and_on_dispose_are_logged_and_the_room_still_goes(self) -> None:
        kit = Harness({"failing": FailingHooks})
        alice = kit.connect()
        room_id = joined_ok(alice.join_or_create("failing"))
        room = cast(FailingHooks, kit.room(room_id))
        self.assertEqual(alice.leave()["action"], "left")
        self.assertEqual(room.events[-2:], [("leave", alice.player_id, "leave"), ("dispose",)])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)
        self.assertIsNone(alice.player.room)
        self.assertEqual(kit.service.rooms, {})
        self.assertEqual(alice.received("error"), [])
        joined_ok(alice.join_or_create("failing"))


class Ticking(Room):
    """A room with a game loop and a one-shot timer."""

    def on_create(self, options: dict[str, Any]) -> None:
        self.ticks = 0
        self.fired: list[str] = []
        self.loop = self.every(1.0, self.tick)
        self.clock.callLater(2.5, self.fired.append, "once")
        if options.get("faulty"):
            self.clock.callLater(0.5, self.explode)
            self.every(1.0, self.explode)

    def tick(self) -> None:
        self.ticks += 1
        self.broadcast({"action": "tick", "n": self.ticks})

    def explode(self) -> None:
        raise RuntimeError("timer broke")

    @action
    def later(self, player: Player, delay: float) -> None:
        self.clock.callLater(delay, self.send, player, {"action": "later"})


class TimerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.kit = Harness({"ticking": Ticking})
        self.alice = self.kit.connect()

    def test_timers_run_on_the_injected_clock(self) -> None:
        room_id = joined_ok(self.alice.join_or_create("ticking"))
        room = cast(Ticking, self.kit.room(room_id))
        self.assertEqual(room.ticks, 0)
        self.kit.advance(1.0)
        self.assertEqual(room.ticks, 1)
        self.kit.advance(1.0)
        self.kit.advance(1.0)
        self.assertEqual(room.ticks, 3)
        self.assertEqual(room.fired, ["once"])
        self.assertEqual([m["n"] for m in self.alice.received("tick")], [1, 2, 3])
        self.alice.send("later", delay=0.5)
        self.assertEqual(self.alice.received("later"), [])
        self.kit.advance(0.5)
        self.assertEqual(len(self.alice.received("later")), 1)

    def test_timers_are_cancelled_on_dispose(self) -> None:
        room_id = joined_ok(self.alice.join_or_create("ticking"))
        room = cast(Ticking, self.kit.room(room_id))
        self.alice.send("later", delay=30.0)
        self.assertTrue(self.kit.clock.getDelayedCalls())
        self.alice.leave()
        self.assertTrue(room.disposed)
        self.assertEqual([c for c in self.kit.clock.getDelayedCalls() if c.active()], [])
        self.kit.advance(60.0)
        self.assertEqual(room.ticks, 0)
        self.assertEqual(room.fired, [])
        self.assertEqual(self.alice.received("later"), [])

    def test_a_loop_is_stopped_on_dispose_and_stopping_it_again_is_harmless(self) -> None:
        class Stopping(Ticking):
            def on_dispose(self) -> None:
                # What an author writes to clean up; must not fail after dispose.
                if self.loop.running:
                    self.loop.stop()

        kit = Harness({"stopping": Stopping})
        alice = kit.connect()
        room = cast(Stopping, kit.room(joined_ok(alice.join_or_create("stopping"))))
        kit.advance(1.0)
        alice.leave()
        self.assertTrue(room.disposed)
        self.assertFalse(room.loop.running)
        self.assertEqual(self.flushLoggedErrors(), [])
        kit.advance(5.0)
        self.assertEqual(room.ticks, 1)

    def test_a_raising_timer_is_logged_and_the_room_goes_on(self) -> None:
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        room_id = joined_ok(self.alice.join_or_create("ticking", faulty=True))
        room = cast(Ticking, self.kit.room(room_id))
        self.kit.advance(0.5)  # the one-shot explodes
        self.kit.advance(0.5)  # tick 1, the looping explode (1)
        self.kit.advance(1.0)  # tick 2, the looping explode (2)
        self.assertEqual(room.ticks, 2)
        failures = [e["log_failure"] for e in logged if "log_failure" in e]
        self.assertEqual(len(failures), 3)
        for failure in failures:
            self.assertIsInstance(failure.value, RuntimeError)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 3)
        self.assertFalse(room.disposed)
        self.assertIs(self.alice.player.room, room)
        self.kit.advance(1.0)
        self.assertEqual(room.ticks, 3)
        self.assertEqual(self.alice.received("error"), [])
        self.flushLoggedErrors(RuntimeError)
