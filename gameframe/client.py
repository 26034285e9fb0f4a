"""A plain-socket gameframe client that a game loop (pygame) or a script calls without a reactor."""

from __future__ import annotations

import enum
import errno
import itertools
import select
import socket
import time
from collections import deque
from typing import Any, Callable, Iterator, Mapping, Union

import attrs
import orjson

from gameframe._reconnect import CONNECTION_LOST, AutoReconnect, Backoff
from gameframe.mirror import StateMirror
from gameframe.vocabulary import ENCODING_JSON, ENCODINGS

__all__ = [
    "AutoReconnect",
    "Backoff",
    "ClientError",
    "Disconnected",
    "GameClient",
    "Reconnecting",
]

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


class Reconnecting(Disconnected):
    """
    A message was sent while the client is taking its seat back by itself
    (after the server said it is restarting): nothing can be sent until it
    is back (C{client.reconnecting} is then False again). Its C{code} is
    C{reconnecting}.
    """


CLOSED = "closed"
RECONNECTING = "reconnecting"
#: The code a client reports when it stopped trying to reconnect in time.
GAVE_UP = "gave_up"


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
    C{encoding} is the state patches' encoding the joining requests ask
    for (C{"json"} or C{"compact"}); the mirror takes both.
    """

    def __init__(self, mirror: bool = True, encoding: str = "json") -> None:
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {sorted(ENCODINGS)}, not {encoding!r}")
        self.encoding = encoding
        self.state = StateMirror() if mirror else _Unmirrored()
        self.player_id: str | None = None
        self.room_id: str | None = None
        self.room: str | None = None
        self.token: str | None = None
        self.close_code: str | None = None
        self.close_message: str | None = None
        #: The server's last C{disconnect} said C{"retry": true}.
        self.close_retry = False
        self._sync_asked = False

    def joining(self, **fields: Any) -> dict[str, Any]:
        """The fields of a joining request (join, create, reconnect...), with the encoding."""
        if self.encoding != ENCODING_JSON:
            fields["encoding"] = self.encoding
        return fields

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
            self.close_retry = message.get("retry") is True
        return False

    def left(self) -> None:
        """Not in a room any more: forget it, its token and its state."""
        self.room_id = self.room = self.token = None
        self.state.state = None
        self.state.seq = None
        self.state.stale = False
        self._sync_asked = False

    def opened(self) -> None:
        """A new connection: no reason to close noted on it yet."""
        self.close_code = self.close_message = None
        self.close_retry = False

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


class _Phase(enum.Enum):
    """Where a reconnection by the client itself stands."""

    WAITING = "waiting"  # for the next attempt's time
    CONNECTING = "connecting"  # a non-blocking connect is under way
    GREETING = "greeting"  # connected; waiting for the server's welcome
    CLAIMING = "claiming"  # reconnect sent; waiting for its reply


@attrs.define
class _Redial:
    """A reconnection under way: until C{deadline}, on the clock of the client."""

    deadline: float
    attempt: int = 0
    phase: _Phase = _Phase.WAITING
    next_at: float = 0.0
    dialing: socket.socket | None = None
    claim_id: int | None = None


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

    When the server stops with C{disconnect} C{"retry": true} (a restart
    that keeps the seats), the client takes its seat back by itself (see
    L{AutoReconnect}): L{poll} and the blocking calls drive the attempts,
    L{reconnecting} is True meanwhile, and L{on_reconnecting},
    L{on_reconnected} and L{on_reconnect_failed} tell the program.

    @ivar state: the L{StateMirror} of the room's state for this player,
        kept by L{poll}; C{state.state} is the tree (L{None} outside a room).
        When the mirror sees a gap it asks the server for a C{sync} itself.
    @ivar player_id: this player's id (from C{welcome}, then C{joined}).
    @ivar room_id: the room this client is in, or L{None}.
    @ivar token: the reconnection token of the current seat, or L{None}.
    @ivar on_reconnecting: called with C{(attempt, delay)} (from 1; in
        seconds) each time an attempt to reconnect is scheduled, or L{None}.
    @ivar on_reconnected: called with the C{joined} reply once the seat is
        back (the full C{state} follows it), or L{None}.
    @ivar on_reconnect_failed: called with a L{ClientError} when the client
        stops trying: C{invalid_token} (the seat is gone) or C{gave_up}
        (no server in time); the connection is then closed for good, with
        the server's C{close_code}. Or L{None}.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 7000,
        max_line: int = DEFAULT_MAX_LINE,
        max_unread: int = DEFAULT_MAX_UNREAD,
        keepalive: float = DEFAULT_KEEPALIVE,
        *,
        auto_reconnect: AutoReconnect | None = AutoReconnect(),
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        encoding: str = "json",
    ) -> None:
        """
        Make an unconnected client; L{connect} makes and connects one.

        @param keepalive: seconds without sending after which L{poll} sends
            a C{ping} (0: never).
        @param auto_reconnect: when and how fast to take the seat back by
            itself; L{None}: never (the program calls L{reconnect}).
        @param clock: the time, in seconds (for every timeout and delay).
        @param sleep: waits a number of seconds; the blocking calls use it
            between reconnection attempts.
        @param encoding: the state patches to ask for when joining:
            C{"json"} (RFC 6902 JSON Patches, the default) or C{"compact"}
            (fewer bytes; see docs/protocol.md). The mirror is the same.
        """
        self.host = host
        self.port = port
        self._keepalive = keepalive
        self._clock = clock
        self._sleep = sleep
        self._auto_reconnect = auto_reconnect
        self._last_sent = clock()
        self._max_line = max_line
        self._session = _Session(encoding=encoding)
        self._ids: Iterator[int] = itertools.count(1)
        self._waiting: set[int] = set()
        self._replies: dict[int, Message] = {}
        self._unread: deque[Message] = deque(maxlen=max_unread)
        self._socket: socket.socket | None = None
        self._address: Any = None  # the server's address, to come back to
        self._family = socket.AF_INET
        self._lines = _LineBuffer(max_line)
        self._outbox = bytearray()
        self._evicted = 0  # messages dropped from a full _unread, ever
        self._welcomed = False
        self._redial: _Redial | None = None
        self.on_reconnecting: Callable[[int, float], object] | None = None
        self.on_reconnected: Callable[[Message], object] | None = None
        self.on_reconnect_failed: Callable[[ClientError], object] | None = None

    # -- connecting ------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        host: str = "127.0.0.1",
        port: int = 7000,
        timeout: float = 5,
        keepalive: float = DEFAULT_KEEPALIVE,
        *,
        auto_reconnect: AutoReconnect | None = AutoReconnect(),
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        encoding: str = "json",
    ) -> GameClient:
        """
        Connect to a gameframe server and wait for its C{welcome}
        (blocks at most C{timeout} seconds). The other arguments are
        L{GameClient}'s.

        @raise OSError: the connection failed (refused, unreachable...).
        @raise TimeoutError: no C{welcome} in time.
        @raise Disconnected: the server closed the connection at once
            (C{server_shutdown}...).
        """
        client = cls(
            host,
            port,
            keepalive=keepalive,
            auto_reconnect=auto_reconnect,
            clock=clock,
            sleep=sleep,
            encoding=encoding,
        )
        client._open(timeout)
        return client

    def _open(self, timeout: float) -> None:
        deadline = self._clock() + timeout
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        self._address, self._family = sock.getpeername(), sock.family
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self._attach(sock)
        self._waiting.clear()  # the old connection's requests get no reply now
        try:
            expired = False
            while not self._welcomed:
                if expired:
                    raise TimeoutError("no welcome from the server in time")
                expired = self._wait_readable(deadline)
        except BaseException:
            self.close()
            raise

    def _attach(self, sock: socket.socket) -> None:
        """Speak over this new connected socket from now on."""
        self._socket = sock
        self._lines = _LineBuffer(self._max_line)
        self._outbox.clear()
        self._welcomed = False
        self._session.opened()

    def reconnect(self, timeout: float = 5) -> Message:
        """
        Open a new connection and take this player's seat back with its
        token (after the old connection dropped or was closed); blocks at
        most C{timeout} seconds. The player keeps its id and its seat; the
        mirror gets the full state again. A reconnection the client was
        making by itself stops first.

        @return: the C{joined} reply.
        @raise ClientError: C{invalid_token} (the seat was not held, or there
            was no token), or L{Disconnected}.
        """
        token = self._session.token
        if token is None:
            raise ClientError("invalid_token", "no reconnection token: join a room first")
        deadline = self._clock() + timeout
        self.close()
        self._open(timeout)
        # Until the token speaks, the new connection is a fresh player.
        try:
            return self._call(
                "reconnect", max(0.0, deadline - self._clock()), **self._session.joining(token=token)
            )
        except Disconnected:
            raise
        except ClientError:
            self._session.left()
            raise

    def close(self) -> None:
        """
        Close the connection (at once; unsent bytes are dropped), and stop
        reconnecting if the client was. The seat stays held for a
        L{reconnect} if the room does that; L{leave} first to give it up.
        """
        self._stop_redial()
        sock, self._socket = self._socket, None
        self._outbox.clear()
        if sock is not None:
            sock.close()
        self._session.closed(CLOSED, "closed by this client")

    @property
    def connected(self) -> bool:
        """
        Whether the connection is open and usable (as far as this client
        knows yet): False while L{reconnecting}.
        """
        return self._socket is not None and self._redial is None

    @property
    def reconnecting(self) -> bool:
        """Whether the client is taking its seat back by itself right now."""
        return self._redial is not None

    @property
    def socket(self) -> socket.socket | None:
        """The non-blocking socket (for a program's own select loop), if open."""
        return self._socket

    # -- sending -------------------------------------------------------------

    def send(self, action: str, **fields: Any) -> None:
        """
        Send one message C{{"action": action, **fields}}. Never blocks: what
        the socket does not take now is sent by the next L{poll}.

        @raise Reconnecting: the client is reconnecting by itself (nothing
            is queued: a game loop skips its sends while L{reconnecting}).
        @raise Disconnected: the connection is closed.
        """
        if self._redial is not None:
            raise Reconnecting(RECONNECTING, "the client is reconnecting: send again once back")
        if self._socket is None:
            raise self._session.disconnected(CLOSED)
        self._outbox += _encode(action, fields)
        self._last_sent = self._clock()
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
        While L{reconnecting}, it also makes the next step of that.

        The mirror, the ids and the replies are up to date when it returns.
        When the connection has closed, L{connected} turns False and the
        messages received before are still returned.
        """
        if self._redial is not None:
            self._step_redial()
        elif (
            self._keepalive
            and self._socket is not None
            and self._clock() - self._last_sent > self._keepalive
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
            sock = self._socket
            try:
                data = sock.recv(_READ_SIZE)
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
                if self._socket is not sock:
                    break  # the rest came on a connection given up meanwhile
                self._receive(message)
                count += 1
        return count

    def _receive(self, message: Message) -> None:
        if self._redial is not None:
            self._receive_while_redialing(message)
            return
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
        if self._redial is not None:
            self._attempt_failed()
            return
        session = self._session
        session.closed(CONNECTION_LOST, "the connection closed")
        policy = self._auto_reconnect
        if policy is not None and policy.applies(
            session.close_code, session.close_retry, session.token
        ):
            self._start_redial(policy)

    # -- reconnecting by itself ------------------------------------------------

    def _start_redial(self, policy: AutoReconnect) -> None:
        self._waiting.clear()  # requests sent on the lost connection get no reply
        self._redial = _Redial(deadline=self._clock() + policy.give_up_after)
        self._schedule_attempt()

    def _schedule_attempt(self) -> None:
        redial, policy = self._redial, self._auto_reconnect
        assert redial is not None and policy is not None
        redial.attempt += 1
        delay = policy.backoff.delay(redial.attempt, policy.rand)
        redial.phase, redial.next_at = _Phase.WAITING, self._clock() + delay
        if self.on_reconnecting is not None:
            self.on_reconnecting(redial.attempt, delay)

    def _attempt_failed(self) -> None:
        """This attempt's connection was refused or closed: try again later."""
        redial = self._redial
        assert redial is not None
        if redial.dialing is not None:
            redial.dialing.close()
            redial.dialing = None
        self._schedule_attempt()

    def _step_redial(self) -> None:
        """Move the reconnection on as far as it can go without blocking."""
        redial = self._redial
        assert redial is not None
        if self._clock() >= redial.deadline:
            self._give_up(ClientError(GAVE_UP, "the server did not take the seat back in time"))
            return
        if redial.phase is _Phase.WAITING and self._clock() >= redial.next_at:
            self._dial(redial)
        if redial.phase is _Phase.CONNECTING:
            assert redial.dialing is not None
            _, writable, _ = select.select([], [redial.dialing], [], 0)
            if writable:
                self._dialed(redial)

    def _dial(self, redial: _Redial) -> None:
        """Start a non-blocking connection to the server's address."""
        sock = socket.socket(self._family, socket.SOCK_STREAM)
        sock.setblocking(False)
        result = sock.connect_ex(self._address)
        redial.dialing = sock
        if result in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
            redial.phase = _Phase.CONNECTING
        else:
            self._attempt_failed()  # refused at once: the server is not back yet

    def _dialed(self, redial: _Redial) -> None:
        """The connection attempt finished: connected, or refused."""
        sock, redial.dialing = redial.dialing, None
        assert sock is not None
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            sock.close()
            self._schedule_attempt()
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        redial.phase = _Phase.GREETING
        self._socket = sock
        self._lines = _LineBuffer(self._max_line)
        self._outbox.clear()

    def _receive_while_redialing(self, message: Message) -> None:
        """
        A message on a connection made to take the seat back: the welcome
        (answered with C{reconnect}) and that request's reply matter; what
        comes before them (a server still stopping says C{disconnect}) is
        not the program's business.
        """
        redial = self._redial
        assert redial is not None
        action = message["action"]
        if redial.phase is _Phase.GREETING and action == "welcome":
            redial.phase, redial.claim_id = _Phase.CLAIMING, next(self._ids)
            self._outbox += _encode(
                "reconnect", self._session.joining(id=redial.claim_id, token=self._session.token)
            )
            self._flush()
        elif redial.phase is _Phase.CLAIMING and message.get("id") == redial.claim_id:
            if action == "error":
                self._session.left()
                self._give_up(ClientError.from_reply(message))
            else:
                self._redial = None
                self._session.opened()
                self._welcomed = True
                self._last_sent = self._clock()
                self._receive(message)
                if self.on_reconnected is not None:
                    self.on_reconnected(message)

    def _give_up(self, error: ClientError) -> None:
        """Stop reconnecting: closed for good, with the server's reason."""
        self._stop_redial()
        sock, self._socket = self._socket, None
        self._outbox.clear()
        if sock is not None:
            sock.close()
        if self.on_reconnect_failed is not None:
            self.on_reconnect_failed(error)

    def _stop_redial(self) -> None:
        redial, self._redial = self._redial, None
        if redial is not None and redial.dialing is not None:
            redial.dialing.close()

    # -- blocking calls for scripts --------------------------------------------

    def wait_for(self, match: Match, timeout: float = 5) -> Message:
        """
        Block until a message matches and return it (it is not returned by
        L{poll} then). C{match} is an action name or a predicate called
        with each message (after the mirror has applied it). Messages
        received but not yet polled count, oldest first. A reconnection
        by the client itself goes on meanwhile.

        @raise TimeoutError: nothing matched within C{timeout} seconds.
        @raise Disconnected: the connection closed first (for good).
        """
        matches = _matcher(match)
        unread = self._unread
        checked, evicted = 0, self._evicted
        expired = False
        deadline = self._clock() + timeout
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
        While reconnecting, wait for the next step of that instead.

        @raise Disconnected: the connection is closed.
        """
        if self._redial is not None:
            return self._wait_redial(deadline)
        sock = self._socket
        if sock is None:
            raise self._session.disconnected()
        remaining = max(0.0, deadline - self._clock())
        select.select([sock], [sock] if self._outbox else [], [], remaining)
        self._flush()
        self._read()
        return self._clock() >= deadline

    def _wait_redial(self, deadline: float) -> bool:
        """One blocking step of a reconnection, at most until C{deadline}."""
        self._step_redial()
        redial = self._redial
        if redial is not None:
            until = min(deadline, redial.deadline)
            if redial.phase is _Phase.WAITING:
                self._sleep(max(0.0, min(until, redial.next_at) - self._clock()))
            elif redial.phase is _Phase.CONNECTING:
                assert redial.dialing is not None
                remaining = max(0.0, until - self._clock())
                select.select([], [redial.dialing], [], remaining)
            elif self._socket is not None:
                remaining = max(0.0, until - self._clock())
                sock = self._socket
                select.select([sock], [sock] if self._outbox else [], [], remaining)
                self._flush()
                self._read()
        return self._clock() >= deadline

    def _wait_until_back(self, deadline: float) -> None:
        """Block while the client is reconnecting by itself, at most until C{deadline}."""
        while self._redial is not None:
            if self._wait_redial(deadline) and self._redial is not None:
                raise TimeoutError("still reconnecting to the server")

    def _call(self, action: str, timeout: float, **fields: Any) -> Message:
        """
        Send a request and block for its reply; an C{error} reply raises.
        While the client is reconnecting by itself, wait for it first.
        """
        deadline = self._clock() + timeout
        self._wait_until_back(deadline)
        request_id = self.request(action, **fields)
        expired = False
        while True:
            reply = self._replies.pop(request_id, None)
            if reply is not None:
                if reply["action"] == "error":
                    raise ClientError.from_reply(reply)
                return reply
            if request_id not in self._waiting:
                # Its connection closed; reconnecting by itself or not, no reply comes.
                raise self._session.disconnected()
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
        return self._call(
            "join_or_create", timeout, **self._session.joining(room=room, options=options)
        )

    def create(self, room: str, timeout: float = 5, **options: Any) -> Message:
        """Create a room of type C{room} and join it; the C{joined} reply."""
        return self._call("create", timeout, **self._session.joining(room=room, options=options))

    def join(self, room_id: str, timeout: float = 5, **options: Any) -> Message:
        """Join the room with this id; the C{joined} reply (or C{room_not_found}...)."""
        return self._call("join", timeout, **self._session.joining(room_id=room_id, options=options))

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
