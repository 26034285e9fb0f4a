"""Room: the class game authors subclass (hooks, actions, broadcast/send, timers)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ClassVar, Hashable, Iterable, Mapping

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from gameframe._actions import ActionSpec, collect_actions
from gameframe._async import call
from gameframe._sync import StateSync
from gameframe._timers import Metronome, RoomClock
from gameframe.codec import (
    INTERNAL_ERROR,
    ROOM_FULL,
    ROOM_LOCKED,
    ROOM_NOT_FOUND,
    UNKNOWN_ACTION,
    GameError,
    encode,
    error_message,
)
from gameframe.player import Player

if TYPE_CHECKING:
    from gameframe.service import RoomService


class Room:
    """
    One running game. Subclass it, declare actions with L{action}, and
    override the hooks you need.

    Class attributes an author sets:

    @cvar max_players: seats in the room (L{None}: no limit). A full room
        is locked for matchmaking until a seat frees up.
    @cvar auto_dispose: dispose the room when its last player leaves.
    @cvar filter_by: option names that C{join_or_create} must match exactly
        to put a player in an existing room (like a game mode or a map).
    @cvar tick_rate: simulation ticks per second (L{None}: no simulation);
        L{on_tick} runs at this rate from creation to disposal.
    @cvar patch_rate: seconds between state patches (L{None}: only when the
        room calls L{send_patches}).
    @cvar reconnect_timeout: seconds a dropped player's seat is held for a
        C{reconnect} (0: it leaves at once); see L{on_drop}.
    @cvar max_held_messages: messages kept for a dropped player (oldest
        dropped first).

    What a room has once it runs: C{room_id}, C{room_type}, C{clock} (the
    injected clock; everything scheduled on it is cancelled on dispose),
    C{players} (by player id), C{metadata} (shown in C{list}), C{private}
    (not listed, joinable by id), C{options} (as created), C{state} (the
    synchronized state; L{None} until the room sets it), C{ticks} and
    C{tick_overruns} (ticks run, and ticks skipped because one ran late).
    """

    max_players: ClassVar[int | None] = None
    auto_dispose: ClassVar[bool] = True
    filter_by: ClassVar[tuple[str, ...]] = ()
    tick_rate: ClassVar[float | None] = None
    patch_rate: ClassVar[float | None] = 0.05
    reconnect_timeout: ClassVar[float] = 0
    max_held_messages: ClassVar[int] = 100

    log = Logger()
    _actions: ClassVar[dict[str, ActionSpec]] = {}

    room_id: str
    room_type: str
    clock: RoomClock
    options: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._actions = collect_actions(cls)

    def __init__(self) -> None:
        self.players: dict[str, Player] = {}
        self.metadata: dict[str, Any] = {}
        self.private = False
        self._locked = False
        self._ready = False
        self._disposed = False
        self._service: RoomService | None = None
        self.state: Any = None
        self.ticks = 0
        self.tick_overruns = 0
        self._sync = StateSync(self._view_of)
        self._drop_timers: dict[str, IDelayedCall] = {}
        self._beats: dict[str, Metronome] = {}  # by name; left on dispose
        self._unsynced: dict[str, Player] = {}  # joined before there was a state
        self._joining: set[str] = set()  # seated, on_join still running
        self._loops: list[LoopingCall] = []  # stopped on dispose
        self._last_tick = 0.0

    # -- hooks for authors -------------------------------------------------

    def on_create(self, options: dict[str, Any]) -> Any:
        """The room was created with C{options}; set it up (may be async)."""

    def on_join(self, player: Player, options: dict[str, Any]) -> Any:
        """
        C{player} is joining; raise L{GameError} to refuse it (may be async).

        Messages sent to the player here reach it after its C{joined} reply.
        """

    def on_leave(self, player: Player, reason: str) -> Any:
        """
        C{player} left: C{reason} is C{"leave"}, C{"disconnect"}, C{"kicked"},
        C{"disposed"} or C{"shutdown"} (may be async).
        """

    def on_dispose(self) -> Any:
        """The room is going away; timers are already cancelled (may be async)."""

    def on_tick(self, dt: float) -> None:
        """One simulation step, C{dt} seconds after the previous one."""

    def on_drop(self, player: Player) -> float:
        """
        C{player}'s connection dropped: return how many seconds to hold its
        seat for a C{reconnect} (0: it leaves now). Defaults to
        C{reconnect_timeout}.
        """
        return self.reconnect_timeout

    def on_reconnect(self, player: Player) -> None:
        """C{player} came back on a new connection and has its seat again."""

    def view_key(self, player: Player) -> Hashable:
        """
        Which view of the state C{player} gets: players with equal keys share
        one view (and one encoding of each patch). Defaults to one view for all.
        """
        return None

    def view_state(self, key: Hashable, tree: Any) -> Any:
        """
        The part of the state (a plain JSON tree) the players of view C{key}
        see. Return a new tree (or C{tree} itself); do not mutate C{tree}.
        """
        return tree

    # -- what authors call -------------------------------------------------

    def broadcast(
        self, message: Mapping[str, Any], exclude: Player | Iterable[Player] = ()
    ) -> None:
        """Send one message to every player: encoded once, the same bytes to all."""
        data = encode(message)
        if not exclude:
            for player in self.players.values():
                player.send_encoded(data)
            return
        skip = {exclude.id} if isinstance(exclude, Player) else {p.id for p in exclude}
        for player in self.players.values():
            if player.id not in skip:
                player.send_encoded(data)

    def send(self, player: Player, message: Mapping[str, Any]) -> None:
        """Send one message to one player."""
        player.send(message)

    def every(
        self, interval: float, func: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> LoopingCall:
        """
        Call C{func} every C{interval} seconds on the room's clock until the
        room is disposed (or the returned C{LoopingCall} is stopped). An
        exception is logged and the loop goes on.
        """

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

    def send_patches(self) -> None:
        """Send the state's changes now instead of waiting for the patch clock."""
        if self.state is None:
            return
        if self._unsynced:
            # The room set its state after these players joined: start them off.
            unsynced, self._unsynced = self._unsynced, {}
            for player in unsynced.values():
                self._send_full_state(player)
        self._sync.patch(self.state)

    def refresh_view(self, player: Player) -> None:
        """
        Recompute C{player}'s L{view_key} (after a team change, say); if it
        changed, the player gets the full state of its new view.
        """
        if self._sync.is_subscribed(player) and self._sync.key_of(player) != (
            self.view_key(player)
        ):
            self._send_full_state(player)

    def set_tick_rate(self, rate: float | None) -> None:
        """Change the simulation rate (ticks per second; L{None} stops it)."""
        self._stop_beat("tick")
        self.tick_rate = rate  # type: ignore[misc]
        if rate and self._ready and not self._disposed:
            self._last_tick = self.clock.seconds()
            self._beat("tick", 1.0 / rate, self._tick, phase=0)

    def set_patch_rate(self, seconds: float | None) -> None:
        """Change the time between state patches (L{None}: only L{send_patches})."""
        self._stop_beat("patch")
        self.patch_rate = seconds  # type: ignore[misc]
        if seconds and self._ready and not self._disposed:
            self._beat("patch", seconds, lambda count: self.send_patches(), phase=1)

    def lock(self) -> None:
        """Take the room out of matchmaking (C{join} by id is refused too)."""
        self._locked = True

    def unlock(self) -> None:
        """Put the room back into matchmaking."""
        self._locked = False

    @property
    def locked(self) -> bool:
        """Locked by the author, or full."""
        return self._locked or self.is_full

    @property
    def is_full(self) -> bool:
        return self.max_players is not None and len(self.players) >= self.max_players

    def set_metadata(self, **metadata: Any) -> None:
        """Update the metadata clients see in C{list}."""
        self.metadata.update(metadata)

    def kick(self, player: Player, reason: str = "kicked") -> None:
        """Take a player out of the room; it receives C{left} with the reason."""
        if self.players.get(player.id) is player:
            player.send({"action": "left", "room_id": self.room_id, "reason": reason})
            self._leave(player, "kicked")

    def dispose(self) -> Deferred[None]:
        """Close the room: every player leaves (reason C{"disposed"})."""
        return self._dispose("disposed")

    @property
    def disposed(self) -> bool:
        return self._disposed

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {getattr(self, 'room_id', '?')}>"

    # -- driven by the RoomService -----------------------------------------

    def _bind(
        self,
        service: RoomService,
        room_id: str,
        room_type: str,
        clock: IReactorTime,
        options: dict[str, Any],
    ) -> None:
        self._service = service
        self.room_id = room_id
        self.room_type = room_type
        self.clock = RoomClock(clock)
        self.options = options

    @property
    def joinable(self) -> bool:
        """Open to matchmaking: ready, public, not locked, not full."""
        return self._ready and not self._disposed and not self.private and not self.locked

    def _describe(self) -> dict[str, Any]:
        return {
            "room_id": self.room_id,
            "room": self.room_type,
            "players": len(self.players),
            "max_players": self.max_players,
            "locked": self.locked,
            "full": self.is_full,
            "metadata": self.metadata,
        }

    def _join(self, player: Player, options: dict[str, Any]) -> Any:
        """
        Seat a player and run C{on_join}: a value, or a Deferred while it runs.

        The player holds its messages until the service has sent C{joined}
        and calls L{_welcome}.
        """
        if self._disposed:
            raise GameError(ROOM_NOT_FOUND, f"room {self.room_id} is gone")
        if self.is_full:
            raise GameError(ROOM_FULL, f"room {self.room_id} is full")
        if self._locked:
            raise GameError(ROOM_LOCKED, f"room {self.room_id} is locked")
        self.players[player.id] = player
        player.room = self
        player.hold()
        self._joining.add(player.id)
        try:
            result = call(self.on_join, player, options)
        except BaseException:
            self._joining.discard(player.id)
            self._unseat(player)
            raise
        if not isinstance(result, Deferred):
            self._joining.discard(player.id)
            return result

        def joined(value: Any) -> Any:
            self._joining.discard(player.id)
            return value

        def refused(failure: Any) -> Any:
            self._joining.discard(player.id)
            self._unseat(player)
            return failure

        return result.addCallbacks(joined, refused)

    def _start(self) -> None:
        """Created: start the simulation and the patch clock."""
        self._ready = True
        self.set_tick_rate(self.tick_rate)
        self.set_patch_rate(self.patch_rate)

    def _beat(
        self, name: str, interval: float, beat: Callable[[int], None], phase: int
    ) -> None:
        """Call C{beat} every C{interval} on the service's shared metronome."""
        assert self._service is not None
        self._stop_beat(name)
        metronome = self._service._metronome(interval)
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
        self.ticks += 1
        try:
            self.on_tick(dt)
        except Exception:
            self.log.failure("{room}.on_tick failed", room=self)

    def _view_of(self, key: Hashable, tree: Any) -> Any:
        return self.view_state(key, tree)

    def _full_state(self, player: Player, request_id: Any = None) -> bytes | None:
        """Subscribe the player to its view: the encoded full state, if any."""
        if self.state is None:
            return None
        return self._sync.subscribe(player, self.view_key(player), self.state, request_id)

    def _send_full_state(self, player: Player, request_id: Any = None) -> None:
        data = self._full_state(player, request_id)
        if data is not None:
            player.send_encoded(data)

    def _welcome(self, player: Player, joined: bytes) -> None:
        """
        Send the player its C{joined} reply, its full state, then what was
        held for it.
        """
        try:
            state = self._full_state(player)
        except Exception:
            self.log.failure("{room}: the state cannot be sent to {player}", room=self, player=player)
            player.release(joined)
            player.send(error_message(INTERNAL_ERROR, "the room's state cannot be sent"))
            return
        if state is None:
            self._unsynced[player.id] = player
            player.release(joined)
        else:
            player.release(joined, state)

    def _drop(self, player: Player) -> None:
        """The player's connection dropped: hold its seat, or let it leave."""
        if player.id in self._joining:
            self._leave(player, "disconnect")  # never joined: no seat to hold
            return
        try:
            hold_for = self.on_drop(player)
        except Exception:
            self.log.failure("{room}.on_drop failed", room=self)
            hold_for = 0
        if not hold_for or hold_for <= 0 or self._disposed:
            self._leave(player, "disconnect")
            return
        self._sync.unsubscribe(player)
        self._unsynced.pop(player.id, None)  # a reconnect sends a full state anyway
        player.hold(self.max_held_messages)
        self._drop_timers[player.id] = self.clock.callLater(
            hold_for, self._drop_expired, player
        )

    def _drop_expired(self, player: Player) -> None:
        self._drop_timers.pop(player.id, None)
        if self.players.get(player.id) is player and player.link is None:
            self._leave(player, "disconnect")

    def _is_held(self, player: Player) -> bool:
        return player.id in self._drop_timers

    def _reconnect(self, player: Player, joined: bytes) -> None:
        """A held player is back: C{joined}, a full state, then what it missed."""
        timer = self._drop_timers.pop(player.id, None)
        if timer is not None and timer.active():
            timer.cancel()
        self._welcome(player, joined)
        try:
            self.on_reconnect(player)
        except Exception:
            self.log.failure("{room}.on_reconnect failed", room=self)

    def _unseat(self, player: Player) -> None:
        """A join was refused: undo the seat."""
        if self.players.get(player.id) is player:
            self._remove(player)
        self._dispose_if_empty()

    def _remove(self, player: Player) -> None:
        """Take a seated player out: no seat, no messages held, no token, no view."""
        del self.players[player.id]
        self._unsynced.pop(player.id, None)
        player.room = None
        player.discard_held()
        self._sync.unsubscribe(player)
        if self._service is not None:
            self._service._revoke(player)
        timer = self._drop_timers.pop(player.id, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _leave(self, player: Player, reason: str) -> Deferred[None]:
        """Remove a player and run C{on_leave}; the Deferred fires when done."""
        if self.players.get(player.id) is not player:
            return succeed(None)
        self._remove(player)
        if player.id in self._joining:
            # Gone before on_join finished: it never joined, so no on_leave.
            self._joining.discard(player.id)
            self._dispose_if_empty()
            return succeed(None)
        done = self._hook(self.on_leave, player, reason)
        done.addCallback(lambda _: self._dispose_if_empty())
        return done

    def _dispose_if_empty(self) -> None:
        if self.auto_dispose and not self.players and self._ready:
            self._dispose("disposed")

    def _dispose(self, reason: str) -> Deferred[None]:
        if self._disposed:
            return succeed(None)
        self._disposed = True
        players = list(self.players.values())
        for player in players:
            player.send({"action": "left", "room_id": self.room_id, "reason": reason})
            self._remove(player)
        leaving = [
            self._hook(self.on_leave, player, reason)
            for player in players
            if player.id not in self._joining
        ]
        self._joining.clear()
        for name in list(self._beats):
            self._stop_beat(name)
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops.clear()
        self.clock.cancel_all()
        if self._service is not None:
            self._service._forget(self)

        async def finish() -> None:
            for done in leaving:
                await done
            await self._hook(self.on_dispose)

        return Deferred.fromCoroutine(finish())

    def _hook(self, hook: Callable[..., Any], *args: Any) -> Deferred[None]:
        """Run a lifecycle hook whose failure is logged, never raised."""

        def failed(failure: Any) -> None:
            self.log.failure(
                "{room}.{hook} failed", failure, room=self, hook=hook.__name__
            )

        try:
            result = call(hook, *args)
        except Exception:
            self.log.failure("{room}.{hook} failed", room=self, hook=hook.__name__)
            result = None
        if isinstance(result, Deferred):
            return result.addCallbacks(lambda _: None, failed)
        return succeed(None)

    def _dispatch(self, player: Player, message: dict[str, Any]) -> Any:
        """Run the handler of a room action: its result, or a Deferred of it."""
        spec = self._actions.get(message["action"])
        if spec is None:
            raise GameError(
                UNKNOWN_ACTION,
                f"{self.room_type} has no action {message['action']!r}",
                message.get("id"),
            )
        kwargs = spec.arguments_of(message)
        return call(getattr(self, spec.method_name), player, **kwargs)
