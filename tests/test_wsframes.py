"""FrameReader: the WebSocket frames a client sends, read in front of wsproto, checked against wsproto itself."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from gameframe._wsframes import FrameReader, unmask
from tests._rawws import BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, frame

LIMIT = 100_000


class Parsed:
    """What wsproto makes of the bytes it is given, messages reassembled as Twisted does."""

    def __init__(self) -> None:
        self.conn = Connection(ConnectionType.SERVER)
        self.events: list[tuple[str, Any]] = []
        self._text = ""
        self._data = b""

    def receive(self, data: bytes) -> None:
        self.conn.receive_data(data)
        for event in self.conn.events():
            if isinstance(event, TextMessage):
                self._text += event.data
                if event.message_finished:
                    self.events.append(("text", self._text))
                    self._text = ""
            elif isinstance(event, BytesMessage):
                self._data += event.data
                if event.message_finished:
                    self.events.append(("bytes", self._data))
                    self._data = b""
            elif isinstance(event, Ping):
                self.events.append(("ping", bytes(event.payload)))
            elif isinstance(event, Pong):
                self.events.append(("pong", bytes(event.payload)))
            elif isinstance(event, CloseConnection):
                self.events.append(("close", event.code))

    @property
    def closed(self) -> bool:
        return bool(self.events) and self.events[-1][0] == "close"


class Reading(Parsed):
    """A FrameReader with wsproto behind it, as the WebSocket link wires them."""

    def __init__(self, limit: int = LIMIT) -> None:
        super().__init__()
        self.raw: list[bytes] = []
        self.stop_after_text = -1
        self.reader = FrameReader(limit, self._on_text, self._on_raw)

    def _on_text(self, message: str) -> bool:
        self.events.append(("text", message))
        return len(self.events) != self.stop_after_text

    def _on_raw(self, data: bytes) -> bool:
        self.raw.append(data)
        self.receive(data)
        return not self.closed

    def feed(self, *chunks: bytes) -> bool:
        """Like the link: nothing more is read once the connection is closing."""
        for chunk in chunks:
            if self.closed or len(self.events) == self.stop_after_text:
                break
            if not self.reader.feed(chunk):
                return False
        return True


def wsproto_alone(stream: bytes) -> list[tuple[str, Any]]:
    """wsproto's reading of the whole stream, up to the first close (Twisted closes there)."""
    parsed = Parsed()
    parsed.receive(stream)
    closes = [n for n, (kind, _) in enumerate(parsed.events) if kind == "close"]
    return parsed.events[: closes[0] + 1] if closes else parsed.events


def text(message: str, **kwargs: Any) -> bytes:
    return frame(TEXT, message.encode(), key=os.urandom(4), **kwargs)


def test_unmask_is_its_own_inverse_at_every_size() -> None:
    key = b"\x12\x34\x56\x78"
    for size in (0, 1, 3, 4, 5, 125, 2047, 2048, 2049, 70000):
        payload = os.urandom(size)
        masked = unmask(payload, key)
        assert masked == bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        assert unmask(masked, key) == payload


def test_many_whole_text_frames_in_one_read_never_reach_wsproto() -> None:
    reading = Reading()
    messages = [f'{{"action":"move","n":{n}}}' for n in range(50)]
    assert reading.feed(b"".join(text(m) for m in messages))
    assert reading.events == [("text", m) for m in messages]
    assert reading.raw == []
    assert not reading.reader.partial


def test_16_and_64_bit_lengths_and_an_empty_message() -> None:
    reading = Reading()
    medium, large = "m" * 300, "é" * 40_000  # 80,000 bytes: a 64-bit length
    assert reading.feed(text(medium) + text(large) + text(""))
    assert reading.events == [("text", medium), ("text", large), ("text", "")]
    assert reading.raw == []


def test_a_frame_split_across_reads_goes_to_wsproto_and_the_next_one_does_not() -> None:
    reading = Reading()
    first, second, third = text("first"), text("second" * 30), text("third")
    cut = len(first) + 3  # inside the second frame's header
    stream = first + second + third
    assert reading.feed(stream[:cut])
    assert reading.reader.partial
    assert reading.feed(stream[cut:])
    assert reading.events == [("text", "first"), ("text", "second" * 30), ("text", "third")]
    assert reading.raw == [second[:3], second[3:]]  # the third frame was whole again
    assert not reading.reader.partial


def test_control_frames_between_fragments_keep_their_order() -> None:
    reading = Reading()
    stream = (
        text("plain")
        + frame(TEXT, b'{"a":', fin=False)
        + frame(PING, b"p1")
        + frame(CONTINUATION, b'"b"', fin=False)
        + frame(PONG, b"p2")
        + frame(CONTINUATION, b"}")
        + text("after")
    )
    assert reading.feed(stream)
    assert reading.events == [
        ("text", "plain"),
        ("ping", b"p1"),
        ("pong", b"p2"),
        ("text", '{"a":"b"}'),
        ("text", "after"),
    ]


def test_a_final_text_frame_inside_a_fragmented_message_is_wsprotos_to_refuse() -> None:
    reading = Reading()
    assert reading.feed(frame(TEXT, b"a", fin=False) + text("b"))
    assert reading.events == [("close", 1002)]


def test_invalid_utf8_in_a_whole_frame_closes_with_1007() -> None:
    reading = Reading()
    assert reading.feed(text("ok") + frame(TEXT, b"\xff\xfe") + text("never"))
    assert reading.events == [("text", "ok"), ("close", 1007)]


def test_unmasked_and_non_minimal_frames_are_wsprotos_to_refuse() -> None:
    for bad in (
        frame(TEXT, b"x", mask=False),
        frame(TEXT, b"x", length_bytes=2),
        frame(TEXT, b"x" * 200, length_bytes=8),
        frame(TEXT, b"x", rsv=4),
    ):
        reading = Reading()
        assert reading.feed(bad + text("never"))
        assert reading.events == [("close", 1002)], bad[:2]


def test_a_message_declared_over_the_limit_stops_the_reading() -> None:
    reading = Reading(limit=1000)
    assert not reading.feed(text("ok") + text("x" * 1001))
    assert reading.events == [("text", "ok")]
    reading = Reading(limit=1000)
    fragments = frame(TEXT, b"x" * 600, fin=False) + frame(PING, b"p")
    assert not reading.feed(fragments + frame(CONTINUATION, b"x" * 600)[:8])  # its whole header
    assert reading.raw == []


def test_a_text_handler_that_closes_stops_the_reading() -> None:
    reading = Reading()
    reading.stop_after_text = 1
    assert reading.feed(text("one") + frame(PING, b"p") + text("two"))
    assert reading.events == [("text", "one")]


def test_partial_and_ended_tell_when_an_unfinished_message_began() -> None:
    reading = Reading()
    reader = reading.reader
    reader.feed(frame(TEXT, b"a", fin=False))
    assert reader.partial and reader.ended == 0
    reader.feed(frame(PING, b"p"))
    assert reader.partial and reader.ended == 0  # a ping inside a message ends nothing
    reader.feed(frame(CONTINUATION, b"b") + frame(PING, b"q")[:3])
    assert reader.partial and reader.ended == 1
    reader.feed(frame(PING, b"q")[3:])
    assert not reader.partial and reader.ended == 2


# -- against wsproto alone, any frames, any reads ------------------------------

payloads = st.one_of(
    st.text(max_size=40).map(str.encode),
    st.text(min_size=126, max_size=400).map(str.encode),
    st.sampled_from([b"\xff", b"\xc3", b"ok\xed\xa0\x80"]),
)


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    out = b""
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["text", "text", "fragmented", "ping", "pong", "binary"]))
        key = draw(st.binary(min_size=4, max_size=4))
        if kind == "text":
            out += frame(TEXT, draw(payloads), key=key)
        elif kind == "binary":
            out += frame(BINARY, draw(st.binary(max_size=200)), key=key)
        elif kind in ("ping", "pong"):
            out += frame(PING if kind == "ping" else PONG, draw(st.binary(max_size=20)), key=key)
        else:
            data = draw(payloads)
            cut = draw(st.integers(0, len(data)))
            out += frame(TEXT, data[:cut], fin=False, key=key)
            if draw(st.booleans()):
                out += frame(PING, b"mid", key=key)
            out += frame(CONTINUATION, data[cut:], key=key)
    if draw(st.booleans()):
        out += frame(CLOSE, b"\x03\xe8", key=b"abcd")
    return out


@settings(max_examples=300, deadline=None)
@given(streams(), st.lists(st.integers(1, 64), max_size=30))
def test_any_stream_in_any_reads_means_what_it_means_to_wsproto(
    stream: bytes, cuts: list[int]
) -> None:
    reading = Reading()
    i = 0
    for size in cuts:
        if not reading.feed(stream[i : i + size]):
            break
        i += size
    if not reading.closed:
        reading.feed(stream[i:])
    assert reading.events == wsproto_alone(stream)
    if reading.events and reading.events[-1][0] != "close":
        assert not reading.reader.partial
