"""A Twisted gameframe client: a JSON Lines Protocol with Deferred-returning lobby calls and requests."""

from __future__ import annotations

import itertools
import time
from typing import Any, Callable, Generic, Iterator, TypeVar, cast

import attrs
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IReactorTime,
    IStreamClientEndpoint,
    ITCPTransport,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from gameframe._reconnect import CONNECTION_LOST, AutoReconnect, Backoff
from gameframe.client import (
    CLOSED,
    DEFAULT_MAX_LINE,
    GAVE_UP,
    RECONNECTING,
    ClientError,
    Disconnected,
    Message,
    Reconnecting,
    _encode,
    _LineBuffer,
    _Session,
    _SessionView,
)

__all__ = [
    "AutoReconnect",
    "Backoff",
    "ClientError",
    "Disconnected",
    "GameClientFactory",
    "GameClientProtocol",
    "Reconnecting",
    "connect",
]

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


@attrs.define
class _Redial:
    """A reconnection under way: its timers, its attempt, and what waits for it."""

    give_up: IDelayedCall
    attempt: int = 0
    next_try: IDelayedCall | None = None
    dialing: Deferred[Any] | None = None
    claim_id: int | None = None
    over: bool = False  # given up; the attempt's connection is closing
    queued: list[tuple[str, dict[str, Any], Deferred[Message]]] = attrs.Factory(list)


class _Rejoin(Factory):
    """Gives a new connection to the same protocol, which speaks on it from then on."""

    def __init__(self, protocol: GameClientProtocol) -> None:
        self._protocol = protocol

    def buildProtocol(self, addr: IAddress | None) -> GameClientProtocol:
        return self._protocol


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
    @param encoding: the state patches its joining requests ask for:
        C{"json"} (RFC 6902, the default) or C{"compact"} (fewer bytes;
        docs/protocol.md). The mirror takes both.

    @ivar state: the L{StateMirror} of the room's state; C{state.state} is
        the tree. On a gap in the patches the client sends C{sync} itself.
    @ivar on_message: called with every message received (after the mirror
        is updated, before the request it answers fires), or L{None}.

    A protocol made by L{connect} takes its seat back by itself when the
    server stops with C{disconnect} C{"retry": true} (see L{AutoReconnect}):
    it connects to the same endpoint again, sends C{reconnect} with its
    latest token and goes on as the same object. Meanwhile L{reconnecting}
    is True, L{send} raises L{Reconnecting}, requests wait for the seat,
    and L{disconnected} fires only if it gives up.

    @ivar on_reconnecting: called with C{(attempt, delay)} (from 1; in
        seconds) each time an attempt is scheduled, or L{None}.
    @ivar on_reconnected: called with the C{joined} reply once the seat is
        back (the full C{state} follows it), or L{None}.
    @ivar on_reconnect_failed: called with a L{ClientError} when it stops
        trying: C{invalid_token} (the seat is gone) or C{gave_up}; then
        L{disconnected} fires, with the server's C{close_code}. Or L{None}.
    """

    log = Logger()

    def __init__(
        self,
        max_line: int = DEFAULT_MAX_LINE,
        *,
        mirror: bool = True,
        auto_reconnect: AutoReconnect | None = AutoReconnect(),
        encoding: str = "json",
    ) -> None:
        self._session = _Session(mirror, encoding)
        self._max_line = max_line
        self._lines = _LineBuffer(max_line)
        self._ids: Iterator[int] = itertools.count(1)
        self._pending: dict[int, Deferred[Message]] = {}
        self._connected = False
        self.on_message: Callable[[Message], object] | None = None
        self.on_reconnecting: Callable[[int, float], object] | None = None
        self.on_reconnected: Callable[[Message], object] | None = None
        self.on_reconnect_failed: Callable[[ClientError], object] | None = None
        self._welcomed: _OneShot[GameClientProtocol] = _OneShot()
        self._disconnected: _OneShot[None] = _OneShot()
        self._auto_reconnect = auto_reconnect
        self._endpoint: IStreamClientEndpoint | None = None
        self._clock: IReactorTime | None = None
        self._redial: _Redial | None = None

    def redial_through(self, endpoint: IStreamClientEndpoint, clock: IReactorTime) -> None:
        """
        Where to connect again to reconnect by itself, and the clock of the
        delays (L{connect} calls this; without it, the protocol does not
        reconnect by itself).
        """
        self._endpoint, self._clock = endpoint, clock

    @property
    def reconnecting(self) -> bool:
        """Whether the client is taking its seat back by itself right now."""
        return self._redial is not None and not self._redial.over

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
        self._lines = _LineBuffer(self._max_line)
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
        if self._redial is not None:
            self._receive_while_redialing(message)
            return
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
        redial = self._redial
        if redial is not None:
            if redial.over:
                self._redial = None
                self._disconnected.fire(None)
            else:
                self._schedule_attempt(redial)  # the server closed again: not ready yet
            return
        if not self._welcomed.fired:
            self._welcomed.fire(Failure(session.disconnected()))
        session.closed(CONNECTION_LOST, "the connection closed")
        policy, clock = self._auto_reconnect, self._clock
        if (
            policy is not None
            and clock is not None
            and self._endpoint is not None
            and policy.applies(session.close_code, session.close_retry, session.token)
        ):
            give_up = clock.callLater(
                policy.give_up_after,
                self._give_up,
                ClientError(GAVE_UP, "the server did not take the seat back in time"),
            )
            self._schedule_attempt(_Redial(give_up))
            return
        self._disconnected.fire(None)

    def close(self) -> Deferred[None]:
        """
        Close the connection, and stop reconnecting if it was; the
        L{disconnected} Deferred (the seat may be held).
        """
        if self.reconnecting:
            self._give_up(ClientError(CLOSED, "closed by this client"), notify=False)
        elif self._connected:
            self._session.closed(CLOSED, "closed by this client")
            self._transport.loseConnection()
        return self.disconnected

    # -- reconnecting by itself ------------------------------------------------------

    def _schedule_attempt(self, redial: _Redial) -> None:
        policy, clock = self._auto_reconnect, self._clock
        assert policy is not None and clock is not None
        self._redial = redial
        redial.attempt += 1
        redial.claim_id = None
        delay = policy.backoff.delay(redial.attempt, policy.rand)
        redial.next_try = clock.callLater(delay, self._dial, redial)
        self._tell(self.on_reconnecting, redial.attempt, delay)

    def _dial(self, redial: _Redial) -> None:
        assert self._endpoint is not None
        redial.next_try = None
        dialing = redial.dialing = self._endpoint.connect(_Rejoin(self))

        def connected(protocol: object) -> None:
            redial.dialing = None

        def refused(failure: Failure) -> None:
            redial.dialing = None
            if not redial.over and not failure.check(CancelledError):
                self._schedule_attempt(redial)  # nothing listens yet: the server restarts

        dialing.addCallbacks(connected, refused)

    def _receive_while_redialing(self, message: Message) -> None:
        """
        A message on a connection made to take the seat back: the welcome
        (answered with C{reconnect}) and that request's reply matter; what
        comes before them is not the program's business.
        """
        redial = self._redial
        assert redial is not None
        if redial.over:
            return
        action = message["action"]
        if action == "welcome" and redial.claim_id is None:
            redial.claim_id = next(self._ids)
            fields = self._session.joining(id=redial.claim_id, token=self._session.token)
            self._transport.write(_encode("reconnect", fields))
        elif redial.claim_id is not None and message.get("id") == redial.claim_id:
            if action == "error":
                self._session.left()
                self._give_up(ClientError.from_reply(message))
                return
            redial.give_up.cancel()
            self._redial = None
            self._session.opened()
            self.messageReceived(message)
            for action, fields, waiting in redial.queued:
                if not waiting.called:
                    self.request(action, **fields).chainDeferred(waiting)
            self._tell(self.on_reconnected, message)

    def _give_up(self, error: ClientError, notify: bool = True) -> None:
        """Stop reconnecting: closed for good, with the server's reason."""
        redial = self._redial
        if redial is None or redial.over:
            return
        redial.over = True
        for call in (redial.give_up, redial.next_try):
            if call is not None and call.active():
                call.cancel()
        if redial.dialing is not None:
            redial.dialing.cancel()
        for _, _, waiting in redial.queued:
            if not waiting.called:
                waiting.errback(self._session.disconnected())
        if self._connected:
            self._transport.abortConnection()  # connectionLost ends it
        else:
            self._redial = None
            self._disconnected.fire(None)
        if notify:
            self._tell(self.on_reconnect_failed, error)

    def _tell(self, callback: Callable[..., object] | None, *args: Any) -> None:
        """Call an application callback; an exception there is logged."""
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            self.log.failure("a reconnection callback failed")

    # -- sending -------------------------------------------------------------------

    def send(self, action: str, **fields: Any) -> None:
        """
        Send one message C{{"action": action, **fields}}.

        @raise Reconnecting: the client is reconnecting by itself (nothing
            is queued; a request would wait).
        @raise Disconnected: the connection is closed.
        """
        if self.reconnecting:
            raise Reconnecting(RECONNECTING, "the client is reconnecting: send again once back")
        if not self._connected:
            raise self._session.disconnected(CLOSED)
        self._transport.write(_encode(action, fields))

    def request(self, action: str, **fields: Any) -> Deferred[Message]:
        """
        Send a message with a fresh C{id}; a Deferred of the reply echoing
        it (C{result}, C{joined}, C{rooms}...), failing with L{ClientError}
        on an C{error} reply. While the client reconnects by itself, the
        request waits and is sent once the seat is back (it fails with
        L{Disconnected} if the client gives up).
        """
        redial = self._redial
        if redial is not None and not redial.over:
            queued: Deferred[Message] = Deferred()
            redial.queued.append((action, fields, queued))
            return queued
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
        return self.request("join_or_create", **self._session.joining(room=room, options=options))

    def create(self, room: str, **options: Any) -> Deferred[Message]:
        """Create a room of type C{room} and join it: the C{joined} reply."""
        return self.request("create", **self._session.joining(room=room, options=options))

    def join(self, room_id: str, **options: Any) -> Deferred[Message]:
        """Join the room with this id: the C{joined} reply."""
        return self.request("join", **self._session.joining(room_id=room_id, options=options))

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
        return self.request("reconnect", **self._session.joining(token=token))


class GameClientFactory(Factory):
    """
    Makes L{GameClientProtocol}s (one per connection made through it),
    each with this C{max_line}, C{mirror}, C{auto_reconnect} and C{encoding} (see
    L{GameClientProtocol}).

    @param clock: the clock of the reconnection delays (default: the
        reactor given to L{connect}).
    """

    protocol = GameClientProtocol

    def __init__(
        self,
        max_line: int = DEFAULT_MAX_LINE,
        *,
        mirror: bool = True,
        auto_reconnect: AutoReconnect | None = AutoReconnect(),
        clock: IReactorTime | None = None,
        encoding: str = "json",
    ) -> None:
        self.max_line = max_line
        self.mirror = mirror
        self.encoding = encoding
        self.auto_reconnect = auto_reconnect
        self.clock = clock

    def buildProtocol(self, addr: IAddress | None) -> GameClientProtocol:
        protocol = GameClientProtocol(
            self.max_line,
            mirror=self.mirror,
            auto_reconnect=self.auto_reconnect,
            encoding=self.encoding,
        )
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
        not apply the room's state, C{auto_reconnect=None} for one that
        never reconnects by itself).
    """
    target: IStreamClientEndpoint = (
        clientFromString(reactor, endpoint) if isinstance(endpoint, str) else endpoint
    )
    factory = factory or GameClientFactory()
    clock: IReactorTime = factory.clock or reactor
    connecting = target.connect(factory)

    def welcomed(protocol: object) -> Deferred[GameClientProtocol]:
        assert isinstance(protocol, GameClientProtocol)
        protocol.redial_through(target, clock)
        return protocol.welcomed

    result: Deferred[GameClientProtocol] = connecting.addCallback(welcomed)
    return result
