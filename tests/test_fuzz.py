"""
Hostile input, generated: JSON Lines framing, the codec and action dispatch
never raise, never log a failure, and answer only with what docs/protocol.md
documents.
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Literal

import orjson
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from zope.interface import provider

from gameframe import GameFactory, GameProtocol, Player, Room, RoomService, action
from gameframe.codec import GameError, decode
from gameframe.demo.chat import ChatRoom
from gameframe.testing import FakeClient, Harness

# Deterministic, no example database, bounded: the file runs in seconds.
FUZZ = settings(
    derandomize=True,
    database=None,
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

MAX_FRAME = 200


def documented_error_codes() -> frozenset[str]:
    """The codes of the table under "## Errors" in docs/protocol.md."""
    doc = (Path(__file__).parent.parent / "docs" / "protocol.md").read_text()
    table = doc.split("\n## Errors\n", 1)[1].split("\nRooms add their own codes", 1)[0]
    return frozenset(re.findall(r"^\| `(\w+)` \|", table, re.MULTILINE))


ERROR_CODES = documented_error_codes()
# internal_error is documented, but it means the server failed (and logged it).
CLIENT_ERROR_CODES = ERROR_CODES - {"internal_error"}
DECODE_ERROR_CODES = frozenset({"bad_json", "bad_utf8", "bad_message"})
FATAL_CODES = frozenset({"bad_utf8", "frame_too_large"})


def test_the_error_codes_are_read_from_the_docs() -> None:
    assert {"bad_json", "bad_utf8", "bad_message", "bad_arguments", "unknown_action"} <= ERROR_CODES
    assert "frame_too_large" in ERROR_CODES


@contextmanager
def failures_logged() -> Iterator[list[LogEvent]]:
    """Collect the events logged with a failure (C{log.failure}) meanwhile."""
    failures: list[LogEvent] = []

    @provider(ILogObserver)
    def observe(event: LogEvent) -> None:
        if "log_failure" in event:
            failures.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        yield failures
    finally:
        globalLogPublisher.removeObserver(observe)


def assert_no_failures(failures: list[LogEvent]) -> None:
    assert not failures, [
        (event.get("log_format"), event["log_failure"].getTraceback()) for event in failures
    ]


# -- rooms under fire ------------------------------------------------------------


class Typed(Room):
    """Handlers of every argument type the dispatcher checks."""

    max_players = 4

    @action
    def move(self, player: Player, x: float, y: float) -> dict[str, float]:
        return {"x": x, "y": y}

    @action
    def say(self, player: Player, text: str, loud: bool = False) -> None:
        self.broadcast({"action": "said", "player_id": player.id, "text": text})

    @action
    def pick(self, player: Player, cells: list[int]) -> int:
        return sum(1 for _ in cells)

    @action
    def mode(self, player: Player, mode: Literal["duel", "ffa"], rounds: int | None = None) -> str:
        return mode

    @action
    def config(self, player: Player, settings: dict[str, int | str]) -> int:
        return len(settings)

    @action
    def pair(self, player: Player, pair: tuple[int, str]) -> list[Any]:
        return list(pair)

    @action
    def anything(self, player: Player, **fields: Any) -> list[str]:
        return sorted(fields)

    @action
    def echo(self, player: Player, value: Any = None) -> Any:
        return value


ROOM_MESSAGES = frozenset({"said"})
SERVER_ACTIONS = frozenset(
    {"welcome", "error", "disconnect", "rooms", "joined", "left", "result", "state", "patch",
     "pong", "player_joined", "player_left"}
) | ROOM_MESSAGES  # fmt: skip


def assert_documented(message: dict[str, Any]) -> None:
    """A message a client may receive: a known action; an error with a documented code."""
    assert message["action"] in SERVER_ACTIONS, message
    if message["action"] == "error":
        assert message["code"] in CLIENT_ERROR_CODES, message
        assert isinstance(message["message"], str) and message["message"], message
    if "id" in message:
        assert type(message["id"]) in (str, int, float), message


# -- JSON values -------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=8), children, max_size=4),
    ),
    max_leaves=12,
)


def dumps(value: Any) -> bytes:
    """Standard JSON as any client library writes it (big integers included)."""
    return json.dumps(value, allow_nan=False, ensure_ascii=False).encode()


# -- 1. JSON Lines framing ----------------------------------------------------------


class Wire:
    """One GameProtocol on a StringTransport, on its own service and clock."""

    def __init__(self) -> None:
        self.clock = Clock()
        service = RoomService(self.clock, {"typed": Typed, "chat": ChatRoom})
        factory = GameFactory(service, self.clock, max_frame=MAX_FRAME, max_pending=1 << 20)
        self.protocol: GameProtocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 4000))
        self.transport = StringTransportWithDisconnection()
        self.transport.protocol = self.protocol
        self.protocol.makeConnection(self.transport)

    def feed(self, chunks: list[bytes]) -> list[dict[str, Any]]:
        """Write the chunks, one reactor turn each; every message the server wrote."""
        for chunk in chunks:
            self.protocol.dataReceived(chunk)
            self.clock.advance(0)
        self.clock.advance(0)
        raw = self.transport.value()
        assert raw == b"" or raw.endswith(b"\n"), raw
        return [orjson.loads(line) for line in raw.split(b"\n")[:-1]]


def normalized(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The replies without what is random per connection (ids, tokens, listings)."""
    out = []
    for message in messages:
        message = dict(message)
        for key in ("player_id", "room_id", "token"):
            if key in message:
                message[key] = "*"
        if "players" in message:
            message["players"] = len(message["players"])
        if "rooms" in message:
            message["rooms"] = len(message["rooms"])
        out.append(message)
    return out


line_pieces = st.one_of(
    st.binary(max_size=40),
    st.sampled_from(
        [b"\n", b"\r\n", b"\r", b" ", b"\t\n", b"{", b"}", b"\xff", b"\xef\xbb\xbf", b"\xed\xa0\x80",
         b"\xc3", b"\xa9", b'"', b"NaN", b"1e999", b"[" * 300, b"x" * (MAX_FRAME + 1)]
    ),
    json_values.map(dumps),
    st.builds(
        lambda action, fields, request_id: dumps({"action": action, **fields, "id": request_id}),
        st.sampled_from(["list", "join_or_create", "create", "leave", "echo", "say", "move",
                         "pick", "anything", "sync", "reconnect", "join", "nope", ""]),
        st.dictionaries(st.sampled_from(["room", "text", "x", "y", "value", "cells", "options",
                                         "room_id", "token"]),
                        json_values, max_size=3),
        st.one_of(st.none(), st.integers(), st.text(max_size=5), json_values),
    ),
)  # fmt: skip


@st.composite
def byte_streams(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    """A stream of lines and junk, and the same bytes cut at random points."""
    pieces = draw(st.lists(st.tuples(line_pieces, st.booleans()), max_size=12))
    stream = b"".join(piece + (b"\n" if newline else b"") for piece, newline in pieces)
    cuts = sorted(draw(st.sets(st.integers(0, len(stream)), max_size=10)))
    bounds = [0, *cuts, len(stream)]
    return stream, [stream[a:b] for a, b in zip(bounds, bounds[1:])]


@FUZZ
@given(byte_streams())
def test_framing_never_breaks_and_is_split_invariant(streams: tuple[bytes, list[bytes]]) -> None:
    """
    Any bytes, in one chunk or cut anywhere: no exception, no logged failure,
    only documented replies, the same ones either way; a fatal error is the
    last thing the server writes, and then the connection is closed.
    """
    stream, chunks = streams
    with failures_logged() as failures:
        whole, split = Wire(), Wire()
        at_once = whole.feed([stream])
        in_pieces = split.feed(chunks)
    assert_no_failures(failures)
    assert at_once[0]["action"] == "welcome"
    for message in at_once:
        assert_documented(message)
    assert normalized(at_once) == normalized(in_pieces)
    codes = [m.get("code") for m in at_once if m["action"] == "error"]
    for code in set(codes):
        event(f"error {code}")
    event(f"{len(chunks)} chunks")
    fatal = [code for code in codes if code in FATAL_CODES]
    if fatal:
        assert codes[-1] in FATAL_CODES and len(fatal) == 1, codes
        assert at_once[-1]["action"] == "error"
        assert whole.transport.disconnecting or not whole.transport.connected
    else:
        assert whole.transport.connected and not whole.transport.disconnecting


@FUZZ
@given(st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=8))
def test_framing_random_bytes(chunks: list[bytes]) -> None:
    """Pure noise, in chunks: documented replies only, and no failure logged."""
    with failures_logged() as failures:
        messages = Wire().feed(chunks)
    assert_no_failures(failures)
    for message in messages:
        assert_documented(message)


# -- 2. the codec --------------------------------------------------------------------


def assert_decodes_or_refuses(frame: bytes | str) -> None:
    """decode returns a message with a non-empty string action, or raises a documented GameError."""
    try:
        message = decode(frame)
    except GameError as error:
        assert error.code in DECODE_ERROR_CODES, error
        assert error.message
        assert type(error.request_id) in (str, int, float, type(None)), error.request_id
        return
    assert type(message) is dict
    assert type(message["action"]) is str and message["action"]
    assert type(message.get("id")) in (str, int, float, type(None))


@FUZZ
@given(st.binary(max_size=200))
def test_codec_any_bytes(frame: bytes) -> None:
    assert_decodes_or_refuses(frame)


# Text as a WebSocket delivers it, lone surrogates included (which UTF-8 cannot hold).
any_text = st.text(
    st.one_of(st.characters(), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)),
    max_size=60,
)


@FUZZ
@given(any_text)
def test_codec_any_text(frame: str) -> None:
    assert_decodes_or_refuses(frame)


def message_with(value_json: str, key: str = "value") -> str:
    return '{"action": "echo", "%s": %s, "id": 1}' % (key, value_json)


hostile_values = st.one_of(
    st.sampled_from(
        ["NaN", "-NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1e-999", "0.0e0",
         "123456789012345678901234567890", "-123456789012345678901234567890",
         "18446744073709551615", "18446744073709551616", "-9223372036854775809",
         "1" * 400, "0" + "1" * 30, "01", "-", "+1", ".5", "1.", "0x10",
         '"\\ud800"', '"\\udc00"', '"\\udbff\\udfff"', '"\\ud800\\u0041"', '"\\u0000"',
         '"\ud800"', '"\udfff"', '"\ufeff"', '"\\uFFFF"', '"\\x41"', "'single'",
         "true", "True", "null", "None", "undefined", "[1,]", "{,}", '{"a":1,}']
    ),
    st.integers(min_value=0, max_value=1500).map(lambda n: "[" * n + "]" * n),
    st.integers(min_value=0, max_value=1500).map(lambda n: '{"a":' * n + "1" + "}" * n),
)  # fmt: skip


@FUZZ
@given(hostile_values)
def test_codec_hostile_values(value: str) -> None:
    """Deep nesting, huge numbers, NaN/Infinity, lone surrogates (escaped and raw), bad literals."""
    text = message_with(value)
    assert_decodes_or_refuses(text)
    assert_decodes_or_refuses(text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(
    st.sampled_from(["", "\ufeff", "\ufeff\ufeff", " ", "\u00a0", "\u2028", "\x00"]),
    st.sampled_from(
        ['{"action": "a"}', '{"action": "a", "action": "b"}', '{"action": "a", "action": 5}',
         '{"action": 5, "action": "a"}', '{"id": 1, "id": [], "action": "a"}', '{"action": "a", "id": []}',
         "[]", "[{}]", '"action"', "1", "null", "true", "{}", '{"action": ""}', '{"action": null}',
         '{"action": "a"} {"action": "b"}', '{"action": "a"}\n{"action": "b"}']
    ),
    st.sampled_from(["", "\ufeff", " ", "\x00", "\n"]),
)  # fmt: skip
def test_codec_boms_duplicates_and_non_objects(prefix: str, body: str, suffix: str) -> None:
    """BOMs and odd characters around the JSON, duplicate keys, values that are not objects."""
    text = prefix + body + suffix
    assert_decodes_or_refuses(text)
    assert_decodes_or_refuses(text.encode("utf-8"))
    assert_decodes_or_refuses(text.encode("utf-16"))


def test_codec_documented_refusals() -> None:
    """The cases docs/protocol.md names, exactly."""
    for frame, code in [
        (b'\xef\xbb\xbf{"action": "a"}', "bad_json"),  # a UTF-8 byte order mark
        (b'{"action": "a", "x": NaN}', "bad_json"),
        (b'{"action": "a", "x": 1e999}', "bad_json"),  # too large for a double
        (b'{"action": "a"} {"action": "b"}', "bad_json"),  # two values on a line
        (b'{"action": "a", "x": "\\ud800"}', "bad_json"),  # an escaped lone surrogate
        (b'{"action": "a", "x": "\xed\xa0\x80"}', "bad_utf8"),  # a raw (CESU) surrogate
        (b"[1, 2]", "bad_message"),
        (b'{"action": "a", "id": true}', "bad_message"),
    ]:
        try:
            decode(frame)
        except GameError as error:
            assert error.code == code, (frame, error)
        else:
            raise AssertionError(f"{frame!r} decoded")
    # An integer too large for 64 bits arrives as a float.
    assert decode(b'{"action": "a", "n": 18446744073709551616}')["n"] == 2.0**64


# -- 3. dispatch ---------------------------------------------------------------------

action_names = st.one_of(
    st.sampled_from(
        ["move", "say", "pick", "mode", "config", "pair", "anything", "echo", "list", "leave",
         "join_or_create", "create", "join", "reconnect", "sync", "ping", "authenticate",
         "on_join", "on_leave", "_dispatch", "broadcast", "__init__", "players", ""]
    ),
    st.text(max_size=12),
)  # fmt: skip
field_names = st.one_of(
    st.sampled_from(
        ["x", "y", "text", "loud", "cells", "mode", "rounds", "settings", "pair", "value",
         "player", "self", "room", "room_id", "options", "token", "id", "action", "fields"]
    ),
    st.text(max_size=8),
)  # fmt: skip
request_ids = st.one_of(
    st.none(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6), st.booleans(), st.lists(st.integers(), max_size=2),
)  # fmt: skip


finite = st.floats(allow_nan=False, allow_infinity=False)
well_typed = st.one_of(
    st.fixed_dictionaries({"action": st.just("move"), "x": finite, "y": st.integers()}),
    st.fixed_dictionaries({"action": st.just("say"), "text": st.text()},
                          optional={"loud": st.booleans()}),
    st.fixed_dictionaries({"action": st.just("pick"), "cells": st.lists(st.integers())}),
    st.fixed_dictionaries({"action": st.just("mode"), "mode": st.sampled_from(["duel", "ffa"])},
                          optional={"rounds": st.none() | st.integers()}),
    st.fixed_dictionaries({"action": st.just("config"),
                           "settings": st.dictionaries(st.text(), st.integers() | st.text())}),
    st.fixed_dictionaries({"action": st.just("pair"), "pair": st.tuples(st.integers(), st.text())}),
    st.fixed_dictionaries({"action": st.just("echo")}, optional={"value": json_values}),
    st.fixed_dictionaries({"action": st.just("anything")}),
    st.fixed_dictionaries({"action": st.sampled_from(["leave", "list", "sync"])}),
    st.fixed_dictionaries({"action": st.sampled_from(["join_or_create", "create"]),
                           "room": st.sampled_from(["typed", "chat", "golf"])}),
)  # fmt: skip


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """One line a client could write: an action, fields of any JSON value, maybe an id."""
    if draw(st.booleans()):
        message: dict[str, Any] = draw(well_typed)
    else:
        message = {"action": draw(action_names)}
        message.update(draw(st.dictionaries(field_names, json_values, max_size=4)))
    request_id = draw(request_ids)
    if request_id is not None or draw(st.booleans()):
        message["id"] = request_id
    return dumps(message)


def receive_line(client: FakeClient, line: bytes) -> None:
    """What a connection does with a line: decode it, then hand the message or the error over."""
    try:
        message: dict[str, Any] | GameError = decode(line)
    except GameError as error:
        message = error
    client.harness.service.receive(client.player, message)


@FUZZ
@given(st.lists(requests(), min_size=1, max_size=15))
def test_dispatch_of_any_action_and_arguments(lines: list[bytes]) -> None:
    """
    Any action with any arguments, in a room of typed handlers: only results
    and documented errors, nothing logged as a failure, and the room and
    the other player go on.
    """
    with failures_logged() as failures:
        kit = Harness({"typed": Typed, "chat": ChatRoom})
        alice, bob = kit.connect(), kit.connect()
        room_id = alice.join_or_create("typed")["room_id"]
        assert bob.join(room_id)["action"] == "joined"
        for line in lines:
            receive_line(alice, line)
        kit.advance(1)
        # The room and the other player go on.
        assert bob.request("echo", value=[1, "two"]) == {
            "action": "result", "result": [1, "two"], "id": bob.messages[-1]["id"],
        }  # fmt: skip
        bob.request("say", text="still here")
        assert bob.last("said")["text"] == "still here"
        assert kit.room(room_id).players.keys() >= {bob.player_id}
        # So does alice's connection, in a room or not.
        assert alice.request("list")["action"] == "rooms"
    assert_no_failures(failures)
    assert alice.link.closed is None and bob.link.closed is None
    for client in (alice, bob):
        for message in client.messages:
            assert_documented(message)
            event(f"{message['action']} {message.get('code', '')}")


@FUZZ
@given(
    st.sampled_from(["move", "say", "pick", "mode", "config", "pair", "anything", "echo"]),
    st.dictionaries(field_names, json_values, max_size=3),
)
def test_typed_handlers_get_only_what_their_types_allow(name: str, fields: dict[str, Any]) -> None:
    """A handler runs only with arguments of its types; anything else is bad_arguments."""
    kit = Harness({"typed": Typed})
    alice = kit.connect()
    alice.join_or_create("typed")
    fields.pop("id", None)
    fields.pop("action", None)
    with failures_logged() as failures:
        reply = alice.request(name, **fields)
    assert_no_failures(failures)
    assert reply["action"] in ("result", "error"), reply
    if reply["action"] == "error":
        assert reply["code"] == "bad_arguments", reply


def test_unknown_actions_and_bad_arguments_are_told_apart() -> None:
    kit = Harness({"typed": Typed})
    alice = kit.connect()
    alice.join_or_create("typed")
    assert alice.request("fly")["code"] == "unknown_action"
    assert alice.request("on_join")["code"] == "unknown_action"
    assert alice.request("move", x="1", y=2)["code"] == "bad_arguments"
    assert alice.request("move", x=1, y=2, player="me")["code"] == "bad_arguments"
    assert alice.request("anything", player="me")["code"] == "bad_arguments"
    assert alice.request("pick", cells=[1, 2.5])["code"] == "bad_arguments"
    assert alice.request("pair", pair=[1, "a", 2])["code"] == "bad_arguments"
    assert alice.request("mode", mode="duel", rounds=None)["result"] == "duel"
    assert alice.request("anything", **{"not an identifier": 1, "é": 2})["result"] == [
        "not an identifier", "é",
    ]  # fmt: skip


@FUZZ
@given(st.integers(min_value=250, max_value=1000), st.sampled_from(["[", '{"a":']))
def test_input_nested_deeper_than_a_reply_can_be(depth: int, opener: str) -> None:
    """Read but never answerable (orjson writes 254 levels): refused as bad_json, with its id."""
    closer = "]" if opener == "[" else "}"
    value = opener * depth + ("1" if opener != "[" else "") + closer * depth
    with failures_logged() as failures:
        wire = Wire()
        wire.protocol._max_frame = 1 << 20
        messages = wire.feed(
            [
                b'{"action": "join_or_create", "room": "typed", "id": 1}\n'
                + f'{{"action": "echo", "value": {value}, "id": 2}}\n'.encode()
            ]
        )
    assert_no_failures(failures)
    assert [m["action"] for m in messages[:2]] == ["welcome", "joined"]
    (reply,) = messages[2:]
    assert (reply["action"], reply["code"], reply["id"]) == ("error", "bad_json", 2), reply
