"""The room host: the framework's per-room engine (lifecycle, seats, tokens, timers, state sync, faults)."""

from __future__ import annotations

import hmac
import secrets
import time
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Hashable, Iterable, Mapping

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gameframe._actions import ActionSpec, actions_of
from gameframe._async import call
from gameframe._counters import Metrics
from gameframe._bucket import TokenBucket
from gameframe._saving import SAVE_FORMAT, RoomSaver
from gameframe._lifecycle import ROOM_MOVES, SEAT_MOVES, Lifecycle, RoomPhase, SeatPhase
from gameframe._interestsync import InterestSync
from gameframe._sync import StateSync
from gameframe._timers import Metronome, RoomClock
from gameframe.codec import GameError, encode
from gameframe.interfaces import IPlayerLink, IRoomDirectory, IRoomHandle
from gameframe.player import Player
from gameframe.store.base import IPlayerStorage
from gameframe.store.memory import MemoryPlayerStorage
from gameframe.vocabulary import (
    ENCODING_JSON,
    INTERNAL_ERROR,
    INVALID_TOKEN,
    LEFT_DISCONNECT,
    LEFT_DISPOSED,
    LEFT_KICKED,
    LEFT_ROOM_ERROR,
    NO_STATE,
    RATE_LIMITED,
    REPLACED,
    ROOM_FULL,
    ROOM_LOCKED,
    ROOM_NOT_FOUND,
    UNAUTHORIZED,
    UNKNOWN_ACTION,
    Message,
    error_message,
    left_message,
)

if TYPE_CHECKING:
    from gameframe.room import Room

# A room whose on_tick fails this many times in a row is disposed (room_error).
MAX_TICK_FAILURES = 10
# A handler or tick holding the reactor longer than this (seconds) is logged.
SLOW_CALL = 0.1

Stopwatch = Callable[[], float]


@attrs.define(eq=False, repr=False)
class Seat:
    """One player's place in a room: its phase, its secret token, its timers."""

    player: Player
    life: Lifecycle[SeatPhase] = attrs.Factory(
        lambda: Lifecycle(SeatPhase.JOINING, SEAT_MOVES)
    )
    token: str = ""
    hold_timer: IDelayedCall | None = None
    buckets: dict[str, TokenBucket] = attrs.Factory(dict)

    @property
    def phase(self) -> SeatPhase:
        return self.life.phase

    def cancel_hold(self) -> None:
        if self.hold_timer is not None and self.hold_timer.active():
            self.hold_timer.cancel()
        self.hold_timer = None


@implementer(IRoomHandle)
class RoomHost:
    """
    Runs one author's L{Room}: everything the framework keeps per room
    lives here, never in the Room instance, so no attribute an author picks
    can break it. The Room reaches its host through a name-mangled
    attribute; the RoomService reaches it through L{IRoomHandle}.

    @param metronome: the shared timer for an interval (ticks, patches).
    @param stopwatch: wall time in seconds, to catch handlers that hold the
        reactor (injected so tests need not burn real time).
    """

    log = Logger()

    def __init__(
        self,
        room_class: type[Room],
        room_id: str,
        room_type: str,
        options: dict[str, Any],
        clock: IReactorTime,
        metronome: Callable[[float], Metronome],
        directory: IRoomDirectory,
        stopwatch: Stopwatch = time.perf_counter,
        storage: IPlayerStorage | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.room_id = room_id
        self.room_type = room_type
        self.storage: IPlayerStorage = storage if storage is not None else MemoryPlayerStorage()
        self.options = options
        self.clock = RoomClock(clock, self)
        self.life: Lifecycle[RoomPhase] = Lifecycle(RoomPhase.CREATING, ROOM_MOVES)
        self.players: dict[str, Player] = {}
        self.players_view: Mapping[str, Player] = MappingProxyType(self.players)
        self.metadata: dict[str, Any] = {}
        self.metadata_view: Mapping[str, Any] = MappingProxyType(self.metadata)
        self.private = False
        self.locked_by_author = False
        self.ticks = 0
        self.tick_overruns = 0
        self._tick_failures = 0
        self._last_tick = 0.0
        self._seats: dict[str, Seat] = {}
        self._unsynced: dict[str, Player] = {}  # seated before there was a state
        self._beats: dict[str, Metronome] = {}
        self._loops: list[LoopingCall] = []
        self._metronome = metronome
        self._directory = directory
        self._stopwatch = stopwatch
        self._watchers: list[Callable[[], None]] = []
        self._metrics = metrics if metrics is not None else Metrics()
        self._actions: dict[str, ActionSpec] = actions_of(room_class)
        # A room that keeps the default view_state shares one tree between its
        # views (and, with a tracked state, patches from its recorded changes).
        from gameframe.room import Room as _Room  # room imports this module

        whole = room_class.view_state is _Room.view_state
        self.sync: StateSync | InterestSync
        if room_class.interest is not None:
            self.sync = InterestSync(room_class.interest, self._metrics.patch_bytes.observe)
        else:
            self.sync = StateSync(None if whole else self._view_of, self._metrics.patch_bytes.observe)
        # Keeps the room's saved copy in the room store (None: no store).
        self.saver: RoomSaver | None = None
        self.tick_rate: float | None = room_class.tick_rate
        self.patch_rate: float | None = room_class.patch_rate
        room = room_class.__new__(room_class)
        object.__setattr__(room, "_Room__host", self)
        self.room: Room = room
        room_class.__init__(room)

    def __repr__(self) -> str:
        return f"<{type(self.room).__name__} {self.room_id}>"

    # -- lifecycle -------------------------------------------------------------

    @property
    def phase(self) -> RoomPhase:
        return self.life.phase

    @property
    def running(self) -> bool:
        return self.life.phase is RoomPhase.RUNNING

    def create(self, saved: Mapping[str, Any] | None = None, grace: float = 0.0) -> Any:
        """
        Run C{on_create}: L{None} when running, or a Deferred; raises if it failed.

        @param saved: a saved room (L{saved}'s value) to bring back: after
            C{on_create}, the room's C{restore} gets its snapshot, and every
            saved seat is held for C{grace} seconds for its player's
            C{reconnect}.
        """
        self._directory.register(self)

        def ready(_: object = None) -> None:
            if self.life.phase is not RoomPhase.CREATING:
                raise GameError(ROOM_NOT_FOUND, f"room {self.room_id} closed while created")
            if saved is not None:
                try:
                    self._restore(saved, grace)
                except BaseException:
                    self.dispose(LEFT_DISPOSED)
                    raise
            self.life.move(RoomPhase.RUNNING)
            self.set_tick_rate(self.tick_rate)
            self.set_patch_rate(self.patch_rate)
            self._changed()
            self.log.info("{room} created", room=self)

        def failed(failure: Failure) -> Failure:
            self.dispose(LEFT_DISPOSED)
            return failure

        try:
            result = call(self.room.on_create, self.options)
        except BaseException:
            self.dispose(LEFT_DISPOSED)
            raise
        if isinstance(result, Deferred):
            return result.addCallbacks(ready, failed)
        ready()
        return None

    def shutdown(self) -> Deferred[None]:
        """The server is stopping: run C{on_shutdown} (its failure is logged)."""
        if self.life.phase is not RoomPhase.RUNNING:
            return succeed(None)
        return self._hook(self.room.on_shutdown)

    def suspend(self) -> Deferred[None]:
        """
        The server is stopping with a room store: save the room one last
        time and stop it, without C{left}, C{on_leave} or C{on_dispose}: its
        players keep their seats (and tokens) in the saved room. Fires once
        the store has the room.
        """
        if self.life.phase is not RoomPhase.RUNNING:
            return succeed(None)
        saved = self.saver.final() if self.saver is not None else succeed(None)
        self._stop_suspended()
        self.log.info("{room} saved and suspended", room=self)
        return saved

    def abandon(self) -> None:
        """
        Another node owns the room now (this one was fenced): stop it as
        L{suspend} does, without saving it or deleting its saved copy.
        """
        if self.life.phase is not RoomPhase.RUNNING:
            return
        saver, self.saver = self.saver, None
        if saver is not None:
            saver.abandon()
        self._stop_suspended()
        self.log.info("{room} abandoned to another node", room=self)

    def _stop_suspended(self) -> None:
        self.life.move(RoomPhase.SUSPENDED)
        self._stop_timers()
        for seat in self._seats.values():
            seat.cancel_hold()
        self._directory.unregister(self)

    def saved(self) -> dict[str, Any]:
        """
        The room as the store keeps it: the author's C{snapshot()} and the
        engine's part (the options, the seats with their players' ids,
        identities, data and tokens, and the state streams' C{seq}).
        """
        room = self.room
        held = (SeatPhase.SEATED, SeatPhase.DROPPED)
        return {
            "format": SAVE_FORMAT,
            "room_type": self.room_type,
            "options": self.options,
            "snapshot_version": type(room).snapshot_version,
            "room": room.snapshot(),
            "seats": [
                {
                    "id": seat.player.id,
                    "token": seat.token,
                    "data": seat.player.data,
                    "user": seat.player.user,
                    "auth": seat.player.auth,
                    # In a cluster, the node the player is connected through
                    # (a stand-in's link): a room restored elsewhere re-seats it there.
                    "home": getattr(seat.player.link, "home", None),
                    # ...and, if it asked for compact patches, that (so they go on).
                    **_encoding_of(seat.player.link),
                }
                for seat in self._seats.values()
                if seat.phase in held
            ],
            "views": self.sync.sequences(),
        }

    def _restore(self, saved: Mapping[str, Any], grace: float) -> None:
        """Bring back a saved room's snapshot and seats (each held C{grace} seconds)."""
        room = self.room
        snapshot = saved["room"]
        version = saved.get("snapshot_version", 1)
        if version != type(room).snapshot_version:
            snapshot = room.migrate(snapshot, version)
        room.restore(snapshot)
        self.sync.resume(saved.get("views", ()))
        for record in saved.get("seats", ()):
            player = Player(
                id=record["id"],
                room=room,
                data=record.get("data") or {},
                user=record.get("user"),
                auth=record.get("auth"),
            )
            seat = Seat(player, token=record["token"])
            seat.life.move(SeatPhase.SEATED)
            seat.life.move(SeatPhase.DROPPED)
            self._seats[player.id] = seat
            self.players[player.id] = player
            player.hold(room.max_held_messages)
            seat.hold_timer = self.clock.callLater(grace, self._hold_expired, seat)
            self._directory.seat(player.id, self.room_id)
        self.log.info(
            "{room} restored (snapshot version {version}, {seats} seats held {grace:g} s)",
            room=self,
            version=version,
            seats=len(self._seats),
            grace=grace,
        )

    def dispose(self, reason: str) -> Deferred[None]:
        """Every player leaves with C{reason}, timers stop, C{on_dispose} runs."""
        if not self.life.can_move(RoomPhase.DISPOSING):
            return succeed(None)
        self.life.move(RoomPhase.DISPOSING)
        seats = list(self._seats.values())
        for seat in seats:
            seat.player.send(left_message(self.room_id, reason))
        leaving = [
            self._hook(self.room.on_leave, seat.player, reason)
            for seat in seats
            if self._remove(seat)
        ]
        self._stop_timers()
        if self.saver is not None:
            self.saver.forget()
        self._directory.unregister(self)
        self._notify_watchers()
        self.log.info("{room} disposed ({reason})", room=self, reason=reason)

        async def finish() -> None:
            for done in leaving:
                await done
            await self._hook(self.room.on_dispose)
            self.life.move(RoomPhase.DISPOSED)

        return Deferred.fromCoroutine(finish())

    def _stop_timers(self) -> None:
        """Ticks, patches, the room's loops and every call on its clock stop."""
        for name in list(self._beats):
            self._stop_beat(name)
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops.clear()
        self.clock.cancel_all()

    def dispose_if_empty(self) -> None:
        """Dispose the room if no one is in it (and it disposes when empty)."""
        if self.room.auto_dispose and not self._seats and self.running:
            self.dispose(LEFT_DISPOSED)

    # -- IRoomHandle -------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        full = self.is_full
        locked = self.locked_by_author or full
        return {
            "room_id": self.room_id,
            "room": self.room_type,
            "players": len(self.players),
            "max_players": self.room.max_players,
            "locked": locked,
            "full": full,
            "metadata": dict(self.metadata),
            "joinable": self.running and not self.private and not locked,
            "listed": self.running and not self.private,
        }

    @property
    def is_full(self) -> bool:
        """Every seat taken (seats still joining count: they are reserved)."""
        max_players = self.room.max_players
        return max_players is not None and len(self._seats) >= max_players

    def join(self, player: Player, options: dict[str, Any], request_id: Any) -> Any:
        if not self.running:
            raise GameError(ROOM_NOT_FOUND, f"room {self.room_id} is gone")
        if self.is_full:
            raise GameError(ROOM_FULL, f"room {self.room_id} is full")
        if self.locked_by_author:
            raise GameError(ROOM_LOCKED, f"room {self.room_id} is locked")
        seat = Seat(player)
        self._seats[player.id] = seat  # reserved; in `players` once on_auth said yes
        player.room = self.room
        player.hold()
        self._changed()

        def authorized(auth: Any) -> Any:
            if seat.phase is not SeatPhase.JOINING or not self.running:
                # Dropped, or the room closed, while on_auth ran: no on_join.
                raise GameError(
                    ROOM_NOT_FOUND, f"room {self.room_id} closed while joining", request_id
                )
            player.auth = auth
            self.players[player.id] = player
            self._changed()
            return self._guarded(seat, self.room.on_join, player, options)

        def seated(_: object = None) -> None:
            if seat.phase is not SeatPhase.JOINING or not self.running:
                # Dropped, kicked or disposed while its hooks ran.
                raise GameError(
                    ROOM_NOT_FOUND, f"room {self.room_id} closed while joining", request_id
                )
            seat.life.move(SeatPhase.SEATED)
            self._welcome(seat, request_id)
            self.log.info("{player} joined {room}", player=player, room=self)

        result = self._guarded(seat, self._authorize, player, options)
        if isinstance(result, Deferred):
            return result.addCallback(authorized).addCallback(seated)
        result = authorized(result)
        if isinstance(result, Deferred):
            return result.addCallback(seated)
        seated()
        return None

    def _authorize(self, player: Player, options: dict[str, Any]) -> Any:
        """C{on_auth}: its value, or a Deferred; any failure but a GameError is C{unauthorized}."""

        def refused(failure: Failure) -> Failure:
            if failure.check(GameError):
                return failure
            self.log.info(
                "{room}: on_auth refused {player} ({error})",
                room=self,
                player=player,
                error=type(failure.value).__name__,
            )
            return Failure(GameError(UNAUTHORIZED, "not allowed into this room"))

        try:
            result = call(self.room.on_auth, player, options)
        except Exception:
            return refused(Failure()).raiseException()
        if isinstance(result, Deferred):
            return result.addErrback(refused)
        return result

    def _guarded(self, seat: Seat, hook: Callable[..., Any], *args: Any) -> Any:
        """Run a joining hook; if it fails (now or later) the seat is undone."""

        def undo(failure: Failure) -> Failure:
            self._unseat(seat)
            return failure

        try:
            result = call(hook, *args)
        except BaseException:
            self._unseat(seat)
            raise
        if isinstance(result, Deferred):
            return result.addErrback(undo)
        return result

    def _unseat(self, seat: Seat) -> None:
        """A join was refused: undo the seat (no on_leave: it never joined)."""
        if self._seats.get(seat.player.id) is seat:
            self._remove(seat)
            self._changed()
        self.dispose_if_empty()

    def dispatch(self, player: Player, message: Message) -> Any:
        name = message["action"]
        spec = self._actions.get(name)
        if spec is None:
            raise GameError(
                UNKNOWN_ACTION, f"{self.room_type} has no action {name!r}", message.get("id")
            )
        if spec.rate is not None:
            self._check_rate(player, spec)
        kwargs = spec.arguments_of(message)
        handler = getattr(self.room, spec.method_name)
        started = self._stopwatch()
        try:
            return call(handler, player, **kwargs)
        finally:
            held = self._stopwatch() - started
            if held > SLOW_CALL:
                self._slow(f"action {name!r}", held)

    def _check_rate(self, player: Player, spec: ActionSpec) -> None:
        seat = self._seats.get(player.id)
        if seat is None:
            return
        assert spec.rate is not None
        now = self.clock.seconds()
        bucket = seat.buckets.get(spec.name)
        if bucket is None:
            bucket = seat.buckets[spec.name] = TokenBucket(*spec.rate, now)
        if not bucket.take(now):
            raise GameError(
                RATE_LIMITED, f"{spec.name}: at most {spec.rate[0]:g} per second"
            )

    def _slow(self, what: str, held: float) -> None:
        self.log.warn(
            "{room}: {what} held the reactor for {ms:.0f} ms",
            room=self,
            what=what,
            ms=held * 1000,
        )

    def drop(self, player: Player, hold: float = 0.0) -> None:
        seat = self._seats.get(player.id)
        if seat is None or seat.player is not player:
            return
        if seat.phase is SeatPhase.JOINING:
            self.leave(player, LEFT_DISCONNECT)  # never joined: no seat to hold
            return
        try:
            hold_for = self.room.on_drop(player)
        except Exception:
            self.log.failure("{room}.on_drop failed for {player}", room=self, player=player)
            hold_for = 0
        hold_for = max(hold_for or 0, hold)
        if not hold_for or hold_for <= 0 or not self.running:
            self.leave(player, LEFT_DISCONNECT)
            return
        seat.life.move(SeatPhase.DROPPED)
        self.sync.unsubscribe(player)
        self._unsynced.pop(player.id, None)  # a reconnect sends a full state anyway
        player.hold(self.room.max_held_messages)
        seat.hold_timer = self.clock.callLater(hold_for, self._hold_expired, seat)
        self._notify_watchers()

    def _hold_expired(self, seat: Seat) -> None:
        seat.hold_timer = None
        if self._seats.get(seat.player.id) is seat and seat.phase is SeatPhase.DROPPED:
            self.leave(seat.player, LEFT_DISCONNECT)

    def reconnect(
        self, player_id: str, secret: str, link: IPlayerLink, request_id: Any, user: Any
    ) -> Player:
        seat = self._seats.get(player_id)
        if (
            seat is None
            or seat.phase not in (SeatPhase.SEATED, SeatPhase.DROPPED)
            or not hmac.compare_digest(seat.token.encode(), secret.encode())
        ):
            raise GameError(INVALID_TOKEN, "reconnect: the token is unknown or expired")
        player = seat.player
        if user is not None and player.user is not None and user != player.user:
            raise GameError(UNAUTHORIZED, "reconnect: the seat belongs to another user")
        previous = player.link
        if previous is not None:
            # The old connection is still open (not noticed dead yet): replace it.
            player.link = None
            previous.close(REPLACED, "the player reconnected elsewhere")
        player.link = link
        link.player = player
        seat.cancel_hold()
        if seat.phase is SeatPhase.DROPPED:
            seat.life.move(SeatPhase.SEATED)
        else:
            player.hold()  # SEATED: what follows waits for the new joined
        self._welcome(seat, request_id)
        self.log.info("{player} reconnected to {room}", player=player, room=self)
        self._notify_watchers()
        try:
            self.room.on_reconnect(player)
        except Exception:
            self.log.failure("{room}.on_reconnect failed for {player}", room=self, player=player)
        return player

    def leave(self, player: Player, reason: str) -> Deferred[None]:
        seat = self._seats.get(player.id)
        if seat is None or seat.player is not player:
            return succeed(None)
        had_joined = self._remove(seat)
        self._changed()
        if not had_joined:
            # Gone before its hooks finished: it never joined, so no on_leave.
            self.dispose_if_empty()
            return succeed(None)
        done = self._hook(self.room.on_leave, player, reason)
        done.addCallback(lambda _: self.dispose_if_empty())
        return done

    def resync(self, player: Player, request_id: Any) -> None:
        if self.room.state is None:
            raise GameError(NO_STATE, f"{self.room_type} has no synchronized state")
        self._send_full_state(player, request_id)

    # -- seats -----------------------------------------------------------------

    def seated_ids(self) -> list[str]:
        """The players holding a seat (seated, or dropped and held): what a directory records."""
        held = (SeatPhase.SEATED, SeatPhase.DROPPED)
        return [pid for pid, seat in self._seats.items() if seat.phase in held]

    def seat_of(self, player: Player) -> Seat | None:
        seat = self._seats.get(player.id)
        return seat if seat is not None and seat.player is player else None

    def _remove(self, seat: Seat) -> bool:
        """
        Take a seat away: no player, no messages held, no token, no view.
        Whether the player had joined (so C{on_leave} is due).
        """
        player = seat.player
        had_joined = seat.phase in (SeatPhase.SEATED, SeatPhase.DROPPED)
        seat.life.move(SeatPhase.GONE)
        seat.cancel_hold()
        del self._seats[player.id]
        self.players.pop(player.id, None)
        self._unsynced.pop(player.id, None)
        player.room = None
        player.discard_held()
        self.sync.unsubscribe(player)
        self._directory.unseat(player.id, self.room_id)
        if self.saver is not None and had_joined:
            self.saver.soon()
        return had_joined

    def _welcome(self, seat: Seat, request_id: Any) -> None:
        """C{joined} with a fresh token, the full state, then what was held."""
        player = seat.player
        seat.token = secrets.token_urlsafe(18)  # 144 bits
        self._directory.seat(player.id, self.room_id)
        if self.saver is not None:
            self.saver.soon()  # the saved room must know the new token
        reply: Message = {
            "action": "joined",
            "room": self.room_type,
            "room_id": self.room_id,
            "player_id": player.id,
            "players": list(self.players),
            "token": f"{player.id}.{seat.token}",
        }
        if request_id is not None:
            reply["id"] = request_id
        joined = encode(reply)
        try:
            state = self._full_state(player)
        except Exception:
            self.log.failure(
                "{room}: the state cannot be sent to {player}", room=self, player=player
            )
            player.release(joined)
            self._metrics.error(INTERNAL_ERROR)
            player.send(error_message(INTERNAL_ERROR, "the room's state cannot be sent"))
            return
        if state is None:
            self._unsynced[player.id] = player
            player.release(joined)
        else:
            player.release(joined, state)

    # -- what the Room's public methods do -----------------------------------------

    def broadcast(self, message: Mapping[str, Any], exclude: Player | Iterable[Player]) -> None:
        data = encode(message)
        if not exclude:
            for player in self.players.values():
                player.send_encoded(data)
            return
        skip = {exclude.id} if isinstance(exclude, Player) else {p.id for p in exclude}
        for player in self.players.values():
            if player.id not in skip:
                player.send_encoded(data)

    def kick(self, player: Player, reason: str) -> None:
        if self.seat_of(player) is not None:
            player.send(left_message(self.room_id, reason))
            self.leave(player, LEFT_KICKED)

    def set_locked(self, locked: bool) -> None:
        if self.locked_by_author != locked:
            self.locked_by_author = locked
            self._changed()

    def set_private(self, private: bool) -> None:
        if self.private != private:
            self.private = private
            self._changed()

    def set_metadata(self, metadata: Mapping[str, Any]) -> None:
        self.metadata.update(metadata)
        self._changed()

    def _changed(self) -> None:
        """Tell the directory the listing entry changed."""
        self._directory.changed(self)
        self._notify_watchers()

    def watch(self, watcher: Callable[[], None]) -> Callable[[], None]:
        """
        Call C{watcher} after whatever an operator may see change (seats,
        lock, metadata, each patch beat, the disposal): the admin API's
        live stream. Returns the function that stops it.
        """
        self._watchers.append(watcher)

        def unwatch() -> None:
            if watcher in self._watchers:
                self._watchers.remove(watcher)

        return unwatch

    def _notify_watchers(self) -> None:
        for watcher in list(self._watchers):
            try:
                watcher()
            except Exception:
                self.log.failure("{room}: a watcher failed", room=self)

    def every(
        self, interval: float, func: Callable[..., Any], args: Any, kwargs: Any
    ) -> LoopingCall:
        def tick() -> None:
            try:
                func(*args, **kwargs)
            except Exception:
                self.log.failure("{room} timer {func!r} failed", room=self, func=func)

        loop = LoopingCall(tick)
        loop.clock = self.clock
        loop.start(interval, now=False)
        self._loops.append(loop)
        return loop

    # -- ticks and patches -------------------------------------------------------

    def set_tick_rate(self, rate: float | None) -> None:
        self._stop_beat("tick")
        self.tick_rate = rate
        if rate and self.running:
            self._last_tick = self.clock.seconds()
            self._beat("tick", 1.0 / rate, self._tick, phase=0)

    def set_patch_rate(self, seconds: float | None) -> None:
        self._stop_beat("patch")
        self.patch_rate = seconds
        if seconds and self.running:
            self._beat("patch", seconds, self._patch_beat, phase=1)

    def _beat(
        self, name: str, interval: float, beat: Callable[[int], None], phase: int
    ) -> None:
        self._stop_beat(name)
        metronome = self._metronome(interval)
        metronome.add((self, name), beat, phase)
        self._beats[name] = metronome

    def _stop_beat(self, name: str) -> None:
        metronome = self._beats.pop(name, None)
        if metronome is not None:
            metronome.remove((self, name))

    def _tick(self, count: int) -> None:
        now = self.clock.seconds()
        dt, self._last_tick = now - self._last_tick, now
        self.tick_overruns += count - 1
        self._metrics.tick_overruns += count - 1
        self.ticks += 1
        started = self._stopwatch()
        try:
            self.room.on_tick(dt)
        except Exception:
            self._tick_failures += 1
            self.log.failure(
                "{room}.on_tick failed ({count} in a row)", room=self, count=self._tick_failures
            )
            if self._tick_failures >= MAX_TICK_FAILURES:
                self.log.error(
                    "{room}: on_tick failed {count} times in a row, disposing the room",
                    room=self,
                    count=self._tick_failures,
                )
                self.dispose(LEFT_ROOM_ERROR)
            return
        finally:
            held = self._stopwatch() - started
            self._metrics.tick_seconds.observe(held)
            if held > SLOW_CALL:
                self._slow("on_tick", held)
        self._tick_failures = 0

    def _patch_beat(self, count: int) -> None:
        self.send_patches()

    def send_patches(self) -> None:
        state = self.room.state
        if state is None:
            return
        try:
            if self._unsynced:
                # The room set its state after these players joined: start them off.
                unsynced, self._unsynced = self._unsynced, {}
                for player in unsynced.values():
                    self._send_full_state(player)
            self.sync.patch(state)
        except Exception:
            self.log.failure("{room}: sending the state failed", room=self)
        if self._watchers:
            self._notify_watchers()

    def refresh_view(self, player: Player) -> None:
        if self.sync.is_subscribed(player) and self.sync.key_of(player) != self._view_key(player):
            self._send_full_state(player)

    def _view_key(self, player: Player) -> Hashable:
        return player.id if isinstance(self.sync, InterestSync) else self.room.view_key(player)

    def interest_sync(self) -> InterestSync:
        """The area-of-interest sync of a room with an C{interest}."""
        if not isinstance(self.sync, InterestSync):
            raise TypeError(f"{type(self.room).__qualname__} has no interest (Room.interest)")
        return self.sync

    def _view_of(self, key: Hashable, tree: Any) -> Any:
        return self.room.view_state(key, tree)

    def _full_state(self, player: Player, request_id: Any = None) -> bytes | None:
        """Subscribe the player to its view: the encoded full state, if any."""
        state = self.room.state
        if state is None:
            return None
        return self.sync.subscribe(player, self._view_key(player), state, request_id)

    def _send_full_state(self, player: Player, request_id: Any = None) -> None:
        data = self._full_state(player, request_id)
        if data is not None:
            player.send_encoded(data)

    # -- hooks -------------------------------------------------------------------

    def _hook(self, hook: Callable[..., Any], *args: Any) -> Deferred[None]:
        """Run a lifecycle hook whose failure is logged (with the room and player), never raised."""
        player = next((a for a in args if isinstance(a, Player)), None)
        about = "" if player is None else f" for {player!r}"

        def failed(failure: Failure) -> None:
            self.log.failure(
                "{room}.{hook} failed{about}", failure, room=self, hook=hook.__name__, about=about
            )

        try:
            result = call(hook, *args)
        except Exception:
            self.log.failure(
                "{room}.{hook} failed{about}", room=self, hook=hook.__name__, about=about
            )
            result = None
        if isinstance(result, Deferred):
            return result.addCallbacks(lambda _: None, failed)
        return succeed(None)


def _encoding_of(link: IPlayerLink | None) -> dict[str, str]:
    """A stand-in's saved C{encoding}, if it asked for one that is not JSON (the default)."""
    encoding = getattr(link, "encoding", ENCODING_JSON)
    if getattr(link, "home", None) and encoding != ENCODING_JSON:
        return {"encoding": encoding}
    return {}
