"""Room: the class game authors subclass (hooks, actions, broadcast/send, state, timers)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ClassVar, Hashable, Iterable, Mapping

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from gameframe._actions import register_actions
from gameframe._lifecycle import RoomPhase
from gameframe._timers import RoomClock
from gameframe.interest import Interest
from gameframe.jsonpatch import to_tree
from gameframe.player import Player
from gameframe.vocabulary import LEFT_DISPOSED, LEFT_KICKED

if TYPE_CHECKING:
    from gameframe._host import RoomHost
    from gameframe.store.base import IPlayerStorage


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
    @cvar snapshot_interval: with a room store (C{--store}), seconds between
        saves of the room (0: only when the server stops; it is also saved
        soon after every join, reconnect and leave).
    @cvar snapshot_version: the shape of what L{snapshot} returns; raise it
        when the shape changes, and L{migrate} gets older snapshots.
    @cvar interest: an area of interest (L{gameframe.interest.Interest}):
        each player sees, of the entities in one collection of the state,
        only those near the entity it follows (L{follow}). L{None}: every
        player sees what L{view_state} gives (by default the whole state).

    What a room has once it runs: C{room_id}, C{room_type}, C{clock} (the
    injected clock; everything scheduled on it is cancelled on dispose),
    C{players} (by player id, read-only), C{metadata} (shown in C{list},
    read-only: change it with L{set_metadata}), C{private} (not listed,
    joinable by id), C{options} (as created), C{state} (the synchronized
    state; L{None} until the room sets it).

    Every other attribute name is yours: the framework keeps its engine
    (seats, tokens, timers, sync) in an object of its own, out of this
    instance's namespace.
    """

    max_players: ClassVar[int | None] = None
    auto_dispose: ClassVar[bool] = True
    filter_by: ClassVar[tuple[str, ...]] = ()
    tick_rate: ClassVar[float | None] = None
    patch_rate: ClassVar[float | None] = 0.05
    reconnect_timeout: ClassVar[float] = 0
    max_held_messages: ClassVar[int] = 100
    snapshot_interval: ClassVar[float] = 5.0
    snapshot_version: ClassVar[int] = 1
    interest: ClassVar[Interest | None] = None

    log = Logger()
    state: Any = None

    # The engine, set by the framework before __init__ runs. Name-mangled
    # (_Room__host), so an author's `self._host` is the author's own.
    __host: RoomHost

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        register_actions(cls)
        if cls.interest is not None and (
            cls.view_key is not Room.view_key or cls.view_state is not Room.view_state
        ):
            raise TypeError(
                f"{cls.__qualname__} has an interest: each player's view is its area,"
                " so it cannot also define view_key or view_state"
            )

    def __init__(self) -> None:
        """Rooms are made by the framework; an author's __init__ takes no arguments."""

    # -- what the room is ----------------------------------------------------

    @property
    def room_id(self) -> str:
        return self.__host.room_id

    @property
    def room_type(self) -> str:
        return self.__host.room_type

    @property
    def options(self) -> dict[str, Any]:
        return self.__host.options

    @property
    def clock(self) -> RoomClock:
        return self.__host.clock

    @property
    def storage(self) -> IPlayerStorage:
        """
        Player storage (profiles, inventories, progress, ratings): versioned
        objects by owner, collection and key, kept in the server's store
        (in memory without C{--store}). See L{IPlayerStorage}.
        """
        return self.__host.storage

    @property
    def players(self) -> Mapping[str, Player]:
        """
        The players in the room, by id: seated, dropped with their seat held,
        and one whose C{on_join} is running (not one still in C{on_auth}).
        """
        return self.__host.players_view

    @property
    def metadata(self) -> Mapping[str, Any]:
        """What clients see in C{list}; change it with L{set_metadata}."""
        return self.__host.metadata_view

    @property
    def private(self) -> bool:
        """A private room is not listed nor matched, but joinable by id."""
        return self.__host.private

    @private.setter
    def private(self, value: bool) -> None:
        self.__host.set_private(bool(value))

    @property
    def locked(self) -> bool:
        """Locked by the author, or full."""
        return self.__host.locked_by_author or self.__host.is_full

    @property
    def is_full(self) -> bool:
        return self.__host.is_full

    @property
    def disposed(self) -> bool:
        """Whether the room is going away or gone."""
        return self.__host.phase in (RoomPhase.DISPOSING, RoomPhase.DISPOSED)

    # -- hooks for authors -------------------------------------------------

    def on_create(self, options: dict[str, Any]) -> Any:
        """The room was created with C{options}; set it up (may be async)."""

    def on_auth(self, player: Player, options: dict[str, Any]) -> Any:
        """
        May C{player} join? Runs before L{on_join} on every join (may be
        async). Its return value is kept as C{player.auth}; raise (or fail)
        to refuse: the client gets C{unauthorized}, or the code of a
        L{GameError} raised here. C{player.user} holds the server-wide
        identity from C{authenticate}, if any.
        """
        return None

    def on_join(self, player: Player, options: dict[str, Any]) -> Any:
        """
        C{player} is joining; raise L{GameError} to refuse it (may be async).

        Messages sent to the player here reach it after its C{joined} reply.
        """

    def on_leave(self, player: Player, reason: str) -> Any:
        """
        C{player} left: C{reason} is C{"leave"}, C{"disconnect"}, C{"kicked"},
        C{"disposed"}, C{"shutdown"} or C{"room_error"} (may be async).
        """

    def on_shutdown(self) -> Any:
        """
        The server is stopping (SIGTERM/SIGINT): finish up, e.g. save results
        (may be async; bounded by C{--shutdown-timeout}). The players are
        still here; after it they leave (reason C{"shutdown"}), or, with a
        room store (C{--store}), the room is saved with their seats and they
        are told to come back (C{disconnect} with C{"retry": true}).
        """

    def on_dispose(self) -> Any:
        """The room is going away; timers are already cancelled (may be async)."""

    def on_tick(self, dt: float) -> None:
        """
        One simulation step, C{dt} seconds after the previous one. An
        exception is logged and the room goes on; after 10 in a row the room
        is disposed (its players get C{left} with reason C{"room_error"}).
        """

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

    def snapshot(self) -> Any:
        """
        What to save of the room (with a room store): a value JSON can hold.
        By default the state as a plain tree (as clients see it), the
        metadata, and whether the room is locked or private. The engine saves
        the rest itself: the options, the seats (player ids, identities,
        C{player.data}, tokens) and the state streams' C{seq}.

        Override it (and L{restore}) to keep what lives outside C{state}, or
        fields whose names start with C{_} (a plain tree leaves them out).
        """
        state = self.state
        return {
            "state": None if state is None else to_tree(state),
            "metadata": dict(self.metadata),
            "locked": self.__host.locked_by_author,
            "private": self.private,
        }

    def restore(self, snapshot: Any) -> None:
        """
        Bring the room back from what L{snapshot} returned, after a restart
        or on another node. It runs after C{on_create} (with the options the
        room was created with) and before any player is back; the saved
        seats are held for their players' C{reconnect}.

        By default it sets C{state} back to the saved plain tree and restores
        the metadata, lock and privacy. A room whose state is made of attrs
        classes (or dataclasses) rebuilds them here, e.g.::

            def restore(self, snapshot):
                super().restore(snapshot)
                self.state = ArenaState(
                    players={pid: Avatar(**a) for pid, a in snapshot["state"]["players"].items()}
                )

        Timers the room had (C{every}, C{clock.callLater}) are not saved:
        start them again here.
        """
        self.state = snapshot.get("state")
        metadata = snapshot.get("metadata")
        if metadata:
            self.set_metadata(**metadata)
        if snapshot.get("locked"):
            self.lock()
        self.private = bool(snapshot.get("private", False))

    def migrate(self, snapshot: Any, version: int) -> Any:
        """
        Turn a snapshot saved by an older release (its C{snapshot_version}
        was C{version}) into the current shape, before L{restore} gets it.
        By default it is returned as it is.
        """
        return snapshot

    # -- what authors call -------------------------------------------------

    def broadcast(
        self, message: Mapping[str, Any], exclude: Player | Iterable[Player] = ()
    ) -> None:
        """Send one message to every player: encoded once, the same bytes to all."""
        self.__host.broadcast(message, exclude)

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
        return self.__host.every(interval, func, args, kwargs)

    def send_patches(self) -> None:
        """Send the state's changes now instead of waiting for the patch clock."""
        self.__host.send_patches()

    def refresh_view(self, player: Player) -> None:
        """
        Recompute C{player}'s L{view_key} (after a team change, say); if it
        changed, the player gets the full state of its new view.
        """
        self.__host.refresh_view(player)

    def follow(self, player: Player, entity: Hashable) -> None:
        """
        With an L{interest}: from the next patch, C{player} sees what is
        near C{entity} (a key of the interest's collection). By default a
        player follows the entity whose key is its player id; while what it
        follows is not in the collection (or has no C{x} and C{y}), it sees
        none of the collection.
        """
        self.__host.interest_sync().follow(player, entity)

    def visible_to(self, player: Player) -> frozenset[str]:
        """With an L{interest}: the ids of the entities C{player} saw at its last patch."""
        return self.__host.interest_sync().visible_to(player)

    def set_tick_rate(self, rate: float | None) -> None:
        """Change the simulation rate (ticks per second; L{None} stops it)."""
        self.__host.set_tick_rate(rate)

    def set_patch_rate(self, seconds: float | None) -> None:
        """Change the time between state patches (L{None}: only L{send_patches})."""
        self.__host.set_patch_rate(seconds)

    def lock(self) -> None:
        """Take the room out of matchmaking (C{join} by id is refused too)."""
        self.__host.set_locked(True)

    def unlock(self) -> None:
        """Put the room back into matchmaking."""
        self.__host.set_locked(False)

    def set_metadata(self, **metadata: Any) -> None:
        """Update the metadata clients see in C{list}."""
        self.__host.set_metadata(metadata)

    def kick(self, player: Player, reason: str = LEFT_KICKED) -> None:
        """Take a player out of the room; it receives C{left} with the reason."""
        self.__host.kick(player, reason)

    def dispose(self) -> Deferred[None]:
        """Close the room: every player leaves (reason C{"disposed"})."""
        return self.__host.dispose(LEFT_DISPOSED)

    def __repr__(self) -> str:
        try:
            return f"<{type(self).__name__} {self.__host.room_id}>"
        except AttributeError:
            return f"<{type(self).__name__} (not running)>"
