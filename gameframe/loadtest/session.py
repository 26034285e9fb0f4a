"""One simulated player's life: connect, take its seat, act on a timer, count everything, leave."""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import CancelledError, Deferred, TimeoutError, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from gameframe.client import CLOSED, ClientError, Disconnected, Message
from gameframe.loadtest.player import SimulatedPlayer
from gameframe.loadtest.stats import MAX_MEASURE_NAME, Stats
from gameframe.txclient import GameClientProtocol

__all__ = ["PlayerSession", "RoomDirectory"]

log = Logger()

#: Player-code failures logged in full per process; later ones are only counted.
MAX_LOGGED_FAILURES = 5

#: The tester's own error codes (besides the server's).
CONNECT_FAILED = "connect_failed"
CONNECT_TIMEOUT = "connect_timeout"
JOIN_TIMEOUT = "join_timeout"
REQUEST_TIMEOUT = "request_timeout"
PLAYER_ERROR = "player_error"
ROOM_NOT_CREATED = "room_not_created"


class RoomDirectory:
    """
    The ids of the run's rooms, by room number: the player that creates
    room I{n} records it here, the others wait here for it. In a run of
    several processes, C{announce} passes each creation to the parent,
    which tells the other processes (L{learn}).
    """

    def __init__(
        self, announce: Callable[[int, str | None, str | None], None] | None = None
    ) -> None:
        self._announce = announce
        self._known: dict[int, tuple[str | None, str | None]] = {}
        self._waiting: dict[int, list[Deferred[str]]] = {}

    def created(self, number: int, room_id: str) -> None:
        self.learn(number, room_id, None)
        if self._announce is not None:
            self._announce(number, room_id, None)

    def creation_failed(self, number: int, code: str) -> None:
        self.learn(number, None, code)
        if self._announce is not None:
            self._announce(number, None, code)

    def learn(self, number: int, room_id: str | None, code: str | None) -> None:
        """Room C{number} now has C{room_id}, or could not be created (C{code})."""
        if number in self._known:
            return
        self._known[number] = (room_id, code)
        for waiting in self._waiting.pop(number, []):
            self._fire(waiting, room_id, code)

    def wait(self, number: int) -> Deferred[str]:
        """A Deferred of room C{number}'s id; fails with L{ClientError} C{room_not_created}."""
        waiting: Deferred[str] = Deferred(lambda d: self._forget(number, d))
        if number in self._known:
            self._fire(waiting, *self._known[number])
        else:
            self._waiting.setdefault(number, []).append(waiting)
        return waiting

    def _forget(self, number: int, waiting: Deferred[str]) -> None:
        queue = self._waiting.get(number, [])
        if waiting in queue:
            queue.remove(waiting)

    @staticmethod
    def _fire(waiting: Deferred[str], room_id: str | None, code: str | None) -> None:
        if room_id is not None:
            waiting.callback(room_id)
        else:
            waiting.errback(
                ClientError(ROOM_NOT_CREATED, f"its first player could not create it ({code})")
            )


class FailureLog:
    """Logs the first few failures of player code in full, then only counts them."""

    def __init__(self, limit: int = MAX_LOGGED_FAILURES) -> None:
        self.left = limit

    def report(self, failure: Failure, what: str, player: SimulatedPlayer) -> None:
        if self.left <= 0:
            return
        self.left -= 1
        more = "" if self.left else " (further player errors are only counted)"
        log.failure(
            "{what} failed in player {index}{more}",
            failure,
            what=what,
            index=player.index,
            more=more,
        )


class PlayerSession:
    """
    Drives one L{SimulatedPlayer} over one connection and counts what
    happens in L{Stats}: L{start} connects, then the room's first player
    creates it (others wait for its id in the L{RoomDirectory} and join it
    by id), then the player acts every C{interval} seconds; L{stop} leaves
    the room and closes the connection.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        player: SimulatedPlayer,
        *,
        connect: Callable[[], Deferred[GameClientProtocol]],
        directory: RoomDirectory,
        stats: Stats,
        room_type: str,
        room_options: dict[str, Any],
        creator: bool,
        connect_timeout: float,
        request_timeout: float,
        failures: FailureLog | None = None,
        ended: Callable[[PlayerSession], object] | None = None,
    ) -> None:
        self._reactor = reactor
        self.player = player
        self._connect = connect
        self._directory = directory
        self._stats = stats
        self._room_type = room_type
        self._room_options = room_options
        self._creator = creator
        self._connect_timeout = connect_timeout
        self._request_timeout = request_timeout
        self._failures = failures or FailureLog()
        self._ended = ended
        self._over = False
        self._protocol: GameClientProtocol | None = None
        self._pending: Deferred[Any] | None = None  # connecting or joining
        self._loop: LoopingCall | None = None
        self._first_act: IDelayedCall | None = None
        self._in_room = False
        self._stopping = False
        self._gave_up = False  # this side closed the connection after a failed join
        player._session = self

    # -- what the player sees ----------------------------------------------------------

    @property
    def connected(self) -> bool:
        protocol = self._protocol
        return protocol is not None and protocol.close_code is None

    @property
    def state(self) -> Any:
        return None if self._protocol is None else self._protocol.state.state

    def send(self, action: str, fields: dict[str, Any]) -> None:
        if not self.connected:
            return
        assert self._protocol is not None
        self._stats.messages_out += 1
        self._protocol.send(action, **fields)

    def request(self, action: str, fields: dict[str, Any]) -> Deferred[Message]:
        stats = self._stats
        if not self.connected:
            failed: Deferred[Message] = Deferred()
            failed.errback(Disconnected(CLOSED, "not connected"))
            return failed
        assert self._protocol is not None
        stats.requests += 1
        stats.messages_out += 1
        sent = self._reactor.seconds()
        reply = self._protocol.request(action, **fields)
        reply.addTimeout(self._request_timeout, self._reactor)

        def answered(message: Message) -> Message:
            stats.replies += 1
            stats.latency.record_seconds(self._reactor.seconds() - sent)
            return message

        def refused(failure: Failure) -> Failure:
            if failure.check(Disconnected):
                stats.unanswered += 1
            elif failure.check(ClientError):
                stats.request_errors += 1  # its code was counted as it arrived
            elif failure.check(TimeoutError):
                stats.timeouts += 1
                stats.error(REQUEST_TIMEOUT)
            return failure

        return reply.addCallbacks(answered, refused)

    def record(self, name: str, seconds: float) -> None:
        if not isinstance(name, str) or not 0 < len(name) <= MAX_MEASURE_NAME:
            raise ValueError(
                f"a measurement's name is a string of 1 to {MAX_MEASURE_NAME} characters, "
                f"not {name!r}"
            )
        histogram = self._stats.measure(name)
        if histogram is None:
            self._stats.measures_dropped += 1
        else:
            histogram.record_seconds(seconds)

    # -- life ----------------------------------------------------------------------------

    def start(self) -> None:
        """Connect (bounded by the connect timeout), then take the seat."""
        self._stats.connecting += 1
        connecting = self._connect()
        connecting.addTimeout(self._connect_timeout, self._reactor)
        self._pending = connecting
        connecting.addCallbacks(self._connected, self._connect_failed)

    def _connect_failed(self, failure: Failure) -> None:
        self._pending = None
        self._stats.connecting -= 1
        if self._stopping and failure.check(CancelledError):
            self._give_up_room()
            self._end()
            return
        self._stats.failed += 1
        self._stats.error(CONNECT_TIMEOUT if failure.check(TimeoutError) else CONNECT_FAILED)
        log.debug(
            "player {index} could not connect: {error}",
            index=self.player.index,
            error=failure.getErrorMessage(),
        )
        self._give_up_room()
        self._end()

    def _connected(self, protocol: GameClientProtocol) -> None:
        self._pending = None
        stats = self._stats
        stats.connecting -= 1
        stats.connected += 1
        stats.connected_now += 1
        self._protocol = protocol
        self.player.player_id = protocol.player_id
        protocol.on_message = self._received
        protocol.disconnected.addCallback(self._lost)
        if self._stopping:
            protocol.close()
            return
        self._join()

    def _join(self) -> None:
        player = self.player
        joining: Deferred[Message]
        if self._creator:
            joining = self._seat("create", room=self._room_type, options=self._room_options)
        else:
            joining = self._directory.wait(player.room_index).addCallback(
                lambda room_id: self._seat("join", room_id=room_id, options={})
            )
        self._pending = joining

        def joined(message: Message) -> None:
            self._pending = None
            self._joined(message)

        def failed(failure: Failure) -> None:
            self._pending = None
            if self._stopping:
                self._give_up_room()
                return
            self._stats.failed += 1
            error = failure.value
            if isinstance(error, ClientError) and error.code == ROOM_NOT_CREATED:
                self._stats.error(ROOM_NOT_CREATED)
            elif isinstance(error, TimeoutError):
                self._stats.error(JOIN_TIMEOUT)
            self._give_up_room()
            if self._protocol is not None:
                self._gave_up = True
                self._protocol.close()

        joining.addCallbacks(joined, failed)

    def _seat(self, action: str, **fields: Any) -> Deferred[Message]:
        """C{create} or C{join} as a request; its round trip is the join latency."""
        assert self._protocol is not None
        self._stats.messages_out += 1
        sent = self._reactor.seconds()
        seated = self._protocol.request(action, **fields)
        seated.addTimeout(self._request_timeout, self._reactor)

        def answered(message: Message) -> Message:
            self._stats.join_latency.record_seconds(self._reactor.seconds() - sent)
            return message

        return seated.addCallback(answered)

    def _give_up_room(self) -> None:
        """This player will never create its room: the others stop waiting."""
        if self._creator:
            self._directory.creation_failed(self.player.room_index, "creator_failed")

    def _joined(self, message: Message) -> None:
        player = self.player
        self._in_room = True
        self._stats.joined += 1
        self._stats.in_room_now += 1
        player.room_id = message.get("room_id")
        player.player_id = message.get("player_id", player.player_id)
        if self._creator and player.room_id is not None:
            self._directory.created(player.room_index, player.room_id)
        self._call("on_join", player.on_join, message)
        interval = player.interval
        if interval and not self._stopping and self.connected:
            # Start at a random point of the first interval, so players spread out.
            self._first_act = self._reactor.callLater(
                player.random.uniform(0, interval), self._start_acting, interval
            )

    def _start_acting(self, interval: float) -> None:
        self._first_act = None
        loop = self._loop = LoopingCall(self._act)
        loop.clock = self._reactor
        loop.start(interval, now=True)

    def _act(self) -> None:
        if not self.connected:
            return
        result = self._call("act", self.player.act)
        if isinstance(result, Deferred):
            result.addErrback(self._act_failed)

    def _act_failed(self, failure: Failure) -> None:
        if not failure.check(ClientError, TimeoutError, CancelledError):
            self._player_error(failure, "act (its Deferred)")

    def _received(self, message: Message) -> None:
        self._stats.messages_in += 1
        action = message["action"]
        if action == "error":
            self._stats.error(str(message.get("code")))
        if self._in_room:  # the joined reply itself goes to on_join
            if action == "left":  # the room let this player go (or it left)
                self._in_room = False
                self._stats.in_room_now -= 1
            self._call("on_message", self.player.on_message, message)

    def _call(self, what: str, hook: Callable[..., Any], *args: Any) -> Any:
        try:
            return hook(*args)
        except Exception:
            self._player_error(Failure(), what)
            return None

    def _player_error(self, failure: Failure, what: str) -> None:
        self._stats.error(PLAYER_ERROR)
        self._failures.report(failure, what, self.player)

    def _lost(self, _: object) -> None:
        protocol = self._protocol
        assert protocol is not None
        self._stop_acting()
        self._stats.connected_now -= 1
        if self._in_room:
            self._in_room = False
            self._stats.in_room_now -= 1
        if not (self._stopping or self._gave_up):
            code = protocol.close_code or "connection_lost"
            self._stats.disconnect(code)
            self._call("on_disconnect", self.player.on_disconnect, code)
        self._end()

    def _end(self) -> None:
        """This player is done (failed, dropped or stopped): tell the runner, once."""
        if not self._over:
            self._over = True
            if self._ended is not None:
                self._ended(self)

    def _stop_acting(self) -> None:
        if self._first_act is not None and self._first_act.active():
            self._first_act.cancel()
        self._first_act = None
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def stop(self) -> Deferred[None]:
        """
        The run is over: stop acting, leave the room (so it is disposed at
        once instead of holding the seat), close; fires once closed.
        """
        self._stopping = True
        self._stop_acting()
        if self._pending is not None:
            self._pending.cancel()
        protocol = self._protocol
        if protocol is None:
            return succeed(None)
        if self._in_room and self.connected:
            self._stats.messages_out += 1
            protocol.send("leave")
        return protocol.close()

    def abort(self) -> None:
        """Close at once (the stop did not finish in time)."""
        protocol = self._protocol
        if protocol is not None and protocol.transport is not None:
            protocol.transport.abortConnection()  # type: ignore[attr-defined]
