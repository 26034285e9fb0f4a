"""The TCP protocol: JSON Lines framing, limits, errors, backpressure, disconnects."""

from __future__ import annotations

from typing import Any, cast

import orjson
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from gameframe import GameFactory, GameProtocol, IPlayerLink, Player, Room, RoomService, action
from gameframe.demo.chat import ChatRoom

MAX_FRAME = 200
MAX_PENDING = 2000


class Echo(Room):
    max_players = 2

    @action
    def echo(self, player: Player, value: Any = None) -> Any:
        return value

    @action
    def blob(self, player: Player, size: int) -> str:
        return "x" * size

    @action
    def crash(self, player: Player) -> None:
        raise ValueError("crash")


class Connection:
    """One GameProtocol on a StringTransport, read line by line."""

    def __init__(self, factory: GameFactory, clock: Clock) -> None:
        self.clock = clock
        self.protocol = cast(GameProtocol, factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 4000)))
        self.transport = StringTransportWithDisconnection()
        self.transport.protocol = self.protocol
        self.protocol.makeConnection(self.transport)
        self._read = 0
        self.lost = False
        original = self.protocol.connectionLost

        def lost(reason: Any = None) -> None:
            self.lost = True
            original(reason)

        self.protocol.connectionLost = lost  # type: ignore[method-assign]

    def write(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def send(self, **message: Any) -> None:
        self.write(orjson.dumps(message) + b"\n")

    def read(self) -> list[dict[str, Any]]:
        """Every complete line written since the last read, decoded (flushes first)."""
        self.clock.advance(0)
        data = self.transport.value()
        new, self._read = data[self._read :], len(data)
        assert new == b"" or new.endswith(b"\n"), new
        lines = new.split(b"\n")[:-1]
        return [orjson.loads(line) for line in lines]

    def request(self, **message: Any) -> dict[str, Any]:
        """Send a message with an id; the reply echoing it (other messages are dropped)."""
        assert "id" in message
        self.send(**message)
        replies = [m for m in self.read() if m.get("id") == message["id"]]
        assert len(replies) == 1, replies
        return replies[0]

    @property
    def open(self) -> bool:
        return self.transport.connected and not self.transport.disconnecting


class ProtocolTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.service = RoomService(self.clock, {"chat": ChatRoom, "echo": Echo})
        self.factory = GameFactory(
            self.service, self.clock, max_frame=MAX_FRAME, max_pending=MAX_PENDING
        )

    def connect(self) -> Connection:
        return Connection(self.factory, self.clock)

    def connected(self) -> Connection:
        """A connection whose welcome has been read."""
        conn = self.connect()
        (welcome,) = conn.read()
        self.assertEqual(welcome["action"], "welcome")
        return conn

    def assertError(self, conn: Connection, code: str, request_id: Any = None) -> None:
        (reply,) = conn.read()
        self.assertEqual(reply["action"], "error", reply)
        self.assertEqual(reply["code"], code, reply)
        self.assertTrue(reply["message"])
        if request_id is not None:
            self.assertEqual(reply["id"], request_id)
        else:
            self.assertNotIn("id", reply)

    def assertUsable(self, conn: Connection) -> None:
        self.assertTrue(conn.open)
        reply = conn.request(action="list", id="still-here")
        self.assertEqual(reply["action"], "rooms")
        self.assertEqual(reply["id"], "still-here")


class ConnectionTests(ProtocolTestCase):
    def test_welcome_on_connect(self) -> None:
        conn = self.connect()
        self.clock.advance(0)
        raw = conn.transport.value()
        self.assertTrue(raw.endswith(b"\n"))
        self.assertEqual(raw.count(b"\n"), 1)
        welcome = orjson.loads(raw)
        self.assertEqual(welcome["action"], "welcome")
        self.assertEqual(welcome["server"], "gameframe")
        self.assertIsInstance(welcome["version"], str)
        self.assertIsInstance(welcome["player_id"], str)
        self.assertIn(welcome["player_id"], self.service.players)

    def test_protocol_is_a_player_link_with_a_streaming_producer(self) -> None:
        conn = self.connected()
        verifyObject(IPlayerLink, conn.protocol)
        # Not a plain TCP socket: output goes through the transport, whose
        # pause/resume calls reach the connection's writer.
        self.assertTrue(IPushProducer.providedBy(conn.transport.producer))
        self.assertTrue(conn.transport.streaming)

    def test_json_lines_both_ways(self) -> None:
        conn = self.connected()
        conn.write(b'{"action": "join_or_create", "room": "echo", "id": 1}\n')
        (joined,) = conn.read()
        self.assertEqual((joined["action"], joined["id"]), ("joined", 1))
        conn.write(b'{"action": "echo", "value": {"a": [1, "\\u00e9\\n"]}, "id": 2}\n')
        self.clock.advance(0)
        raw = conn.transport.value().split(b"\n")[-2]
        self.assertEqual(
            orjson.loads(raw), {"action": "result", "result": {"a": [1, "é\n"]}, "id": 2}
        )
        self.assertIn("é".encode(), raw)

    def test_crlf_is_accepted(self) -> None:
        conn = self.connected()
        conn.write(b'{"action": "echo", "id": 1}\r\n{"action": "list", "id": 2}\r\n')
        replies = conn.read()
        self.assertEqual([(r["action"], r["id"]) for r in replies], [("error", 1), ("rooms", 2)])
        self.assertEqual(replies[0]["code"], "not_in_room")

    def test_blank_lines_are_ignored(self) -> None:
        conn = self.connected()
        conn.write(b"\n\n   \n\r\n\t\n")
        self.assertEqual(conn.read(), [])
        conn.write(b'\n{"action": "list", "id": 1}\n\n')
        self.assertEqual([r["id"] for r in conn.read()], [1])
        self.assertTrue(conn.open)

    def test_several_messages_in_one_chunk(self) -> None:
        conn = self.connected()
        conn.write(
            b'{"action": "join_or_create", "room": "echo", "id": 1}\n'
            b'{"action": "echo", "value": "a", "id": 2}\n'
            b'{"action": "echo", "value": "b", "id": 3}\n'
        )
        replies = conn.read()
        self.assertEqual([r["id"] for r in replies], [1, 2, 3])
        self.assertEqual([r.get("result") for r in replies[1:]], ["a", "b"])

    def test_one_message_split_over_chunks(self) -> None:
        conn = self.connected()
        data = b'{"action": "list", "id": "split"}\n'
        for i in range(len(data) - 1):
            conn.write(data[i : i + 1])
            self.assertEqual(conn.read(), [])
        conn.write(data[-1:])
        self.assertEqual(conn.read()[0]["id"], "split")

    def test_a_chunk_ending_mid_message(self) -> None:
        conn = self.connected()
        conn.write(b'{"action": "list", "id": 1}\n{"action": "li')
        self.assertEqual([r["id"] for r in conn.read()], [1])
        conn.write(b'st", "id": 2}\n')
        self.assertEqual([r["id"] for r in conn.read()], [2])

    def test_connection_lost_leaves_the_room(self) -> None:
        alice, bob = self.connected(), self.connected()
        room_id = alice.request(action="join_or_create", room="chat", id=1)["room_id"]
        bob.request(action="join", room_id=room_id, id=1)
        alice.read()
        bob_id = self.service.rooms[room_id].players.keys() - {alice.protocol.player.id}
        bob.transport.loseConnection()
        self.assertEqual(list(self.service.rooms[room_id].players), [alice.protocol.player.id])
        left = [m for m in alice.read() if m["action"] == "player_left"]
        self.assertEqual([m["player_id"] for m in left], list(bob_id))
        self.assertNotIn(list(bob_id)[0], self.service.players)
        alice.transport.loseConnection()
        self.assertEqual(self.service.rooms, {})

    def test_shutdown_closes_with_server_shutdown(self) -> None:
        conn = self.connected()
        conn.request(action="join_or_create", room="chat", id=1)
        conn.read()
        self.service.startService()
        self.successResultOf(self.service.stopService())
        messages = conn.read()
        self.assertEqual([m["action"] for m in messages][-2:], ["left", "disconnect"])
        self.assertEqual(messages[-2]["reason"], "shutdown")
        self.assertEqual(messages[-1]["code"], "server_shutdown")
        self.assertTrue(conn.lost)


def list_line(size: int) -> bytes:
    """A C{list} request of exactly C{size} bytes (a long id), without its newline."""
    head = b'{"action": "list", "id": "'
    return head + b"x" * (size - len(head) - 2) + b'"}'


class FatalInputTests(ProtocolTestCase):
    """Input the server cannot read past: an error, then the connection closes."""

    def assertClosedWith(self, conn: Connection, code: str) -> None:
        messages = conn.read()
        self.assertEqual(messages[-1]["action"], "error")
        self.assertEqual(messages[-1]["code"], code)
        self.assertTrue(conn.lost)
        self.assertFalse(conn.transport.connected)

    def test_frame_at_the_limit_is_accepted(self) -> None:
        conn = self.connected()
        line = list_line(MAX_FRAME)
        self.assertEqual(len(line), MAX_FRAME)
        conn.write(line + b"\r\n")
        self.assertEqual(conn.read()[0]["action"], "rooms")
        self.assertUsable(conn)

    def test_frame_at_the_limit_split_before_its_newline(self) -> None:
        conn = self.connected()
        line = list_line(MAX_FRAME)
        # The whole line, then its CR, then its LF, each in its own chunk.
        conn.write(line)
        conn.write(b"\r")
        self.assertTrue(conn.open)
        conn.write(b"\n")
        self.assertEqual(conn.read()[0]["action"], "rooms")
        self.assertUsable(conn)

    def test_line_over_the_limit(self) -> None:
        conn = self.connected()
        line = list_line(MAX_FRAME + 1)
        self.assertEqual(len(line), MAX_FRAME + 1)
        conn.write(b'{"action": "list", "id": 1}\n' + line + b'\n{"action": "list", "id": 2}\n')
        messages = conn.read()
        self.assertEqual(messages[0]["id"], 1)  # what came before is handled
        self.assertNotIn(2, [m.get("id") for m in messages])  # what came after is not
        self.assertEqual(len(messages), 2)
        self.assertEqual(messages[1]["code"], "frame_too_large")
        self.assertTrue(conn.lost)
        self.assertFalse(conn.transport.connected)

    def test_unterminated_buffer_over_the_limit(self) -> None:
        conn = self.connected()
        conn.write(b'{"action": "echo", "value": "')
        conn.write(b"y" * (MAX_FRAME // 2))
        self.assertEqual(conn.read(), [])
        self.assertTrue(conn.open)
        conn.write(b"y" * MAX_FRAME)  # still no newline
        self.assertClosedWith(conn, "frame_too_large")
        # Nothing more is read from it.
        conn.write(b'\n{"action": "list"}\n')
        self.assertEqual(conn.read(), [])

    def test_one_huge_chunk_without_newline(self) -> None:
        conn = self.connected()
        conn.write(b"z" * (MAX_FRAME * 10))
        self.assertClosedWith(conn, "frame_too_large")

    def test_bad_utf8(self) -> None:
        conn = self.connected()
        conn.write(b'{"action": "list", "id": "\xff\xfe"}\n{"action": "list", "id": 2}\n')
        self.assertClosedWith(conn, "bad_utf8")
        self.assertEqual(len(conn.transport.value().split(b"\n")), 3)  # welcome, error, ""

    def test_fatal_input_leaves_the_room(self) -> None:
        alice, bob = self.connected(), self.connected()
        room_id = alice.request(action="join_or_create", room="chat", id=1)["room_id"]
        bob.request(action="join", room_id=room_id, id=1)
        bob.write(b"\xff\n")
        self.assertClosedWith(bob, "bad_utf8")
        self.assertEqual(list(self.service.rooms[room_id].players), [alice.protocol.player.id])


class RecoverableErrorTests(ProtocolTestCase):
    """Every other bad input gets an error and the connection goes on."""

    def test_bad_json(self) -> None:
        conn = self.connected()
        for line in (b"{", b"hello", b'{"action": "list"} extra', b"{'action': 'list'}"):
            conn.write(line + b"\n")
            self.assertError(conn, "bad_json")
        self.assertUsable(conn)

    def test_bad_message(self) -> None:
        conn = self.connected()
        for line in (b"[1, 2]", b"42", b'"list"', b"{}", b'{"action": ""}', b'{"action": 5}'):
            conn.write(line + b"\n")
            self.assertError(conn, "bad_message")
        conn.write(b'{"action": null, "id": "m1"}\n')
        self.assertError(conn, "bad_message", "m1")
        self.assertUsable(conn)

    def test_lobby_and_room_errors(self) -> None:
        conn = self.connected()
        other = self.connected()
        full_id = other.request(action="create", room="echo", id=0)["room_id"]
        self.connected().request(action="join", room_id=full_id, id=0)
        cases: list[tuple[dict[str, Any], str]] = [
            ({"action": "echo"}, "not_in_room"),
            ({"action": "leave"}, "not_in_room"),
            ({"action": "join", "room_id": "nope"}, "room_not_found"),
            ({"action": "join", "room_id": 5}, "bad_arguments"),
            ({"action": "join", "room_id": full_id}, "room_full"),
            ({"action": "join_or_create", "room": "golf"}, "unknown_room_type"),
            ({"action": "join_or_create", "room": 1}, "bad_arguments"),
            ({"action": "create", "room": "echo", "options": []}, "bad_arguments"),
        ]
        for n, (message, code) in enumerate(cases):
            conn.send(**message, id=n)
            self.assertError(conn, code, n)
            self.assertTrue(conn.open)
        conn.request(action="join_or_create", room="echo", id="j")
        in_room: list[tuple[dict[str, Any], str]] = [
            ({"action": "fly"}, "unknown_action"),
            ({"action": "echo", "bogus": 1}, "bad_arguments"),
            ({"action": "blob", "size": "big"}, "bad_arguments"),
            ({"action": "create", "room": "echo"}, "already_in_room"),
            ({"action": "crash"}, "internal_error"),
        ]
        for n, (message, code) in enumerate(in_room):
            conn.send(**message, id=f"r{n}")
            self.assertError(conn, code, f"r{n}")
            self.assertTrue(conn.open)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(conn.request(action="echo", value=7, id="ok")["result"], 7)
        self.assertUsable(conn)


class BackpressureTests(ProtocolTestCase):
    def blob(self, conn: Connection, size: int) -> None:
        conn.send(action="blob", size=size, id="blob")
        self.clock.advance(0)

    def test_a_client_that_stops_reading_is_disconnected(self) -> None:
        conn = self.connected()
        conn.request(action="join_or_create", room="echo", id=1)
        conn.transport.producer.pauseProducing()
        self.blob(conn, MAX_PENDING // 2)
        self.assertTrue(conn.open)
        self.blob(conn, MAX_PENDING // 2)
        self.assertTrue(conn.transport.disconnected, "the connection was not aborted")
        self.assertTrue(conn.lost)
        self.assertEqual(self.service.rooms, {})
        self.assertEqual(self.service.players, {})

    def test_output_while_paused_below_the_limit_is_fine(self) -> None:
        conn = self.connected()
        conn.request(action="join_or_create", room="echo", id=1)
        conn.transport.producer.pauseProducing()
        for _ in range(3):
            self.blob(conn, MAX_PENDING // 4)
        conn.transport.producer.resumeProducing()
        # Reading again resets the count.
        conn.transport.producer.pauseProducing()
        for _ in range(3):
            self.blob(conn, MAX_PENDING // 4)
        self.assertTrue(conn.open)
        self.assertFalse(conn.transport.disconnected)
        self.assertEqual(len(conn.read()), 6)
        self.assertEqual(conn.protocol.player.room.room_type, "echo")  # type: ignore[union-attr]

    def test_lots_of_output_to_a_reading_client_is_fine(self) -> None:
        conn = self.connected()
        conn.request(action="join_or_create", room="echo", id=1)
        for _ in range(5):
            self.blob(conn, MAX_PENDING)
        self.assertTrue(conn.open)
        self.assertEqual(len(conn.read()), 5)


class FactoryTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        clock = Clock()
        factory = GameFactory(RoomService(clock), clock)
        self.assertEqual(factory.max_frame, 64 * 1024)
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        self.assertIsInstance(protocol, GameProtocol)
        self.assertIs(protocol.factory, factory)
