"""A Twisted gameframe client: a JSON Lines Protocol with Deferred-returning lobby calls and requests."""

from __future__ import annotations

import itertools
import time
from typing import Any, Callable, Generic, Iterator, TypeVar, cast

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IAddress, IStreamClientEndpoint, ITCPTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from gameframe.client import (
    CLOSED,
    CONNECTION_LOST,
    DEFAULT_MAX_LINE,
    ClientError,
    Disconnected,
    Message,
    _encode,
    _LineBuffer,
    _Session,
    _SessionView,
)

__all__ = ["ClientError", "Disconnected", "GameClientFactory", "GameClientProtocol", "connect"]

T = TypeVar("T")


class _OneShot(Generic[T]):
    """
    An event that happens once; each observer gets its own Deferred, so
    no caller's callbacks can change what another caller sees.
    """

    def __init__(self) -> None:
        self._outcome: T | Failure | None = None
        self._fired = False
        self._observers: list[Deferred[T]] = []

    @property
    def fired(self) -> bool:
        return self._fired

    def observe(self) -> Deferred[T]:
        observer: Deferred[T] = Deferred()
        if self._fired:
            self._deliver(observer)
        else:
            self._observers.append(observer)
        return observer

    def fire(self, outcome: T | Failure) -> None:
        if self._fired:
            return
        self._fired, self._outcome = True, outcome
        observers, self._observers = self._observers, []
        for observer in observers:
            self._deliver(observer)

    def _deliver(self, observer: Deferred[T]) -> None:
        outcome = self._outcome
        if isinstance(outcome, Failure):
            observer.errback(outcome)
        else:
            observer.callback(cast(T, outcome))


class GameClientProtocol(_SessionView, Protocol):
    """
    One connection to a gameframe server, for Twisted programs and tests.

    Requests get a fresh C{id}; their Deferred fires with the reply that
    echoes it, or fails with L{ClientError} (its C{code}) on an C{error}
    reply, or with L{Disconnected} if the connection closes first.

    @param max_line: the longest line accepted from the server; a longer
        one closes the connection (C{close_code} C{frame_too_large}).
    @param mirror: whether to apply the room's C{state} and C{patch}
        messages to L{state} (the default). With C{mirror=False} they
        still reach C{on_message} but are not applied: C{state.state}
        stays L{None} and no C{sync} is ever asked, which spares a program
        that never reads the state (a load-testing bot, a relay...) the
        work of applying every patch.

    @ivar state: the L{StateMirror} of the room's state; C{state.state} is
        the tree. On a gap in the patches the client sends C{sync} itself.
    @ivar on_message: called with every message received (after the mirror
        is updated, before the request it answers fires), or L{None}.
    """

    log = Logger()

    def __init__(self, max_line: int = DEFAULT_MAX_LINE, *, mirror: bool = True) -> None:
        self._session = _Session(mirror)
        self._lines = _LineBuffer(max_line)
        self._ids: Iterator[int] = itertools.count(1)
        self._pending: dict[int, Deferred[Message]] = {}
        self._connected = False
        self.on_message: Callable[[Message], object] | None = None
        self._welcomed: _OneShot[GameClientProtocol] = _OneShot()
        self._disconnected: _OneShot[None] = _OneShot()

    @property
    def welcomed(self) -> Deferred[GameClientProtocol]:
        """
        A new Deferred that fires with this protocol once the server's
        C{welcome} has arrived (fails with L{Disconnected} if the
        connection closes first).
        """
        return self._welcomed.observe()

    @property
    def disconnected(self) -> Deferred[None]:
        """
        A new Deferred that fires with L{None} once the connection has
        closed (at once if it has); C{close_code} then says why.
        """
        return self._disconnected.observe()

    # -- connection lifecycle ----------------------------------------------------

    @property
    def _transport(self) -> ITCPTransport:
        return cast(ITCPTransport, self.transport)

    def connectionMade(self) -> None:
        self._connected = True
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)

    def dataReceived(self, data: bytes) -> None:
        try:
            messages = self._lines.feed(data)
        except Disconnected as error:
            self._session.closed(error.code, error.message, replace=True)
            self._transport.abortConnection()
            return
        for message in messages:
            self.messageReceived(message)
            if not self._connected:
                return

    def messageReceived(self, message: Message) -> None:
        """
        One message from the server: update the session, tell C{on_message}
        (an exception there is logged), then fire the request it answers.
        """
        if self._session.handle(message):
            self.send("sync")
        if self.on_message is not None:
            try:
                self.on_message(message)
            except Exception:
                self.log.failure("on_message failed on {message!r}", message=message)
        if message["action"] == "welcome":
            self._welcomed.fire(self)
        request_id = message.get("id")
        waiting = self._pending.pop(request_id, None) if type(request_id) is int else None
        if waiting is not None:
            if message["action"] == "error":
                waiting.errback(ClientError.from_reply(message))
            else:
                waiting.callback(message)

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        self._connected = False
        session = self._session
        pending, self._pending = self._pending, {}
        for waiting in pending.values():
            waiting.errback(session.disconnected())
        if not self._welcomed.fired:
            self._welcomed.fire(Failure(session.disconnected()))
        session.closed(CONNECTION_LOST, "the connection closed")
        self._disconnected.fire(None)

    def close(self) -> Deferred[None]:
        """Close the connection; the L{disconnected} Deferred (the seat may be held)."""
        if self._connected:
            self._session.closed(CLOSED, "closed by this client")
            self._transport.loseConnection()
        return self.disconnected

    # -- sending -------------------------------------------------------------------

    def send(self, action: str, **fields: Any) -> None:
        """
        Send one message C{{"action": action, **fields}}.

        @raise Disconnected: the connection is closed.
        """
        if not self._connected:
            raise self._session.disconnected(CLOSED)
        self._transport.write(_encode(action, fields))

    def request(self, action: str, **fields: Any) -> Deferred[Message]:
        """
        Send a message with a fresh C{id}; a Deferred of the reply echoing
        it (C{result}, C{joined}, C{rooms}...), failing with L{ClientError}
        on an C{error} reply.
        """
        if not self._connected:
            failed: Deferred[Message] = Deferred()
            failed.errback(self._session.disconnected(CLOSED))
            return failed
        request_id = next(self._ids)
        waiting: Deferred[Message] = Deferred(lambda d: self._forget(request_id))
        self._pending[request_id] = waiting
        self.send(action, id=request_id, **fields)
        return waiting

    def _forget(self, request_id: int) -> None:
        """A request was cancelled: its reply, if it comes, is just a message."""
        self._pending.pop(request_id, None)

    def call(self, action: str, **fields: Any) -> Deferred[Any]:
        """Run a room action as a request: a Deferred of its C{result} value."""
        return self.request(action, **fields).addCallback(lambda reply: reply.get("result"))

    def join_or_create(self, room: str, **options: Any) -> Deferred[Message]:
        """Join a matching room of type C{room} or create one: the C{joined} reply."""
        return self.request("join_or_create", room=room, options=options)

    def create(self, room: str, **options: Any) -> Deferred[Message]:
        """Create a room of type C{room} and join it: the C{joined} reply."""
        return self.request("create", room=room, options=options)

    def join(self, room_id: str, **options: Any) -> Deferred[Message]:
        """Join the room with this id: the C{joined} reply."""
        return self.request("join", room_id=room_id, options=options)

    def leave(self) -> Deferred[Message]:
        """Leave the current room: the C{left} reply."""
        return self.request("leave")

    def ping(self) -> Deferred[Message]:
        """Send C{ping}; the C{pong} (whose C{t} is this side's send time, in seconds)."""
        return self.request("ping", t=time.monotonic())

    def authenticate(self, token: str) -> Deferred[Message]:
        """Prove who this player is (a server with C{--auth}); the C{authenticated} reply."""
        return self.request("authenticate", token=token)

    def list_rooms(self, room: str | None = None) -> Deferred[list[Message]]:
        """The rooms open to join (of type C{room}, or all)."""
        fields = {} if room is None else {"room": room}
        return self.request("list", **fields).addCallback(lambda reply: reply["rooms"])

    def reconnect(self, token: str) -> Deferred[Message]:
        """
        Take over a held seat with its token (from an earlier connection's
        C{token}): the C{joined} reply; this connection then speaks for
        that player, with its id, and the mirror gets the full state.
        """
        return self.request("reconnect", token=token)


class GameClientFactory(Factory):
    """
    Makes L{GameClientProtocol}s (one per connection made through it),
    each with this C{max_line} and C{mirror} (see L{GameClientProtocol}).
    """

    protocol = GameClientProtocol

    def __init__(self, max_line: int = DEFAULT_MAX_LINE, *, mirror: bool = True) -> None:
        self.max_line = max_line
        self.mirror = mirror

    def buildProtocol(self, addr: IAddress | None) -> GameClientProtocol:
        protocol = GameClientProtocol(self.max_line, mirror=self.mirror)
        protocol.factory = self
        return protocol


def connect(
    reactor: Any,
    endpoint: str | IStreamClientEndpoint,
    factory: GameClientFactory | None = None,
) -> Deferred[GameClientProtocol]:
    """
    Connect to a gameframe server: a Deferred of the protocol, fired once
    the server's C{welcome} has arrived.

    @param reactor: the reactor (used to parse an endpoint string).
    @param endpoint: a client endpoint, or a string like
        C{"tcp:host=127.0.0.1:port=7000"}.
    @param factory: makes the protocol; by default a L{GameClientFactory}
        (pass C{GameClientFactory(mirror=False)} for a client that does
        not apply the room's state).
    """
    target: IStreamClientEndpoint = (
        clientFromString(reactor, endpoint) if isinstance(endpoint, str) else endpoint
    )
    connecting = target.connect(factory or GameClientFactory())

    def welcomed(protocol: object) -> Deferred[GameClientProtocol]:
        assert isinstance(protocol, GameClientProtocol)
        return protocol.welcomed

    result: Deferred[GameClientProtocol] = connecting.addCallback(welcomed)
    return result
