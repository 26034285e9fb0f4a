"""The codec: messages to bytes and back, and the stable error codes for bad frames."""

from __future__ import annotations

from typing import Any

import attrs
import orjson
import pytest

from gameframe import GameError
from gameframe.codec import decode, encode, error_message


def decode_error(frame: bytes | str) -> GameError:
    with pytest.raises(GameError) as caught:
        decode(frame)
    return caught.value


# -- encode ------------------------------------------------------------------


def test_encode_is_compact_utf8_json_without_framing() -> None:
    data = encode({"action": "said", "text": "h\u00e9llo\u2603", "n": [1, 2.5, None, True]})
    assert data == b'{"action":"said","text":"h\xc3\xa9llo\xe2\x98\x83","n":[1,2.5,null,true]}'


def test_encode_escapes_newlines_inside_strings() -> None:
    data = encode({"action": "said", "text": "two\nlines\r\n"})
    assert b"\n" not in data and b"\r" not in data
    assert decode(data)["text"] == "two\nlines\r\n"


def test_encode_handles_attrs_instances_and_sets() -> None:
    @attrs.define
    class Point:
        x: int
        y: int
        _secret: str = "hidden"

    data = encode({"action": "moved", "to": Point(1, 2), "tags": {"a"}})
    assert orjson.loads(data) == {"action": "moved", "to": {"x": 1, "y": 2}, "tags": ["a"]}


def test_encode_refuses_what_json_cannot_hold() -> None:
    with pytest.raises(TypeError):
        encode({"action": "x", "value": object()})


def test_round_trip() -> None:
    message: dict[str, Any] = {"action": "place", "cell": 4, "id": 7, "nested": {"a": [1]}}
    assert decode(encode(message)) == message
    assert decode(encode(message).decode("utf-8")) == message


# -- decode errors -------------------------------------------------------------


def test_decode_accepts_bytes_and_str() -> None:
    assert decode(b'{"action": "list"}') == {"action": "list"}
    assert decode('{"action": "list"}') == {"action": "list"}


@pytest.mark.parametrize(
    "frame",
    [b"{", b"not json", b'{"action": "x"} trailing', b"NaN", b"{'action': 'x'}", b""],
)
def test_bad_json(frame: bytes) -> None:
    error = decode_error(frame)
    assert error.code == "bad_json"
    assert error.message


@pytest.mark.parametrize(
    "frame",
    [b"\xff\xfe", b'{"action": "say", "text": "\xff"}', b'{"action": "\xed\xa0\x80"}'],
)
def test_bad_utf8(frame: bytes) -> None:
    error = decode_error(frame)
    assert error.code == "bad_utf8"
    assert error.message


@pytest.mark.parametrize("frame", [b"[]", b'["action"]', b"1", b'"action"', b"null", b"true"])
def test_bad_message_when_not_an_object(frame: bytes) -> None:
    error = decode_error(frame)
    assert error.code == "bad_message"
    assert error.request_id is None


@pytest.mark.parametrize(
    "frame",
    [
        b"{}",
        b'{"id": 1}',
        b'{"action": ""}',
        b'{"action": null}',
        b'{"action": 5}',
        b'{"action": ["list"]}',
        b'{"action": {"name": "list"}}',
        b'{"action": true}',
    ],
)
def test_bad_message_when_action_is_missing_empty_or_not_a_string(frame: bytes) -> None:
    assert decode_error(frame).code == "bad_message"


@pytest.mark.parametrize("request_id", [[1, 2], {"k": "v"}, True])
def test_an_id_must_be_a_string_or_a_number(request_id: Any) -> None:
    """A nested id could not be echoed (or could be, at great cost): refused."""
    error = decode_error(encode({"id": request_id, "action": "list"}))
    assert error.code == "bad_message"
    assert error.request_id is None
    assert "id" in error.message


@pytest.mark.parametrize("request_id", [7, "abc", 1.5])
def test_bad_message_echoes_the_id(request_id: Any) -> None:
    frame = encode({"id": request_id, "action": 3})
    error = decode_error(frame)
    assert error.code == "bad_message"
    assert error.request_id == request_id
    reply = error_message(error.code, error.message, error.request_id)
    assert reply["id"] == request_id


def test_game_error_str_names_the_code() -> None:
    error = GameError("room_full", "room abc is full")
    assert error.code == "room_full"
    assert error.message == "room abc is full"
    assert str(error) == "room_full: room abc is full"


def test_error_message_shape() -> None:
    assert error_message("bad_json", "nope") == {
        "action": "error",
        "code": "bad_json",
        "message": "nope",
    }
    assert error_message("bad_json", "nope", "r1") == {
        "action": "error",
        "code": "bad_json",
        "message": "nope",
        "id": "r1",
    }
    # An id of 0 or "" is still an id the client chose.
    assert error_message("bad_json", "nope", 0)["id"] == 0


def test_deeply_nested_input_is_bad_json_not_a_crash() -> None:
    frame = b'{"action": "x", "a": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert decode_error(frame).code == "bad_json"


def test_big_numbers_decode() -> None:
    # Integers past 64 bits become floats, as in JavaScript; they never crash.
    message = decode(b'{"action": "x", "n": ' + b"9" * 40 + b', "f": 1e308}')
    assert message["n"] == pytest.approx(1e40)
    assert message["f"] == 1e308
