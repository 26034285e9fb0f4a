"""Orderings that used to go wrong: drops and disposals during on_auth, replaced connections with queued messages, closes while throttled."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.trial.unittest import SynchronousTestCase

from gameframe import GameFactory, Player, Room, RoomService, action
from gameframe._limits import Limits
from gameframe.testing import Harness


class SlowDoor(Room):
    """on_auth waits on a Deferred when asked; on_join/on_leave are recorded."""

    calls: list[tuple[str, str]] = []
    doors: list[Deferred[Any]] = []

    def on_auth(self, player: Player, options: dict[str, Any]) -> Any:
        if options.get("slow"):
            door: Deferred[Any] = Deferred()
            self.doors.append(door)
            return door
        return None

    def on_join(self, player: Player, options: dict[str, Any]) -> None:
        self.calls.append(("join", player.id))

    def on_leave(self, player: Player, reason: str) -> None:
        self.calls.append(("leave", player.id))

    def on_dispose(self) -> None:
        self.calls.append(("dispose", ""))


class JoinRaceTests(SynchronousTestCase):
    def setUp(self) -> None:
        SlowDoor.calls = []
        SlowDoor.doors = []
        self.kit = Harness({"door": SlowDoor})

    def test_on_join_does_not_run_for_a_player_that_dropped_during_on_auth(self) -> None:
        host = self.kit.connect()
        room_id = host.create("door")["room_id"]
        bob = self.kit.connect()
        bob.send("join", room_id=room_id, options={"slow": True}, id="j")
        bob_id = bob.player_id
        bob.disconnect()  # gone while on_auth is pending
        SlowDoor.doors[0].callback("ok")
        # on_join ran for a player no longer in the room, and on_leave never
        # follows: the room now believes bob joined (a ghost avatar, say).
        self.assertNotIn(("join", bob_id), SlowDoor.calls)

    def test_on_join_does_not_run_in_a_room_disposed_during_on_auth(self) -> None:
        host = self.kit.connect()
        room_id = host.create("door")["room_id"]
        room = self.kit.room(room_id)
        bob = self.kit.connect()
        bob.send("join", room_id=room_id, options={"slow": True}, id="j")
        room.dispose()
        self.assertIn(("dispose", ""), SlowDoor.calls)
        SlowDoor.doors[0].callback("ok")
        self.assertEqual(bob.last("error")["code"], "room_not_found")
        # on_join ran after on_dispose, in a dead room.
        self.assertNotIn(("join", bob.player_id), SlowDoor.calls)


class Slow(Room):
    """An action that waits on a Deferred, and one that records who called it."""

    reconnect_timeout = 30
    gates: list[Deferred[Any]] = []
    marks: list[str] = []

    @action
    def wait(self, player: Player) -> Deferred[Any]:
        gate: Deferred[Any] = Deferred()
        self.gates.append(gate)
        return gate

    @action
    def mark(self, player: Player, tag: str) -> str:
        self.marks.append(tag)
        return tag


class ReplacedConnectionTests(SynchronousTestCase):
    def test_a_replaced_connections_queued_messages_are_not_handled(self) -> None:
        Slow.gates, Slow.marks = [], []
        kit = Harness({"slow": Slow})
        alice = kit.connect()
        alice.create("slow")
        alice.send("wait", id="w")  # still running...
        alice.send("mark", tag="from-old-connection", id="m")  # ...so this one queues
        back = alice.reconnect()  # the old connection is still open: replaced
        self.assertEqual(alice.link.closed[0], "replaced")  # type: ignore[index]
        # The old connection's transport reports it closed.
        kit.service.disconnect(alice.link.player, alice.link)
        Slow.gates[0].callback(None)
        # The closed connection's queued message still ran, as the player,
        # and its reply reached the new connection, which never sent it.
        self.assertEqual(Slow.marks, [])
        self.assertEqual([m for m in back.messages if m.get("id") == "m"], [])


class JoiningPlayersTests(SynchronousTestCase):
    def setUp(self) -> None:
        SlowDoor.calls = []
        SlowDoor.doors = []
        self.kit = Harness({"door": SlowDoor})

    def test_a_player_still_in_on_auth_is_not_in_the_room(self) -> None:
        ann = self.kit.connect()
        room_id = ann.create("door")["room_id"]
        room = self.kit.room(room_id)
        bob = self.kit.connect()
        bob.send("join", room_id=room_id, options={"slow": True}, id="j")  # on_auth pending
        carol = self.kit.connect()
        joined = carol.join(room_id)
        # Room.players is documented as "seated, or dropped with their seat
        # held", and joined.players as "every player in the room": bob is
        # neither (his on_auth has not answered, and may refuse him).
        self.assertNotIn(bob.player_id, room.players)
        self.assertNotIn(bob.player_id, joined["players"])


class _HalfClosable(StringTransportWithDisconnection):
    """A TCP-like transport: closing our side only, then reading on (what GameProtocol's linger expects)."""

    half_closed = False

    def loseWriteConnection(self) -> None:
        self.half_closed = True


class ThrottledCloseTests(SynchronousTestCase):
    def test_a_connection_closed_while_throttled_is_read_during_its_linger(self) -> None:
        clock = Clock()
        service = RoomService(clock, {})
        factory = GameFactory(service, clock, limits=Limits(rate=8, burst=4))
        factory.startFactory()
        self.addCleanup(factory.stopFactory)
        transport = _HalfClosable(peerAddress=IPv4Address("TCP", "10.0.0.1", 4000))
        protocol = factory.buildProtocol(None)
        transport.protocol = protocol
        protocol.makeConnection(transport)
        protocol.dataReceived(b'{"action":"ping"}\n' * 20)  # over the rate: reading paused
        self.assertEqual(transport.producerState, "paused")
        # The server closes it (reconnect elsewhere, shutdown, a timeout...).
        protocol.close("replaced", "the player reconnected elsewhere")
        self.assertTrue(transport.half_closed)  # lingering, to read until the client closes
        clock.advance(1)  # the throttle is long over
        # GameProtocol._disconnect: "read (and drop) what the client still
        # sends until it closes too: closing with unread input would make the
        # kernel reset the connection". Reading stays paused for good, so the
        # client's close is never seen and the linger ends in an abort (RST).
        self.assertEqual(transport.producerState, "producing")
