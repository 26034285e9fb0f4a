"""
WebSocket conformance of the /ws endpoint, case by case after the categories
of the Autobahn test suite (its case numbers in each test's name), spoken by
the raw client of tests/_rawws.py to a real `twistd -n gameframe`.

Whole text frames are parsed by gameframe's FrameReader; everything else
(control frames, fragments, frames split across reads, malformed input) goes
on to Twisted's parser (twisted.web.websocket, on wsproto), and the reader
reads those frames' headers to cap message size. For
every case the server answers as RFC 6455 and docs/protocol.md say, in
bounded time, and keeps serving fresh clients (checked after every test,
with the server's log checked for tracebacks).
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any, Iterator

import pytest
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from tests._rawws import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    Frame,
    HandshakeFailed,
    RawWebSocket,
    close_payload,
    frame,
)
from tests._server import RunningServer

LIMIT = 65536  # the server's default --max-frame, in bytes of one message

PROTOCOL_ERROR = 1002
INVALID_PAYLOAD = 1007


@pytest.fixture(autouse=True)
def still_serving(gameframe_server: RunningServer) -> Iterator[None]:
    """
    After each case: a fresh client is welcomed and served, and the
    server logged no traceback meanwhile.
    """
    logged = len(gameframe_server.log_text())
    yield
    ws = connect(gameframe_server)
    try:
        assert ws.request("list", "after")["action"] == "rooms"
    finally:
        ws.close()
    new_log = gameframe_server.log_text()[logged:]
    assert "Traceback" not in new_log and "Unhandled" not in new_log, new_log


def connect(server: RunningServer, **kwargs: Any) -> RawWebSocket:
    """A raw WebSocket connection to C{/ws}, its C{welcome} read."""
    assert server.web_port is not None
    ws = RawWebSocket(server.web_port, **kwargs)
    try:
        assert ws.recv_json()["action"] == "welcome"
    except BaseException:
        ws.close()
        raise
    return ws


@pytest.fixture
def ws(gameframe_server: RunningServer) -> Iterator[RawWebSocket]:
    conn = connect(gameframe_server)
    try:
        yield conn
    finally:
        conn.close()


def padded(size: int, request_id: str) -> bytes:
    """A C{list} request of exactly C{size} bytes (JSON allows trailing spaces)."""
    message = json.dumps({"action": "list", "id": request_id}).encode()
    assert len(message) <= size
    return message + b" " * (size - len(message))


def assert_fails(ws: RawWebSocket, code: int) -> None:
    """The server fails the connection: a close frame with C{code}, then EOF."""
    closed = ws.read_until_closed()
    assert closed.frame is not None, "the server dropped the connection without a close frame"
    assert closed.code == code, (closed.frame, closed.messages)
    assert closed.messages == [], closed.messages  # nothing was handled meanwhile


def assert_usable(ws: RawWebSocket, request_id: str = "usable") -> None:
    """This connection is open and its requests are answered."""
    assert ws.request("list", request_id)["action"] == "rooms"


# -- 1 framing: data frames of every length class --------------------------------

LENGTHS = [0, 1, 125, 126, 127, 128, 65535, 65536]


@pytest.mark.parametrize("size", LENGTHS)
def test_1_1_text_message_payload_lengths(ws: RawWebSocket, size: int) -> None:
    """1.1.x: text messages at the 7-bit, 16-bit and 64-bit length boundaries (up to the 64 KiB limit)."""
    if size == 0:
        ws.send_text(b"")  # an empty text message is ignored, like whitespace
    elif size < 30:
        ws.send_text(b" " * size)
    else:
        ws.send_text(padded(size, f"size-{size}"))
        assert ws.recv_json()["id"] == f"size-{size}"
    assert_usable(ws)


@pytest.mark.parametrize("size", LENGTHS)
def test_1_2_binary_message_payload_lengths(ws: RawWebSocket, size: int) -> None:
    """1.2.x: binary messages of every length class get bad_message; the connection goes on."""
    ws.send_frame(BINARY, os.urandom(size))
    error = ws.recv_json()
    assert (error["action"], error["code"]) == ("error", "bad_message")
    assert_usable(ws)


def test_1_1_7_text_message_sent_in_chops(ws: RawWebSocket) -> None:
    """1.1.7/1.1.8: a 64 KiB text message written in chops of 997 bytes."""
    data = frame(TEXT, padded(LIMIT, "chopped"))
    for start in range(0, len(data), 997):
        ws.send_raw(data[start : start + 997])
    assert ws.recv_json()["id"] == "chopped"


def test_1_1_a_frame_written_one_byte_at_a_time(ws: RawWebSocket) -> None:
    """1.1.x: a frame header and payload split at every byte."""
    for byte in frame(TEXT, padded(200, "bytewise")):
        ws.send_raw(bytes((byte,)))
    assert ws.recv_json()["id"] == "bytewise"


def test_1_x_payload_length_not_minimally_encoded_is_a_protocol_error(ws: RawWebSocket) -> None:
    """RFC 6455 5.2: "the minimal number of bytes MUST be used to encode the length"."""
    ws.send_frame(TEXT, padded(100, "long-form"), length_bytes=2)
    assert_fails(ws, PROTOCOL_ERROR)


def test_1_x_unmasked_client_frame_is_a_protocol_error(ws: RawWebSocket) -> None:
    """RFC 6455 5.1: a server MUST close the connection on an unmasked client frame."""
    ws.send_frame(TEXT, padded(40, "unmasked"), mask=False)
    assert_fails(ws, PROTOCOL_ERROR)


# -- 2 pings and pongs ---------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [b"", b"Hello, world!", bytes(range(256))[:125], b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff"],
    ids=["2.1-empty", "2.2-text", "2.4-125-bytes", "2.3-binary"],
)
def test_2_ping_is_answered_with_the_same_payload(ws: RawWebSocket, payload: bytes) -> None:
    """2.1-2.4: a ping of 0 to 125 bytes gets a pong with the same payload."""
    ws.send_frame(PING, payload)
    assert ws.recv_pong() == payload
    assert_usable(ws)


def test_2_5_ping_over_125_bytes_is_a_protocol_error(ws: RawWebSocket) -> None:
    """2.5: control frames carry at most 125 bytes."""
    ws.send_frame(PING, b"x" * 126)
    assert_fails(ws, PROTOCOL_ERROR)


def test_2_6_ping_sent_in_chops(ws: RawWebSocket) -> None:
    """2.6: a 125-byte ping written one byte at a time."""
    payload = os.urandom(125)
    for byte in frame(PING, payload):
        ws.send_raw(bytes((byte,)))
    assert ws.recv_pong() == payload


def test_2_7_unsolicited_pongs_are_ignored(ws: RawWebSocket) -> None:
    """2.7/2.8/2.9: pongs nobody asked for are ignored; a ping after them is answered."""
    ws.send_frame(PONG)
    ws.send_frame(PONG, b"unsolicited")
    ws.send_frame(PING, b"after pongs")
    assert ws.recv_pong() == b"after pongs"
    assert_usable(ws)


def test_2_10_many_pings_in_a_row(ws: RawWebSocket) -> None:
    """
    2.10/2.11: ten pings at once. RFC 6455 5.5.3 lets the server answer only
    the newest, so: every pong echoes one of ours, and the last is answered.
    """
    payloads = [f"ping {n}".encode() for n in range(10)]
    ws.send_raw(b"".join(frame(PING, p) for p in payloads))
    seen: list[bytes] = []
    while not seen or seen[-1] != payloads[-1]:
        pong = ws.recv_pong()
        assert pong in payloads, pong
        seen.append(pong)
    assert_usable(ws)


# -- 3 reserved bits -------------------------------------------------------------


@pytest.mark.parametrize("rsv", range(1, 8))
@pytest.mark.parametrize("opcode", [TEXT, BINARY, PING, CLOSE], ids=["text", "binary", "ping", "close"])
def test_3_reserved_bits_are_a_protocol_error(ws: RawWebSocket, rsv: int, opcode: int) -> None:
    """3.1-3.7: RSV1-3 set without a negotiated extension fail the connection with 1002."""
    payload = padded(40, "rsv") if opcode == TEXT else close_payload(1000) if opcode == CLOSE else b"x"
    ws.send_frame(opcode, payload, rsv=rsv)
    assert_fails(ws, PROTOCOL_ERROR)


def test_3_2_valid_message_then_reserved_bits_then_ping(ws: RawWebSocket) -> None:
    """3.2: what came before the bad frame is answered; nothing after it is."""
    ws.send_raw(
        frame(TEXT, padded(40, "before"))
        + frame(TEXT, padded(40, "bad"), rsv=2)
        + frame(PING, b"after")
    )
    closed = ws.read_until_closed()
    assert [m["id"] for m in closed.texts()] == ["before"]
    assert closed.code == PROTOCOL_ERROR


# -- 4 opcodes ---------------------------------------------------------------------


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 11, 12, 13, 14, 15])
def test_4_reserved_opcodes_are_a_protocol_error(ws: RawWebSocket, opcode: int) -> None:
    """4.1.x (non-control 3-7) and 4.2.x (control 11-15): reserved opcodes fail with 1002."""
    ws.send_frame(opcode, b"reserved")
    assert_fails(ws, PROTOCOL_ERROR)


@pytest.mark.parametrize("opcode", [5, 13])
def test_4_x_3_valid_message_then_reserved_opcode_then_ping(ws: RawWebSocket, opcode: int) -> None:
    """4.1.3/4.2.3: a valid message, a frame with a reserved opcode, a ping."""
    ws.send_raw(frame(TEXT, padded(40, "before")) + frame(opcode, b"") + frame(PING))
    closed = ws.read_until_closed()
    assert [m["id"] for m in closed.texts()] == ["before"]
    assert closed.code == PROTOCOL_ERROR


# -- 5 fragmentation ---------------------------------------------------------------


@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE], ids=["5.1-ping", "5.2-pong", "close"])
def test_5_fragmented_control_frame_is_a_protocol_error(ws: RawWebSocket, opcode: int) -> None:
    """5.1/5.2: control frames must not be fragmented."""
    payload = close_payload(1000) if opcode == CLOSE else b"frag"
    ws.send_raw(frame(opcode, payload[:2], fin=False) + frame(CONTINUATION, payload[2:]))
    assert_fails(ws, PROTOCOL_ERROR)


@pytest.mark.parametrize("pieces", [2, 3, 16])
def test_5_3_fragmented_text_message(ws: RawWebSocket, pieces: int) -> None:
    """5.3-5.5: a text message in fragments is one message."""
    data = padded(300, f"in-{pieces}")
    step = -(-len(data) // pieces)
    chunks = [data[i : i + step] for i in range(0, len(data), step)]
    for n, chunk in enumerate(chunks):
        ws.send_frame(TEXT if n == 0 else CONTINUATION, chunk, fin=n == len(chunks) - 1)
    assert ws.recv_json()["id"] == f"in-{pieces}"


def test_5_x_empty_fragments(ws: RawWebSocket) -> None:
    """5.x: fragments of zero bytes, first, middle and last."""
    data = padded(60, "empty-fragments")
    ws.send_raw(
        frame(TEXT, b"", fin=False)
        + frame(CONTINUATION, data[:30], fin=False)
        + frame(CONTINUATION, b"", fin=False)
        + frame(CONTINUATION, data[30:], fin=False)
        + frame(CONTINUATION, b"")
    )
    assert ws.recv_json()["id"] == "empty-fragments"


def test_5_6_ping_between_fragments(ws: RawWebSocket) -> None:
    """5.6-5.8: control frames may come between the fragments of a message."""
    data = padded(100, "pinged")
    ws.send_raw(frame(TEXT, data[:50], fin=False) + frame(PING, b"mid-message"))
    assert ws.recv_pong() == b"mid-message"
    ws.send_raw(frame(PONG, b"x") + frame(CONTINUATION, data[50:]))
    assert ws.recv_json()["id"] == "pinged"


def test_5_19_many_fragments_with_pings_between(ws: RawWebSocket) -> None:
    """5.19/5.20: a message of many fragments, with pings between them."""
    data = padded(50, "fragmented-pinged")
    for n in range(len(data)):
        ws.send_frame(TEXT if n == 0 else CONTINUATION, data[n : n + 1], fin=n == len(data) - 1)
        if n % 10 == 0:
            ws.send_frame(PING, f"{n}".encode())
    message = ws.recv_json()
    assert message["id"] == "fragmented-pinged"
    assert len(ws.pongs) == 5 and ws.pongs[-1] == b"40"


@pytest.mark.parametrize("fin", [True, False], ids=["5.9-fin", "5.10-nofin"])
def test_5_9_continuation_without_a_message_is_a_protocol_error(
    ws: RawWebSocket, fin: bool
) -> None:
    """5.9-5.14: a continuation frame when no message is being received."""
    ws.send_frame(CONTINUATION, b"nothing to continue", fin=fin)
    assert_fails(ws, PROTOCOL_ERROR)


def test_5_15_continuation_after_a_finished_message_is_a_protocol_error(ws: RawWebSocket) -> None:
    """5.15: a message in two fragments, then a continuation with nothing to continue."""
    data = padded(60, "finished")
    ws.send_raw(
        frame(TEXT, data[:30], fin=False)
        + frame(CONTINUATION, data[30:])
        + frame(CONTINUATION, b"more", fin=False)
    )
    closed = ws.read_until_closed()
    assert [m["id"] for m in closed.texts()] == ["finished"]
    assert closed.code == PROTOCOL_ERROR


@pytest.mark.parametrize("opcode", [TEXT, BINARY], ids=["5.18-text", "binary"])
def test_5_18_new_message_inside_a_fragmented_one_is_a_protocol_error(
    ws: RawWebSocket, opcode: int
) -> None:
    """5.18: a text message started, then a new data frame instead of a continuation."""
    ws.send_raw(frame(TEXT, b'{"action": ', fin=False) + frame(opcode, b'"list"}'))
    assert_fails(ws, PROTOCOL_ERROR)


def test_5_x_fragmented_binary_message_gets_bad_message(ws: RawWebSocket) -> None:
    """5.x: a binary message in fragments is one binary message."""
    ws.send_raw(frame(BINARY, b"ab", fin=False) + frame(CONTINUATION, b"cd"))
    assert ws.recv_json()["code"] == "bad_message"
    assert_usable(ws)


# -- 6 UTF-8 handling ------------------------------------------------------------

VALID_UTF8 = "κόσμε, 𝄞 and 🎲 with \u0000-free ascii"


def test_6_2_valid_utf8_split_at_every_byte(ws: RawWebSocket) -> None:
    """6.2.x: a valid UTF-8 message fragmented at every byte, splitting characters."""
    data = json.dumps({"action": "list", "id": VALID_UTF8}, ensure_ascii=False).encode()
    for n in range(len(data)):
        ws.send_frame(TEXT if n == 0 else CONTINUATION, data[n : n + 1], fin=n == len(data) - 1)
    assert ws.recv_json()["id"] == VALID_UTF8


def test_6_x_valid_utf8_round_trips(ws: RawWebSocket) -> None:
    """6.x: valid multi-byte UTF-8 (2, 3 and 4-byte characters) is read and echoed."""
    for text in ["κόσμε", "\u0080\u07ff\u0800\uffff", "\U00010000\U0010ffff", "\ufeffbom inside"]:
        data = json.dumps({"action": "list", "id": text}, ensure_ascii=False).encode()
        ws.send_text(data)
        assert ws.recv_json()["id"] == text


INVALID_UTF8 = {
    "6.3-surrogate": b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
    "6.6-truncated": b"\xce\xba\xe1\xbd",
    "6.8-above-10ffff": b"\xf4\x90\x80\x80",
    "6.9-5-byte": b"\xf8\x88\x80\x80\x80",
    "6.10-lone-continuation": b"\x80",
    "6.14-overlong-slash": b"\xc0\xaf",
    "6.16-fe": b"\xfe",
    "6.17-ff": b"\xff",
    "6.19-lone-start": b"\xc0 ",
    "6.20-surrogate-pair": b"\xed\xa0\x80\xed\xb0\x80",
}


@pytest.mark.parametrize("bad", INVALID_UTF8.values(), ids=INVALID_UTF8.keys())
def test_6_invalid_utf8_text_closes_with_1007(ws: RawWebSocket, bad: bytes) -> None:
    """6.3-6.21: a text message that is not valid UTF-8 fails with 1007, without an error message."""
    ws.send_text(b'{"action": "list", "id": "' + bad + b'"}')
    assert_fails(ws, INVALID_PAYLOAD)


@pytest.mark.parametrize("split", [1, 2, 3])
def test_6_4_invalid_utf8_split_across_fragments(ws: RawWebSocket, split: int) -> None:
    """6.4.x: a character's bytes split over fragments, the invalid byte in the second one."""
    good_start = "é€𝄞".encode()  # c3 a9 | e2 82 ac | f0 9d 84 9e
    ws.send_raw(
        frame(TEXT, b'{"id": "' + good_start[: split + 2], fin=False)  # ends inside a character
        + frame(CONTINUATION, b"\xff\xff" + b'"}')
    )
    assert_fails(ws, INVALID_PAYLOAD)


def test_6_4_invalid_utf8_fails_fast_before_the_message_ends(ws: RawWebSocket) -> None:
    """6.4.1/6.4.2: invalid UTF-8 in the first fragment fails at once, not at the message's end."""
    ws.send_frame(TEXT, b'{"action": "say", "text": "\xed\xa0\x80', fin=False)
    assert_fails(ws, INVALID_PAYLOAD)


def test_6_x_message_ending_inside_a_character(ws: RawWebSocket) -> None:
    """6.x: fragments each fine, but the message ends in the middle of a character."""
    ws.send_raw(frame(TEXT, b'{"id": "', fin=False) + frame(CONTINUATION, b'"}\xf0\x9d'))
    assert_fails(ws, INVALID_PAYLOAD)


# -- 7 close handling --------------------------------------------------------------


def test_7_1_1_close_is_echoed(ws: RawWebSocket) -> None:
    """7.1.1: a message, then a close 1000: the reply, then a close 1000, then EOF."""
    ws.send_raw(frame(TEXT, padded(40, "before-close")) + frame(CLOSE, close_payload(1000)))
    closed = ws.read_until_closed(reply=False)
    assert [m["id"] for m in closed.texts()] == ["before-close"]
    assert closed.code == 1000


@pytest.mark.parametrize(
    "after",
    [
        frame(CLOSE, close_payload(1000)),
        frame(PING, b"after close"),
        frame(TEXT, padded(40, "after-close")),
        frame(TEXT, b"\xff\xfe"),
        frame(17, b"nonsense"),
    ],
    ids=["7.1.2-close", "7.1.3-ping", "7.1.4-text", "invalid-utf8", "garbage"],
)
def test_7_1_data_after_close_is_ignored(ws: RawWebSocket, after: bytes) -> None:
    """7.1.2-7.1.4: whatever follows a close frame is ignored: one close 1000 back, then EOF."""
    ws.send_raw(frame(CLOSE, close_payload(1000)) + after)
    closed = ws.read_until_closed(reply=False)
    assert closed.code == 1000
    assert closed.messages == []


def test_7_1_5_close_inside_a_fragmented_message(ws: RawWebSocket) -> None:
    """7.1.5: a first fragment, a close, the last fragment: the message is never handled."""
    data = padded(60, "never")
    ws.send_raw(
        frame(TEXT, data[:30], fin=False)
        + frame(CLOSE, close_payload(1000))
        + frame(CONTINUATION, data[30:])
    )
    closed = ws.read_until_closed(reply=False)
    assert closed.code == 1000
    assert closed.messages == []


def test_7_1_6_close_during_a_large_message_stream(ws: RawWebSocket) -> None:
    """7.1.6: messages still being answered when a close arrives: replies, then the close."""
    ws.send_raw(b"".join(frame(TEXT, padded(1000, f"m{n}")) for n in range(20)))
    ws.send_close(1000)
    closed = ws.read_until_closed(reply=False)
    assert [m["id"] for m in closed.texts()] == [f"m{n}" for n in range(20)]
    assert closed.code == 1000


def test_7_3_1_close_without_payload(ws: RawWebSocket) -> None:
    """7.3.1: an empty close is echoed (empty, or 1000)."""
    ws.send_frame(CLOSE, b"")
    closed = ws.read_until_closed(reply=False)
    assert closed.frame is not None and closed.code in (None, 1000)


def test_7_3_2_close_with_one_byte_payload_is_a_protocol_error(ws: RawWebSocket) -> None:
    """7.3.2: a close payload of 1 byte cannot hold a status code."""
    ws.send_frame(CLOSE, b"\x03")
    assert_fails(ws, PROTOCOL_ERROR)


@pytest.mark.parametrize(
    "reason", [b"", b"Hello World!", b"*" * 123], ids=["7.3.3-code-only", "7.3.4-reason", "7.3.5-123-bytes"]
)
def test_7_3_close_with_code_and_reason(ws: RawWebSocket, reason: bytes) -> None:
    """7.3.3-7.3.5: a close with a code and a reason of up to 123 bytes is echoed."""
    ws.send_close(1000, reason)
    closed = ws.read_until_closed(reply=False)
    assert closed.code == 1000


def test_7_3_6_close_payload_over_125_bytes_is_a_protocol_error(ws: RawWebSocket) -> None:
    """7.3.6: a code and a 124-byte reason make a 126-byte control frame."""
    ws.send_close(1000, b"*" * 124)
    assert_fails(ws, PROTOCOL_ERROR)


def test_7_5_1_close_reason_not_utf8(ws: RawWebSocket) -> None:
    """7.5.1: a close reason that is not UTF-8 fails with 1007 (1002 would do too)."""
    ws.send_close(1000, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80")
    closed = ws.read_until_closed()
    assert closed.code in (INVALID_PAYLOAD, PROTOCOL_ERROR), closed.frame


VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


@pytest.mark.parametrize("code", VALID_CODES)
def test_7_7_valid_close_codes_are_echoed(ws: RawWebSocket, code: int) -> None:
    """7.7.x: a close with a valid status code is answered with a close (that code, or 1000)."""
    ws.send_close(code)
    closed = ws.read_until_closed(reply=False)
    assert closed.frame is not None
    assert closed.code in (code, 1000)


@pytest.mark.parametrize("code", INVALID_CODES)
def test_7_9_invalid_close_codes_are_a_protocol_error(ws: RawWebSocket, code: int) -> None:
    """7.9.x and 7.13.x: reserved, local-only and out-of-range status codes fail with 1002."""
    ws.send_close(code)
    assert_fails(ws, PROTOCOL_ERROR)


def test_7_x_server_initiated_close_after_frame_too_large(ws: RawWebSocket) -> None:
    """The server's own close (after frame_too_large) is 1000, and it ends the stream."""
    ws.send_text(padded(LIMIT + 1, "too-large"))
    closed = ws.read_until_closed()
    assert [m["code"] for m in closed.texts()] == ["frame_too_large"]
    assert closed.code == 1000


# -- 9 limits ------------------------------------------------------------------------


def test_9_1_message_at_the_limit_passes(ws: RawWebSocket) -> None:
    """9.1.x / 9.2.x: messages up to --max-frame (64 KiB) are read."""
    for size in (16384, 32768, LIMIT):
        ws.send_text(padded(size, f"at-{size}"))
        assert ws.recv_json()["id"] == f"at-{size}"


@pytest.mark.parametrize("size", [LIMIT + 1, 4 * LIMIT, 16 * 1024 * 1024])
def test_9_1_message_over_the_limit_is_frame_too_large(ws: RawWebSocket, size: int) -> None:
    """
    9.1.x: a message over the limit gets frame_too_large, then a close 1000;
    the server does not wait for (or buffer) the whole payload.
    """
    data = frame(TEXT, padded(min(size, LIMIT + 1), "over"), length=size)
    ws.send_raw(data[: 64 * 1024])  # the header and the start only
    closed = ws.read_until_closed()
    assert [(m["action"], m["code"]) for m in closed.texts()] == [("error", "frame_too_large")]
    assert closed.code == 1000


def test_9_x_binary_message_over_the_limit_is_frame_too_large(ws: RawWebSocket) -> None:
    """9.2.x: the limit holds for binary messages too."""
    ws.send_raw(frame(BINARY, b"\0" * (LIMIT + 1)))
    closed = ws.read_until_closed()
    assert [m["code"] for m in closed.texts()] == ["frame_too_large"]
    assert closed.code == 1000


@pytest.mark.parametrize("fragment", [1024, 4096, 65535])
def test_9_3_fragmented_message_at_the_limit_passes(ws: RawWebSocket, fragment: int) -> None:
    """9.3.x / 9.4.x: a 64 KiB message in fragments of various sizes."""
    data = padded(LIMIT, f"frag-{fragment}")
    chunks = [data[i : i + fragment] for i in range(0, len(data), fragment)]
    ws.send_raw(
        b"".join(
            frame(TEXT if n == 0 else CONTINUATION, chunk, fin=n == len(chunks) - 1)
            for n, chunk in enumerate(chunks)
        )
    )
    assert ws.recv_json()["id"] == f"frag-{fragment}"


def test_9_3_fragments_adding_up_over_the_limit(ws: RawWebSocket) -> None:
    """9.3.x: fragments each small, together over the limit: frame_too_large."""
    chunk = b" " * 4096
    ws.send_raw(frame(TEXT, b'{"action": "list"}' + chunk, fin=False))
    for _ in range(LIMIT // len(chunk)):
        ws.send_raw(frame(CONTINUATION, chunk, fin=False))
    closed = ws.read_until_closed()
    assert [m["code"] for m in closed.texts()] == ["frame_too_large"]
    assert closed.code == 1000


def test_9_x_pings_do_not_count_toward_the_limit(ws: RawWebSocket) -> None:
    """Control frames between fragments are not part of the message's size."""
    data = padded(LIMIT, "pings-between")
    half = LIMIT // 2
    ws.send_raw(
        frame(TEXT, data[:half], fin=False)
        + b"".join(frame(PING, b"p" * 125) for _ in range(600))
        + frame(CONTINUATION, data[half:])
    )
    assert ws.recv_json()["id"] == "pings-between"
    assert len(ws.pongs) >= 1


def test_9_x_length_with_the_most_significant_bit_set(ws: RawWebSocket) -> None:
    """
    RFC 6455 5.2: a 64-bit length's most significant bit MUST be 0. Such a
    frame fails the connection: with 1002, or as frame_too_large (it
    declares more than the limit) followed by a close 1000.
    """
    ws.send_raw(frame(TEXT, b"", length=1 << 63)[:14])
    closed = ws.read_until_closed()
    assert closed.frame is not None
    if closed.code == PROTOCOL_ERROR:
        assert closed.messages == []
    else:
        assert [m["code"] for m in closed.texts()] == ["frame_too_large"]
        assert closed.code == 1000


# -- 12 / 13 permessage-deflate ----------------------------------------------------


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate",
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        "x-webkit-deflate-frame",
    ],
)
def test_12_13_deflate_offered_is_not_negotiated(gameframe_server: RunningServer, offer: str) -> None:
    """
    12.x / 13.x: the server accepts the upgrade without an extension, so
    messages stay uncompressed, and a compressed (RSV1) frame is a protocol
    error.
    """
    ws = connect(gameframe_server, headers=[("Sec-WebSocket-Extensions", offer)])
    try:
        assert "sec-websocket-extensions" not in ws.response_headers
        assert_usable(ws)
        ws.send_frame(TEXT, b"\xaaV\xcaLQ\xb2RJ\xcc+\xc9\xcc\xcfS\xd2QP\xca\xc9,.Q\xaa\x05\x00", rsv=4)
        assert_fails(ws, PROTOCOL_ERROR)
    finally:
        ws.close()


# -- the opening handshake -------------------------------------------------------


def test_handshake_without_upgrade_headers_is_refused(gameframe_server: RunningServer) -> None:
    """A plain GET of /ws is not a WebSocket: an HTTP 4xx, no upgrade."""
    assert gameframe_server.web_port is not None
    with socket.create_connection(("127.0.0.1", gameframe_server.web_port), timeout=5) as sock:
        sock.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        response = b""
        while True:
            data = sock.recv(65536)
            if not data:
                break
            response += data
    status = int(response.split(b" ", 2)[1])
    assert 400 <= status < 500, response


def frames_of(data: bytes) -> list[Frame]:
    """Parse server frames out of raw bytes (for the in-memory tests)."""
    frames = []
    while data:
        first, second = data[0], data[1]
        length, at = second & 0x7F, 2
        if length == 126:
            length, at = int.from_bytes(data[2:4], "big"), 4
        elif length == 127:
            length, at = int.from_bytes(data[2:10], "big"), 10
        frames.append(Frame(bool(first & 0x80), (first >> 4) & 7, first & 0x0F, data[at : at + length]))
        data = data[at + length :]
    return frames


# -- in memory: the same Twisted code, on a Clock, for what a socket cannot show --


class InMemoryWeb:
    """The real web site (Twisted's HTTP and WebSocket code) on StringTransports and a Clock."""

    def __init__(self, ping_interval: float = 0) -> None:
        from twisted.internet.address import IPv4Address
        from twisted.internet.task import Clock

        from gameframe.demo import DEMO_ROOMS
        from gameframe.service import RoomService
        from gameframe.web import make_site
        from gameframe.websocket import WebSocketGameFactory

        self._address = IPv4Address("TCP", "127.0.0.1", 5000)
        self.clock = Clock()
        service = RoomService(self.clock, DEMO_ROOMS)
        self.websocket = WebSocketGameFactory(service, self.clock, ping_interval=ping_interval)
        self.websocket.start()
        self.site = make_site(service, self.websocket)
        self.site.reactor = self.clock

    def connect(self) -> InMemoryClient:
        return InMemoryClient(self)


class InMemoryClient:
    def __init__(self, web: InMemoryWeb) -> None:
        from twisted.internet.testing import StringTransport

        self.clock = web.clock
        self.channel = web.site.buildProtocol(web._address)
        self.transport = StringTransport()
        self.channel.makeConnection(self.transport)
        self.channel.dataReceived(
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        self.clock.advance(0)
        assert self.transport.value().startswith(b"HTTP/1.1 101 ")

    def send(self, data: bytes) -> None:
        self.channel.dataReceived(data)
        self.clock.advance(0)

    def request(self, **message: Any) -> None:
        self.send(frame(TEXT, json.dumps(message).encode()))

    def frames(self) -> list[Frame]:
        return frames_of(self.transport.value().split(b"\r\n\r\n", 1)[1])

    def texts(self) -> list[dict[str, Any]]:
        return [json.loads(f.payload) for f in self.frames() if f.opcode == TEXT]


@pytest.mark.parametrize(
    "closing, code",
    [
        (frame(CLOSE, close_payload(1000)), 1000),
        (frame(TEXT, b"\xff"), INVALID_PAYLOAD),
        (frame(TEXT, b"x", rsv=1), PROTOCOL_ERROR),
    ],
    ids=["client-close", "1007", "1002"],
)
def test_7_x_a_closed_websocket_leaves_its_room(closing: bytes, code: int) -> None:
    """
    7.x: however the WebSocket closes (the client's close, a protocol
    error), the server writes one close frame with the right code and the
    player leaves its room once the connection is gone.
    """
    web = InMemoryWeb()
    alice, bob = web.connect(), web.connect()
    alice.request(action="create", room="chat")
    room_id = [m for m in alice.texts() if m["action"] == "joined"][0]["room_id"]
    bob.request(action="join", room_id=room_id)
    alice_id = alice.texts()[0]["player_id"]
    alice.send(closing)
    assert alice.transport.disconnecting
    (close,) = [f for f in alice.frames() if f.opcode == CLOSE]
    assert close.close_code == code
    alice.channel.connectionLost(Failure(ConnectionDone()))
    web.clock.advance(0)
    left = [m for m in bob.texts() if m["action"] == "player_left"]
    assert [m["player_id"] for m in left] == [alice_id]


def test_handshake_with_an_unsupported_version(gameframe_server: RunningServer) -> None:
    """RFC 6455 4.2.2 / 4.4: refused with an HTTP error naming Sec-WebSocket-Version: 13."""
    with pytest.raises(HandshakeFailed) as refused:
        connect(gameframe_server, version="8")
    assert 400 <= refused.value.status < 500
    assert refused.value.headers.get("sec-websocket-version") == "13", refused.value.headers


@pytest.mark.parametrize(
    "closing",
    [frame(CLOSE, close_payload(1000)), frame(TEXT, b"\xff"), frame(TEXT, b"x", rsv=1)],
    ids=["client-close", "1007", "1002"],
)
def test_7_x_no_data_frame_after_the_server_close(closing: bytes) -> None:
    """RFC 6455 5.5.1: no data frame after the server's close frame."""
    web = InMemoryWeb()
    alice, bob = web.connect(), web.connect()
    alice.request(action="create", room="chat")
    room_id = [m for m in alice.texts() if m["action"] == "joined"][0]["room_id"]
    bob.request(action="join", room_id=room_id)
    alice.send(closing)
    assert alice.transport.disconnecting
    bob.request(action="say", text="are you still there?")
    frames = alice.frames()
    closes = [n for n, f in enumerate(frames) if f.opcode == CLOSE]
    assert len(closes) == 1, frames
    assert frames[closes[0] + 1 :] == [], frames[closes[0] :]


def test_7_x_a_closing_connection_does_not_stop_the_pings_in_memory() -> None:
    """One connection whose close never completes must not stop the pings to the others."""
    web = InMemoryWeb(ping_interval=10)
    closing, other = web.connect(), web.connect()
    closing.send(frame(PONG, b"") + frame(CLOSE, close_payload(1000)))
    assert closing.transport.disconnecting
    for _ in range(3):
        other.send(frame(PONG, b"gf"))
        web.clock.advance(10)
    assert [f.payload for f in other.frames() if f.opcode == PING] == [b"gf"] * 3
