"""A plain-socket gameframe client that a game loop (pygame) or a script calls without a reactor."""

from __future__ import annotations

import itertools
import select
import socket
import time
from collections import deque
from typing import Any, Callable, Iterator, Mapping, Union

import orjson

from gameframe.mirror import StateMirror

__all__ = ["ClientError", "Disconnected", "GameClient"]

Message = dict[str, Any]
Match = Union[str, Callable[[Message], Any]]

#: The largest line this client accepts from a server (a full state can be big).
DEFAULT_MAX_LINE = 16 * 1024 * 1024
#: How many messages wait for poll() before the oldest are dropped.
DEFAULT_MAX_UNREAD = 10_000
#: Seconds of sending nothing after which poll() sends a ping, so the server's
#: idle timeout (120 s by default) never closes a client that is only listening.
DEFAULT_KEEPALIVE = 30.0
_READ_SIZE = 64 * 1024
# One poll() reads at most this much, so a flood cannot stall a frame.
_READ_PER_POLL = 1024 * 1024


class ClientError(Exception):
    """
    The server refused a request: its C{error} reply, as an exception.

    @ivar code: the stable error code (C{room_not_found}, C{not_in_room}...,
        see L{gameframe.codec}); clients branch on it, never on the text.
    @ivar message: the server's human-readable explanation.
    @ivar reply: the whole C{error} message, or L{None} for a local error.
    """

    def __init__(self, code: str, message: str, reply: Message | None = None) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.reply = reply

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    @classmethod
    def from_reply(cls, reply: Message) -> ClientError:
        """The exception for an C{error} message."""
        return cls(str(reply.get("code")), str(reply.get("message", "")), reply)


class Disconnected(ClientError):
    """
    The connection closed before the answer came.

    C{code} is the server's C{disconnect} code when it said why
    (C{server_shutdown}, C{replaced}, C{frame_too_large}...), else
    C{connection_lost} (or C{closed} when this side closed it).
    """


CONNECTION_LOST = "connection_lost"
CLOSED = "closed"


class _LineBuffer:
    """JSON Lines framing for a client: bytes in, complete decoded messages out."""

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        # The start of a line not complete yet. It never holds a b"\n": only
        # newly received bytes are searched, so a line that arrives in many
        # pieces is scanned and copied a bounded number of times, not once
        # per piece.
        self._partial = bytearray()
        self._max_line = max_line

    def feed(self, data: bytes) -> list[Message]:
        """
        Add received bytes; the messages of every line now complete.

        Lines that are not a JSON object with a string C{action} are
        skipped (a server never sends them).

        @raise Disconnected: a line grew past the limit.
        """
        partial = self._partial
        lines: list[bytes] | list[bytearray]
        if partial:
            scanned = len(partial)
            partial += data
            end = partial.rfind(b"\n", scanned)
            if end >= 0:
                lines = partial[:end].split(b"\n")
                del partial[: end + 1]
            else:
                lines = []
        else:
            end = data.rfind(b"\n")
            if end >= 0:
                lines = data[:end].split(b"\n")
                partial += data[end + 1 :]
            else:
                lines = []
                partial += data
        if len(partial) > self._max_line:
            partial.clear()
            raise Disconnected(
                "frame_too_large", f"the server sent a line over {self._max_line} bytes"
            )
        messages = []
        for line in lines:
            if not line.strip():
                continue
            try:
                message = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if type(message) is dict and type(message.get("action")) is str:
                messages.append(message)
        return messages


def _encode(action: str, fields: dict[str, Any]) -> bytes:
    """One outgoing message, framed."""
    return orjson.dumps({"action": action, **fields}) + b"\n"


class _Unmirrored(StateMirror):
    """A state mirror that takes state and patch messages without applying them."""

    def handle(self, message: Mapping[str, Any]) -> bool:
        return message.get("action") in ("state", "patch")


class _Session:
    """
    What a client knows of its session, kept from the messages it receives:
    its player id, room, token and state mirror. Shared by both clients.

    With C{mirror} false the state and patch messages are not applied
    (the mirror's C{state} stays L{None}, and no C{sync} is ever asked).
    """

    def __init__(self, mirror: bool = True) -> None:
        self.state = StateMirror() if mirror else _Unmirrored()
        self.player_id: str | None = None
        self.room_id: str | None = None
        self.room: str | None = None
        self.token: str | None = None
        self.close_code: str | None = None
        self.close_message: str | None = None
        self._sync_asked = False

    def handle(self, message: Message) -> bool:
        """
        Learn from one message; True when the client should send C{sync}
        now (its mirror saw a gap in the patches and none was asked yet).
        """
        action = message["action"]
        if self.state.handle(message):
            if action == "state":
                self._sync_asked = False
            elif self.state.stale and not self._sync_asked and self.room_id:
                self._sync_asked = True
                return True
            return False
        if action == "welcome":
            self.player_id = message.get("player_id")
        elif action == "joined":
            self.player_id = message.get("player_id")
            self.room_id = message.get("room_id")
            self.room = message.get("room")
            self.token = message.get("token")
        elif action == "left":
            if message.get("room_id") in (None, self.room_id):
                self.left()
        elif action == "disconnect":
            self.close_code = message.get("code")
            self.close_message = message.get("message")
        return False

    def left(self) -> None:
        """Not in a room any more: forget it, its token and its state."""
        self.room_id = self.room = self.token = None
        self.state.state = None
        self.state.seq = None
        self.state.stale = False
        self._sync_asked = False

    def closed(self, code: str, message: str, *, replace: bool = False) -> None:
        """Note why the connection closed: a reason noted earlier stays, unless C{replace}."""
        if replace or self.close_code is None:
            self.close_code, self.close_message = code, message

    def disconnected(self, default: str = CONNECTION_LOST) -> Disconnected:
        """The exception for a request the closed connection will never answer."""
        if self.close_code is not None:
            return Disconnected(self.close_code, self.close_message or "disconnected")
        return Disconnected(default, "the connection closed")


class _SessionView:
    """What the session knows, read-only: the same properties on both clients."""

    _session: _Session

    @property
    def state(self) -> StateMirror:
        """The L{StateMirror} of the room's state; C{state.state} is the tree."""
        return self._session.state

    @property
    def player_id(self) -> str | None:
        """This player's id (from C{welcome}, then C{joined}), or L{None}."""
        return self._session.player_id

    @property
    def room_id(self) -> str | None:
        """The id of the room this client is in, or L{None}."""
        return self._session.room_id

    @property
    def room(self) -> str | None:
        """The room type of the current room (C{"arena"}...), or L{None}."""
        return self._session.room

    @property
    def token(self) -> str | None:
        """The reconnection token of the current seat, or L{None}."""
        return self._session.token

    @property
    def close_code(self) -> str | None:
        """
        Why the connection closed, once it has: the server's C{disconnect}
        code, or C{connection_lost}/C{closed}.
        """
        return self._session.close_code


def _matcher(match: Match) -> Callable[[Message], Any]:
    if isinstance(match, str):
        return lambda message: message["action"] == match
    return match


class GameClient(_SessionView):
    """
    A gameframe client over a plain TCP socket, for game loops and scripts.

    Nothing here blocks except the calls that say so (L{connect},
    L{wait_for}, the lobby calls and L{reconnect}), each bounded by a
    timeout. A game loop calls L{poll} once a frame::

        client = GameClient.connect("127.0.0.1", 7000)
        client.join_or_create("arena")
        while running:
            for message in client.poll():
                ...
            draw(client.state.state)
            client.send("move", x=10, y=20)

    Every message received is returned once by L{poll} (or, instead, by
    the L{wait_for} that it matched), including those received while a
    blocking call waited. If a program never polls, the oldest are dropped
    after C{max_unread}.

    @ivar state: the L{StateMirror} of the room's state for this player,
        kept by L{poll}; C{state.state} is the tree (L{None} outside a room).
        When the mirror sees a gap it asks the server for a C{sync} itself.
    @ivar player_id: this player's id (from C{welcome}, then C{joined}).
    @ivar room_id: the room this client is in, or L{None}.
    @ivar token: the reconnection token of the current seat, or L{None}.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 7000,
        max_line: int = DEFAULT_MAX_LINE,
        max_unread: int = DEFAULT_MAX_UNREAD,
        keepalive: float = DEFAULT_KEEPALIVE,
    ) -> None:
        """
        Make an unconnected client; L{connect} makes and connects one.

        @param keepalive: seconds without sending after which L{poll} sends
            a C{ping} (0: never).
        """
        self.host = host
        self.port = port
        self._keepalive = keepalive
        self._last_sent = time.monotonic()
        self._max_line = max_line
        self._session = _Session()
        self._ids: Iterator[int] = itertools.count(1)
        self._waiting: set[int] = set()
        self._replies: dict[int, Message] = {}
        self._unread: deque[Message] = deque(maxlen=max_unread)
        self._socket: socket.socket | None = None
        self._lines = _LineBuffer(max_line)
        self._outbox = bytearray()
        self._evicted = 0  # messages dropped from a full _unread, ever
        self._welcomed = False

    # -- connecting ------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        host: str = "127.0.0.1",
        port: int = 7000,
        timeout: float = 5,
        keepalive: float = DEFAULT_KEEPALIVE,
    ) -> GameClient:
        """
        Connect to a gameframe server and wait for its C{welcome}
        (blocks at most C{timeout} seconds).

        @raise OSError: the connection failed (refused, unreachable...).
        @raise TimeoutError: no C{welcome} in time.
        @raise Disconnected: the server closed the connection at once
            (C{server_shutdown}...).
        """
        client = cls(host, port, keepalive=keepalive)
        client._open(timeout)
        return client

    def _open(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self._socket = sock
        self._lines = _LineBuffer(self._max_line)
        self._outbox.clear()
        self._welcomed = False
        self._waiting.clear()  # the old connection's requests get no reply now
        session = self._session
        session.close_code = session.close_message = None
        try:
            expired = False
            while not self._welcomed:
                if expired:
                    raise TimeoutError("no welcome from the server in time")
                expired = self._wait_readable(deadline)
        except BaseException:
            self.close()
            raise

    def reconnect(self, timeout: float = 5) -> Message:
        """
        Open a new connection and take this player's seat back with its
        token (after the old connection dropped or was closed); blocks at
        most C{timeout} seconds. The player keeps its id and its seat; the
        mirror gets the full state again.

        @return: the C{joined} reply.
        @raise ClientError: C{invalid_token} (the seat was not held, or there
            was no token), or L{Disconnected}.
        """
        token = self._session.token
        if token is None:
            raise ClientError("invalid_token", "no reconnection token: join a room first")
        deadline = time.monotonic() + timeout
        self.close()
        self._open(timeout)
        # Until the token speaks, the new connection is a fresh player.
        try:
            return self._call(
                "reconnect", max(0.0, deadline - time.monotonic()), token=token
            )
        except Disconnected:
            raise
        except ClientError:
            self._session.left()
            raise

    def close(self) -> None:
        """
        Close the connection (at once; unsent bytes are dropped). The seat
        stays held for a L{reconnect} if the room does that; L{leave} first
        to give it up.
        """
        sock, self._socket = self._socket, None
        self._outbox.clear()
        if sock is not None:
            sock.close()
        self._session.closed(CLOSED, "closed by this client")

    @property
    def connected(self) -> bool:
        """Whether the connection is open (as far as this client knows yet)."""
        return self._socket is not None

    @property
    def socket(self) -> socket.socket | None:
        """The non-blocking socket (for a program's own select loop), if open."""
        return self._socket

    # -- sending -------------------------------------------------------------

    def send(self, action: str, **fields: Any) -> None:
        """
        Send one message C{{"action": action, **fields}}. Never blocks: what
        the socket does not take now is sent by the next L{poll}.

        @raise Disconnected: the connection is closed.
        """
        if self._socket is None:
            raise self._session.disconnected(CLOSED)
        self._outbox += _encode(action, fields)
        self._last_sent = time.monotonic()
        self._flush()

    def request(self, action: str, **fields: Any) -> int:
        """
        Send a message with a fresh C{id}; the id, to collect the reply
        (which echoes it) with L{reply} once L{poll} has received it.
        """
        request_id = next(self._ids)
        self.send(action, id=request_id, **fields)
        self._waiting.add(request_id)
        return request_id

    def reply(self, request_id: int) -> Message | None:
        """
        The reply to a L{request} (C{result}, C{joined}, C{rooms}, C{error}...),
        once it has arrived, else L{None}. Reads nothing itself: L{poll}
        does. A reply is returned once, then forgotten; it is in L{poll}'s
        messages too.
        """
        return self._replies.pop(request_id, None)

    def _flush(self) -> None:
        sock = self._socket
        while self._outbox and sock is not None:
            try:
                sent = sock.send(self._outbox)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._lost()
                return
            del self._outbox[:sent]

    # -- receiving -------------------------------------------------------------

    def poll(self) -> list[Message]:
        """
        Send what is pending, read what has arrived, and return the new
        messages, oldest first (C{[]} when nothing came). Never blocks.

        The mirror, the ids and the replies are up to date when it returns.
        When the connection has closed, L{connected} turns False and the
        messages received before are still returned.
        """
        if (
            self._keepalive
            and self._socket is not None
            and time.monotonic() - self._last_sent > self._keepalive
        ):
            self.send("ping")
        self._flush()
        self._read()
        messages = list(self._unread)
        self._unread.clear()
        return messages

    def _read(self) -> int:
        """Read what the socket holds now into the unread messages; how many came."""
        count = 0
        budget = _READ_PER_POLL
        while self._socket is not None and budget > 0:
            try:
                data = self._socket.recv(_READ_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._lost()
                break
            if not data:
                self._lost()
                break
            budget -= len(data)
            try:
                messages = self._lines.feed(data)
            except Disconnected as error:
                self._session.closed(error.code, error.message, replace=True)
                self._lost()
                break
            for message in messages:
                self._receive(message)
                count += 1
        return count

    def _receive(self, message: Message) -> None:
        if len(self._unread) == self._unread.maxlen:
            self._evicted += 1
        self._unread.append(message)
        if message["action"] == "welcome":
            self._welcomed = True
        request_id = message.get("id")
        if type(request_id) is int and request_id in self._waiting:
            self._waiting.discard(request_id)
            self._replies[request_id] = message
        if self._session.handle(message) and self._socket is not None:
            self.send("sync")

    def _lost(self) -> None:
        """The peer closed the connection (or it broke)."""
        sock, self._socket = self._socket, None
        self._outbox.clear()
        if sock is not None:
            sock.close()
        self._session.closed(CONNECTION_LOST, "the connection closed")

    # -- blocking calls for scripts --------------------------------------------

    def wait_for(self, match: Match, timeout: float = 5) -> Message:
        """
        Block until a message matches and return it (it is not returned by
        L{poll} then). C{match} is an action name or a predicate called
        with each message (after the mirror has applied it). Messages
        received but not yet polled count, oldest first.

        @raise TimeoutError: nothing matched within C{timeout} seconds.
        @raise Disconnected: the connection closed first.
        """
        matches = _matcher(match)
        unread = self._unread
        checked, evicted = 0, self._evicted
        expired = False
        deadline = time.monotonic() + timeout
        while True:
            # Messages dropped from the front shift the ones already checked.
            checked = max(0, checked - (self._evicted - evicted))
            evicted = self._evicted
            for index in range(checked, len(unread)):
                message = unread[index]
                if matches(message):
                    del unread[index]
                    return message
            checked = len(unread)
            if expired:
                raise TimeoutError("no matching message from the server in time")
            expired = self._wait_readable(deadline)

    def _wait_readable(self, deadline: float) -> bool:
        """
        Wait (at most until C{deadline}) for input, then send what is
        pending and read what came; whether the deadline has passed.

        @raise Disconnected: the connection is closed.
        """
        sock = self._socket
        if sock is None:
            raise self._session.disconnected()
        remaining = max(0.0, deadline - time.monotonic())
        select.select([sock], [sock] if self._outbox else [], [], remaining)
        self._flush()
        self._read()
        return time.monotonic() >= deadline

    def _call(self, action: str, timeout: float, **fields: Any) -> Message:
        """Send a request and block for its reply; an C{error} reply raises."""
        request_id = self.request(action, **fields)
        deadline = time.monotonic() + timeout
        expired = False
        while True:
            reply = self._replies.pop(request_id, None)
            if reply is not None:
                if reply["action"] == "error":
                    raise ClientError.from_reply(reply)
                return reply
            if expired:
                self._waiting.discard(request_id)
                raise TimeoutError(f"no reply to {action!r} in time")
            expired = self._wait_readable(deadline)

    def call(self, action: str, timeout: float = 5, **fields: Any) -> Any:
        """
        Run a room action as a request and block for its C{result}.

        @return: the handler's return value.
        @raise ClientError: the server replied with an C{error}.
        @raise TimeoutError: no reply within C{timeout} seconds.
        """
        return self._call(action, timeout, **fields).get("result")

    def join_or_create(self, room: str, timeout: float = 5, **options: Any) -> Message:
        """
        Join a room of type C{room} whose options match, or create one;
        blocks for the C{joined} reply (returned).

        @raise ClientError: the server refused (C{unknown_room_type}...).
        """
        return self._call("join_or_create", timeout, room=room, options=options)

    def create(self, room: str, timeout: float = 5, **options: Any) -> Message:
        """Create a room of type C{room} and join it; the C{joined} reply."""
        return self._call("create", timeout, room=room, options=options)

    def join(self, room_id: str, timeout: float = 5, **options: Any) -> Message:
        """Join the room with this id; the C{joined} reply (or C{room_not_found}...)."""
        return self._call("join", timeout, room_id=room_id, options=options)

    def leave(self, timeout: float = 5) -> Message:
        """Leave the current room; the C{left} reply (C{not_in_room} if none)."""
        return self._call("leave", timeout)

    def ping(self, timeout: float = 5) -> float:
        """The round trip to the server and back, in seconds (blocks for the C{pong})."""
        sent = time.monotonic()
        self._call("ping", timeout, t=sent)
        return time.monotonic() - sent

    def authenticate(self, token: str, timeout: float = 5) -> Message:
        """
        Prove who this player is to a server started with C{--auth}; the
        C{authenticated} reply. @raise ClientError: C{unauthorized}.
        """
        return self._call("authenticate", timeout, token=token)

    def list_rooms(self, room: str | None = None, timeout: float = 5) -> list[Message]:
        """The rooms open to join (of type C{room}, or all)."""
        fields = {} if room is None else {"room": room}
        rooms: list[Message] = self._call("list", timeout, **fields)["rooms"]
        return rooms

    def __enter__(self) -> GameClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
