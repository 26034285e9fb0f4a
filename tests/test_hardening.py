"""Abuse and races: what one client does must not hang, leak, or reorder anything."""

from __future__ import annotations

from typing import Any, cast

import orjson
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.trial.unittest import SynchronousTestCase

from gameframe import GameError, GameFactory, GameProtocol, Player, Room, RoomService, action
from gameframe.demo import DEMO_ROOMS
from gameframe.demo.arena import Arena
from gameframe.testing import Harness


class SlowDoor(Room):
    """on_join waits for the test to open the door."""

    reconnect_timeout = 10.0
    doors: list[Deferred[None]] = []
    left: list[str] = []

    def on_join(self, player: Player, options: dict[str, Any]) -> Deferred[None]:
        door: Deferred[None] = Deferred()
        self.doors.append(door)
        return door

    def on_leave(self, player: Player, reason: str) -> None:
        self.left.append(player.id)

    @action
    def wait(self, player: Player) -> Deferred[str]:
        door: Deferred[str] = Deferred()
        self.doors.append(door)  # type: ignore[arg-type]
        return door


class MidJoinTests(SynchronousTestCase):
    def setUp(self) -> None:
        SlowDoor.doors, SlowDoor.left = [], []
        self.kit = Harness({"slow": SlowDoor, "chat": DEMO_ROOMS["chat"]})

    def test_a_player_gone_before_on_join_finished_never_joined(self) -> None:
        alice = self.kit.connect()
        alice.send("create", room="slow", id=1)
        alice.drop()
        SlowDoor.doors[0].callback(None)
        self.assertEqual(SlowDoor.left, [])  # no on_leave for a join that never finished
        self.assertEqual(self.kit.service.rooms, {})
        self.assertIsNone(self.kit.service.directory.room_of(alice.player_id))
        self.assertEqual(alice.received("joined"), [])

    def test_a_room_disposed_while_joining_answers_with_an_error(self) -> None:
        alice = self.kit.connect()
        alice.send("create", room="slow", id=1)
        (room,) = self.kit.service.rooms.values()
        room.dispose()
        SlowDoor.doors[0].callback(None)
        error = alice.last("error")
        self.assertEqual((error["code"], error["id"]), ("room_not_found", 1))
        self.assertEqual(alice.received("joined"), [])
        self.assertIsNone(self.kit.service.directory.room_of(alice.player_id))
        self.assertEqual(alice.request("list")["action"], "rooms")  # still usable


class QueueTests(SynchronousTestCase):
    def setUp(self) -> None:
        SlowDoor.doors, SlowDoor.left = [], []

    def test_a_client_that_floods_behind_a_pending_request_is_disconnected(self) -> None:
        kit = Harness({"slow": SlowDoor})
        alice = kit.connect()
        alice.send("create", room="slow")  # waits at the door
        for n in range(1000):
            alice.send("list", id=n)
        self.assertIsNone(alice.link.closed)
        alice.send("list")
        self.assertEqual(alice.link.closed[0], "too_many_requests")  # type: ignore[index]

    def test_messages_queued_behind_a_reconnect_act_for_the_reconnected_player(self) -> None:
        class Talk(DEMO_ROOMS["chat"]):  # type: ignore[misc, valid-type]
            reconnect_timeout = 10.0

        kit = Harness({"slow": SlowDoor, "chat": Talk})
        alice, bob = kit.connect(), kit.connect()
        alice.join_or_create("chat")
        bob.join_or_create("chat")
        token = alice.token
        alice.drop()
        # A new connection: a slow request, then reconnect and say, queued behind it.
        back = kit.connect()
        back.send("create", room="slow")
        back.send("reconnect", token=token, id="r")
        back.send("say", text="I am back")
        SlowDoor.doors[0].errback(GameError("nope", "the door stays shut"))
        self.assertEqual(back.last("joined")["player_id"], alice.player_id)
        self.assertEqual(bob.last("said"), {"action": "said", "player_id": alice.player_id, "text": "I am back"})
        # The connection's own lobby player is gone for good; no ghost stays seated.
        (chat,) = kit.service.rooms.values()
        self.assertEqual(set(chat.players), {alice.player_id, bob.player_id})
        self.assertNotIn(back.link.messages[0]["player_id"], kit.service.players)


class Slow(Room):
    doors: list[Deferred[str]] = []

    @action
    def wait(self, player: Player) -> Deferred[str]:
        door: Deferred[str] = Deferred()
        self.doors.append(door)
        return door


class WireTests(SynchronousTestCase):
    def connect(self, max_pending: int = 4 << 20) -> tuple[Clock, GameProtocol, StringTransportWithDisconnection]:
        clock = Clock()
        service = RoomService(clock, {"slow": Slow, "chat": DEMO_ROOMS["chat"]})
        factory = GameFactory(service, clock, max_pending=max_pending)
        protocol = cast(GameProtocol, factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 4000)))
        transport = StringTransportWithDisconnection()
        transport.protocol = protocol
        protocol.makeConnection(transport)
        return clock, protocol, transport

    def test_errors_for_bad_lines_keep_their_place_among_replies(self) -> None:
        Slow.doors = []
        clock, protocol, transport = self.connect()
        protocol.dataReceived(b'{"action": "create", "room": "slow", "id": 1}\n')
        protocol.dataReceived(b'{"action": "wait", "id": 2}\nnot json\n{"action": "list", "id": 3}\n')
        Slow.doors[0].callback("done")
        clock.advance(0)
        replies = [orjson.loads(line) for line in transport.value().splitlines()]
        self.assertEqual(
            [(m["action"], m.get("id")) for m in replies[-3:]],
            [("result", 2), ("error", None), ("rooms", 3)],
        )

    def test_a_flood_of_requests_with_big_replies_is_cut_off_in_the_same_turn(self) -> None:
        clock, protocol, transport = self.connect(max_pending=10_000)
        rooms = [protocol._service.create_room("chat") for _ in range(50)]
        self.assertEqual(len(rooms), 50)
        protocol.dataReceived(b'{"action": "list"}\n' * 1000)
        self.assertLess(len(transport.value()), 20_000)  # output stopped at the bound
        clock.advance(0)  # and the connection is dropped on the next turn
        self.assertTrue(transport.disconnecting or not transport.connected)


class ShutdownTests(SynchronousTestCase):
    def test_no_joining_while_the_server_shuts_down(self) -> None:
        class SlowToClose(Room):
            closing: Deferred[None] = Deferred()

            def on_dispose(self) -> Deferred[None]:
                return self.closing

        kit = Harness({"s": SlowToClose, "chat": DEMO_ROOMS["chat"]})
        alice, bob = kit.connect(), kit.connect()
        alice.join_or_create("s")
        kit.service.startService()
        done = kit.service.stopService()
        self.assertEqual(bob.request("create", room="chat")["code"], "server_shutdown")
        SlowToClose.closing.callback(None)
        self.assertTrue(done.called)
        self.assertEqual(kit.service.rooms, {})


class ArenaHoldTests(SynchronousTestCase):
    def test_the_hold_option_is_clamped(self) -> None:
        kit = Harness(DEMO_ROOMS)
        alice = kit.connect()
        alice.create("arena", hold=1e12)
        room = kit.room_of(alice)
        assert isinstance(room, Arena)
        self.assertEqual(room.hold_seconds, Arena.max_hold)
