"""
A raw RFC 6455 WebSocket client over a plain socket, independent of any
WebSocket library: the HTTP upgrade by hand, frames built byte by byte
(masked or not, any RSV bits, opcode and declared length, even wrong ones),
and a strict parser for what the server sends back. Every read is bounded
by the socket timeout.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
from typing import Any, Iterable

import attrs

HOST = "127.0.0.1"
TIMEOUT = 5.0
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def accept_key(key: bytes) -> bytes:
    """The Sec-WebSocket-Accept a server must answer C{key} with."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
    key: bytes | None = None,
    length: int | None = None,
    length_bytes: int | None = None,
) -> bytes:
    """
    One client frame, as RFC 6455 section 5.2 lays it out.

    @param rsv: the three RSV bits, as a number from 0 to 7 (RSV1 is 4).
    @param mask: mask the payload (clients must); C{key} picks the masking key.
    @param length: the declared payload length, if not C{len(payload)}.
    @param length_bytes: 0, 2 or 8 extended length bytes, to force a
        non-minimal encoding; by default the minimal one.
    """
    declared = len(payload) if length is None else length
    if length_bytes is None:
        length_bytes = 0 if declared < 126 else 2 if declared < 65536 else 8
    first = (0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0x0F)
    mask_bit = 0x80 if mask else 0
    if length_bytes == 0:
        head = bytes((first, mask_bit | declared))
    elif length_bytes == 2:
        head = bytes((first, mask_bit | 126)) + struct.pack("!H", declared)
    else:
        head = bytes((first, mask_bit | 127)) + struct.pack("!Q", declared)
    if not mask:
        return head + payload
    if key is None:
        key = os.urandom(4)
    return head + key + apply_mask(payload, key)


def apply_mask(payload: bytes, key: bytes) -> bytes:
    """XOR C{payload} with the repeated 4-byte C{key} (masking and unmasking alike)."""
    if not payload:
        return b""
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        len(payload), "big"
    )


def close_payload(code: int | None, reason: bytes = b"") -> bytes:
    """A close frame's payload: a 2-byte status code, then a UTF-8 reason."""
    if code is None:
        return reason
    return struct.pack("!H", code) + reason


@attrs.frozen
class Frame:
    """A frame the server sent."""

    fin: bool
    rsv: int
    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int | None:
        assert self.opcode == CLOSE
        if len(self.payload) < 2:
            return None
        code: int = struct.unpack("!H", self.payload[:2])[0]
        return code

    @property
    def close_reason(self) -> str:
        assert self.opcode == CLOSE
        return self.payload[2:].decode("utf-8")


class ServerProtocolError(AssertionError):
    """The server sent bytes that are not a valid RFC 6455 server frame."""


@attrs.frozen
class Closed:
    """How a connection ended: the server's close frame (if any), what came before."""

    frame: Frame | None
    messages: list[tuple[int, bytes]]
    eof: bool

    @property
    def code(self) -> int | None:
        return None if self.frame is None else self.frame.close_code

    def texts(self) -> list[dict[str, Any]]:
        return [json.loads(data) for opcode, data in self.messages if opcode == TEXT]


class HandshakeFailed(AssertionError):
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        super().__init__(f"handshake refused: {status} {headers} {body!r}")
        self.status = status
        self.headers = headers
        self.body = body


class RawWebSocket:
    """
    A WebSocket connection driven frame by frame. C{recv_frame} returns
    whatever the server sends, control frames included; C{recv_message}
    reassembles data messages and answers the server's own pings.
    """

    def __init__(
        self,
        port: int,
        path: str = "/ws",
        headers: Iterable[tuple[str, str]] = (),
        timeout: float = TIMEOUT,
        host: str = HOST,
        version: str = "13",
        rcvbuf: int | None = None,
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        if rcvbuf is not None:  # before connecting: it sets the window offered
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        try:
            self.sock.connect((host, port))
        except BaseException:
            self.sock.close()
            raise
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.pongs: list[bytes] = []  # pongs seen while reading messages
        self.server_pings = 0
        try:
            self.response_headers = self._handshake(host, port, path, version, list(headers))
        except BaseException:
            self.sock.close()
            raise

    # -- the opening handshake (RFC 6455 section 4) ---------------------------

    def _handshake(
        self, host: str, port: int, path: str, version: str, headers: list[tuple[str, str]]
    ) -> dict[str, str]:
        key = base64.b64encode(os.urandom(16))
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key.decode()}",
            f"Sec-WebSocket-Version: {version}",
            *(f"{name}: {value}" for name, value in headers),
        ]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while b"\r\n\r\n" not in self.buffer:
            self._read_more()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        received = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            received[name.strip().lower()] = value.strip()
        if status != 101:
            raise HandshakeFailed(status, received, self.buffer)
        if received.get("upgrade", "").lower() != "websocket":
            raise ServerProtocolError(f"101 without Upgrade: websocket: {received}")
        if "upgrade" not in received.get("connection", "").lower():
            raise ServerProtocolError(f"101 without Connection: Upgrade: {received}")
        if received.get("sec-websocket-accept", "").encode() != accept_key(key):
            raise ServerProtocolError(f"wrong Sec-WebSocket-Accept: {received}")
        return received

    # -- sending -----------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(self, opcode: int, payload: bytes = b"", **options: Any) -> None:
        self.send_raw(frame(opcode, payload, **options))

    def send_text(self, text: str | bytes, **options: Any) -> None:
        data = text.encode() if isinstance(text, str) else text
        self.send_frame(TEXT, data, **options)

    def send_json(self, **message: Any) -> None:
        self.send_text(json.dumps(message))

    def send_close(self, code: int | None = 1000, reason: bytes = b"") -> None:
        self.send_frame(CLOSE, close_payload(code, reason))

    def close(self) -> None:
        self.sock.close()

    # -- receiving -----------------------------------------------------------

    def _read_more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("the server closed the connection")
        self.buffer += data

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._read_more()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def recv_frame(self) -> Frame:
        """
        The next frame, checked as a client must check a server's frames
        (unmasked, no RSV bit, a known opcode, control frames whole and
        short). EOFError at the end of the stream; socket.timeout if nothing
        comes in time.
        """
        first, second = self._take(2)
        fin, rsv, opcode = bool(first & 0x80), (first >> 4) & 7, first & 0x0F
        if second & 0x80:
            raise ServerProtocolError("the server masked a frame")
        if rsv:
            raise ServerProtocolError(f"the server set RSV bits {rsv:#o}")
        if opcode not in (CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG):
            raise ServerProtocolError(f"the server used opcode {opcode:#x}")
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._take(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._take(8))
        if opcode >= CLOSE and (length > 125 or not fin):
            raise ServerProtocolError("the server sent a long or fragmented control frame")
        if opcode == CLOSE and length == 1:
            raise ServerProtocolError("the server sent a 1-byte close payload")
        return Frame(fin, rsv, opcode, self._take(length))

    def recv_message(self) -> tuple[int, bytes] | Frame:
        """
        The next data message (opcode, payload), its fragments joined; a
        pong or close frame is returned as it is. The server's pings are
        answered on the way.
        """
        opcode: int | None = None
        parts: list[bytes] = []
        while True:
            received = self.recv_frame()
            if received.opcode == PING:
                self.server_pings += 1
                self.send_frame(PONG, received.payload)
                continue
            if received.opcode in (PONG, CLOSE):
                return received
            if opcode is None:
                if received.opcode == CONTINUATION:
                    raise ServerProtocolError("a continuation frame starts a message")
                opcode = received.opcode
            elif received.opcode != CONTINUATION:
                raise ServerProtocolError("a new message started inside a fragmented one")
            parts.append(received.payload)
            if received.fin:
                data = b"".join(parts)
                if opcode == TEXT:
                    data.decode("utf-8")  # a server's text must be UTF-8
                return opcode, data

    def recv_json(self) -> dict[str, Any]:
        """The next text message, decoded (pongs seen on the way are kept in C{pongs})."""
        while True:
            received = self.recv_message()
            if isinstance(received, Frame):
                if received.opcode == PONG:
                    self.pongs.append(received.payload)
                    continue
                raise AssertionError(f"expected a message, got a close: {received}")
            opcode, data = received
            assert opcode == TEXT, f"the server sent a binary message: {data!r}"
            message = json.loads(data)
            assert isinstance(message, dict), message
            return message

    def expect(self, action: str, **fields: Any) -> dict[str, Any]:
        """Read messages until one with this action (and these fields)."""
        seen = []
        for _ in range(100):
            message = self.recv_json()
            if message["action"] == action and all(
                message.get(k) == v for k, v in fields.items()
            ):
                return message
            seen.append(message)
        raise AssertionError(f"no {action} {fields} in {seen}")

    def request(self, action: str, request_id: str, **fields: Any) -> dict[str, Any]:
        """Send with this id; the reply echoing it."""
        self.send_json(action=action, id=request_id, **fields)
        for _ in range(100):
            message = self.recv_json()
            if message.get("id") == request_id:
                return message
        raise AssertionError(f"no reply to {request_id}")

    def recv_pong(self) -> bytes:
        """The payload of the next pong (messages on the way are dropped)."""
        if self.pongs:
            return self.pongs.pop(0)
        while True:
            received = self.recv_message()
            if isinstance(received, Frame):
                if received.opcode == PONG:
                    return received.payload
                raise AssertionError(f"expected a pong, got a close: {received}")

    def read_until_closed(self, reply: bool = True) -> Closed:
        """
        Read everything up to the server's close frame (answering it with a
        close of the same code, as RFC 6455 section 5.5.1 asks, if C{reply}),
        then to the end of the stream. A stream that ends without a close
        frame gives C{frame=None}.
        """
        messages: list[tuple[int, bytes]] = []
        close = None
        try:
            while True:
                received = self.recv_message()
                if isinstance(received, Frame):
                    if received.opcode == CLOSE:
                        close = received
                        break
                    continue  # a pong
                messages.append(received)
        except (EOFError, ConnectionResetError):
            return Closed(None, messages, eof=True)
        if reply:
            try:
                self.send_close(close.close_code)
            except OSError:
                pass  # the server may already have closed the TCP connection
        trailing: list[Frame] = []
        try:
            while True:
                trailing.append(self.recv_frame())
        except (EOFError, ConnectionResetError):
            pass
        assert not trailing, f"the server sent frames after its close: {trailing}"
        return Closed(close, messages, eof=True)
