"""Room: the class game authors subclass (hooks, actions, broadcast/send, timers)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Mapping

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from gameframe._actions import ActionSpec, collect_actions
from gameframe._async import call
from gameframe._timers import RoomClock
from gameframe.codec import (
    ROOM_FULL,
    ROOM_LOCKED,
    ROOM_NOT_FOUND,
    UNKNOWN_ACTION,
    GameError,
    encode,
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

    What a room has once it runs: C{room_id}, C{room_type}, C{clock} (the
    injected clock; everything scheduled on it is cancelled on dispose),
    C{players} (by player id), C{metadata} (shown in C{list}), C{private}
    (not listed, joinable by id) and C{options} (as created).
    """

    max_players: ClassVar[int | None] = None
    auto_dispose: ClassVar[bool] = True
    filter_by: ClassVar[tuple[str, ...]] = ()

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

    # -- what authors call -------------------------------------------------

    def broadcast(
        self, message: Mapping[str, Any], exclude: Player | Iterable[Player] = ()
    ) -> None:
        """Send one message to every player: encoded once, the same bytes to all."""
        data = encode(message)
        if isinstance(exclude, Player):
            exclude = (exclude,)
        skip = {p.id for p in exclude}
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
        return loop

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
        try:
            result = call(self.on_join, player, options)
        except BaseException:
            self._unseat(player)
            raise
        if isinstance(result, Deferred):

            def refused(failure: Any) -> Any:
                self._unseat(player)
                return failure

            result.addErrback(refused)
        return result

    def _welcome(self, player: Player, joined: bytes) -> None:
        """Send the player its C{joined} reply, then what was held for it."""
        player.release(joined)

    def _unseat(self, player: Player) -> None:
        if self.players.get(player.id) is player:
            del self.players[player.id]
        if player.room is self:
            player.room = None
        player.discard_held()
        self._dispose_if_empty()

    def _leave(self, player: Player, reason: str) -> Deferred[None]:
        """Remove a player and run C{on_leave}; the Deferred fires when done."""
        if self.players.get(player.id) is not player:
            return succeed(None)
        del self.players[player.id]
        player.room = None
        player.discard_held()
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
        leaving = [
            self._hook(self.on_leave, p, reason) for p in list(self.players.values())
        ]
        for player in list(self.players.values()):
            player.send({"action": "left", "room_id": self.room_id, "reason": reason})
            player.room = None
            player.discard_held()
        self.players.clear()
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
