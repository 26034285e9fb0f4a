"""Reading what a WebSocket client sends: whole text frames parsed here, everything else handed to wsproto."""

from __future__ import annotations

from typing import Callable

# Above this size unmasking by byte tables beats one big integer XOR
# (measured on CPython 3.11: equal near 2 KiB, twice as fast at 60 KiB).
_TABLE_UNMASK_FROM = 2048
_XOR_TABLES = tuple(bytes(b ^ key for b in range(256)) for key in range(256))


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR C{payload} with the 4-byte C{mask} repeated (RFC 6455 5.3): both ways."""
    size = len(payload)
    if size < _TABLE_UNMASK_FROM:
        key = (mask * ((size >> 2) + 1))[:size]
        return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
            size, "little"
        )
    out = bytearray(payload)
    for k in range(4):
        out[k::4] = payload[k::4].translate(_XOR_TABLES[mask[k]])
    return bytes(out)


class FrameReader:
    """
    Splits the bytes a client sends into RFC 6455 frames, in one pass.

    The frames a game client sends nearly all are whole, final, masked text
    frames of a few dozen bytes: each one found whole in a read, while no
    other message is in progress, is unmasked and decoded here and handed
    to C{text}. Every other byte (control frames, fragmented messages, a
    frame split across reads, invalid UTF-8, anything malformed) goes, in
    order and unchanged, to C{raw}: Twisted's WebSocket parser (wsproto),
    which then sees a stream of whole frames and answers exactly as it
    would have answered the whole stream (pongs, close handshake, error
    codes, UTF-8 failing fast inside a message).

    For what goes to C{raw} the headers are read here as they pass, to know
    where the stream is between messages again and how large the data
    message being received declares itself (fragments add up; control
    frames do not count), so that a message over C{limit} is refused before
    anything buffers it.

    @param limit: the largest data message accepted, in bytes.
    @param text: called with each text message parsed here; returns whether
        to go on reading (False: the connection is closing).
    @param raw: called with the bytes for wsproto; returns the same.
    @ivar ended: how many times the bytes given to C{raw} reached a point
        between messages (a complete message, or a control frame outside
        one): with L{partial}, tells when an unfinished message began.
    """

    def __init__(
        self,
        limit: int,
        text: Callable[[str], bool],
        raw: Callable[[bytes], bool],
    ) -> None:
        self._limit = limit
        self._text = text
        self._raw = raw
        self._header = bytearray()  # the part read of a frame header bound for raw
        self._payload_left = 0  # bytes left of the frame bound for raw
        self._message = 0  # bytes declared so far by the unfinished data message
        self._open = False  # a data message has begun (in raw) and not finished
        self.ended = 0

    @property
    def partial(self) -> bool:
        """Whether a message (or a control frame) is partly received."""
        return bool(self._header) or self._payload_left > 0 or self._open

    def feed(self, data: bytes) -> bool:
        """
        Take the bytes of one read, in order. False: a data message declared
        more than the limit (nothing from its header on was passed on).
        """
        i, end = 0, len(data)
        limit = self._limit
        while i < end:
            if not (self._header or self._payload_left or self._open) and data[i] == 0x81:
                # Between messages, a final text frame: whole in this read?
                second = data[i + 1] if i + 1 < end else 0
                if second & 0x80:  # masked, as a client's must be
                    size = second & 0x7F
                    start = i + 6
                    if size == 126:
                        start = i + 8
                        size = int.from_bytes(data[i + 2 : i + 4], "big")
                        minimal = size >= 126
                    elif size == 127:
                        start = i + 14
                        size = int.from_bytes(data[i + 2 : i + 10], "big")
                        minimal = size >= 65536
                    else:
                        minimal = True
                    stop = start + size
                    if stop <= end and minimal and size <= limit:
                        payload = data[start:stop]
                        if size:
                            payload = unmask(payload, data[start - 4 : start])
                        try:
                            message = payload.decode()
                        except UnicodeDecodeError:
                            pass  # wsproto fails the connection with 1007
                        else:
                            i = stop
                            if not self._text(message):
                                return True
                            continue
            j = self._follow(data, i, end)
            if j < 0:
                return False
            if not self._raw(data[i:j] if i or j < end else data):
                return True
            i = j
        return True

    def _follow(self, data: bytes, i: int, end: int) -> int:
        """
        Read the headers in C{data} from C{i} on, skipping payloads, up to
        the next point between messages (or C{end}); where that is, or -1 if
        a data message declared more than the limit.
        """
        while i < end:
            left = self._payload_left
            if left:
                taken = min(left, end - i)
                self._payload_left = left - taken
                i += taken
                if taken == left and not self._open:
                    self.ended += 1
                    return i
                continue
            header = self._header
            taken = min(_header_size(header) - len(header), end - i)
            header += data[i : i + taken]
            i += taken
            if len(header) == _header_size(header):
                if not self._frame_header():
                    return -1
                if not self._payload_left and not self._open:
                    self.ended += 1
                    return i
        return i

    def _frame_header(self) -> bool:
        """A whole header was read: False if its message is over the limit."""
        header = self._header
        fin, opcode, length = header[0] & 0x80, header[0] & 0x0F, header[1] & 0x7F
        if length == 126:
            length = int.from_bytes(header[2:4], "big")
        elif length == 127:
            length = int.from_bytes(header[2:10], "big")
        self._header = bytearray()
        self._payload_left = length
        if opcode < 8:  # text, binary or continuation: part of a data message
            self._message += length
            if self._message > self._limit:
                return False
            if fin:
                self._message = 0
            self._open = not fin
        return True


def _header_size(header: bytearray) -> int:
    """The size of the frame header beginning with C{header} (2 until its second byte is known)."""
    if len(header) < 2:
        return 2
    size = 6 if header[1] & 0x80 else 2  # a masking key
    length = header[1] & 0x7F
    return size + (2 if length == 126 else 8 if length == 127 else 0)
