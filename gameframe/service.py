"""RoomService: room types, connections, lobby actions, matchmaking via the directory, routing, shutdown order."""

from __future__ import annotations

import secrets
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Mapping

import orjson
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from gameframe._async import call, settled
from gameframe._counters import Metrics
from gameframe._host import RoomHost, Stopwatch
from gameframe._saving import RoomSaver
from gameframe._timers import Metronome
from gameframe._version import __version__
from gameframe.codec import GameError, encode
from gameframe.directory import LocalDirectory
from gameframe.interfaces import IPlayerLink, IRoomDirectory, IRoomHandle
from gameframe.player import Player
from gameframe.room import Room
from gameframe.store.base import IPlayerStorage, IRoomStore, SavedRoom
from gameframe.store.memory import MemoryPlayerStorage
from gameframe.vocabulary import (
    ALREADY_IN_ROOM,
    FORWARDED_LOBBY_ACTIONS,
    AUTHENTICATE,
    BAD_ARGUMENTS,
    ENCODING_JSON,
    ENCODINGS,
    BEFORE_AUTH_ACTIONS,
    CREATE,
    INTERNAL_ERROR,
    INVALID_TOKEN,
    JOIN,
    JOIN_OR_CREATE,
    JOINING_ACTIONS,
    LEAVE,
    LEFT_LEAVE,
    LEFT_SHUTDOWN,
    LIST,
    NOT_IN_ROOM,
    PING,
    RECONNECT,
    ROOM_NOT_FOUND,
    SERVER_SHUTDOWN,
    SYNC,
    TOO_MANY_REQUESTS,
    UNAUTHORIZED,
    UNKNOWN_ROOM_TYPE,
    Message,
    error_message,
    left_message,
    pong_message,
)

if TYPE_CHECKING:
    from gameframe.cluster.node import ClusterNode

LobbyHandler = Callable[[Player, Message], Any]
Authenticator = Callable[[str], Any]

# Messages one connection may have waiting behind a request still running.
MAX_QUEUED = 1000
# Seconds a restored room holds every seat for its player's reconnect (--restore-grace).
DEFAULT_RESTORE_GRACE = 60.0

__all__ = ["MAX_QUEUED", "SERVER_SHUTDOWN", "RoomService"]


def _new_id() -> str:
    return secrets.token_urlsafe(6)


class RoomService(Service):
    """
    Holds the room types and the connected players; every player's messages
    pass through L{receive}, in order, one at a time per player. Rooms are
    found through the room directory and reached through their handles.

    @param clock: the reactor (or a C{task.Clock} in tests).
    @param room_types: room type name → Room subclass.
    @param authenticate: the server-wide C{authenticate} check: called with
        the client's token, returns the player's identity (C{player.user};
        a Deferred is fine), or raises / returns L{None} to refuse.
    @param require_auth: refuse every action but C{authenticate} and
        C{ping} until the connection has authenticated.
    @param shutdown_timeout: seconds the rooms' C{on_shutdown} and
        C{on_leave}/C{on_dispose} get, together, when the server stops.
    @param directory: where rooms are listed and found (in memory by default).
    @param stopwatch: wall-clock seconds, to log handlers and ticks that
        hold the reactor over 100 ms (injected in tests).
    @param node: this process's name in listings (C{--node}).
    @param cluster: this process's L{ClusterNode} when it is one node of a
        cluster: rooms are found, listed and placed across every node, and
        the actions of players whose room runs elsewhere are forwarded there.
    @param store: where rooms are saved (C{--store}): they are saved while
        they run, kept through a graceful stop (players get C{disconnect}
        C{server_shutdown} with C{"retry": true} instead of C{left}), and
        restored when the service starts. L{None}: nothing is saved.
    @param storage: player storage (L{Room.storage}); in memory by default.
    @param restore_grace: seconds every restored seat is held for its
        player's C{reconnect}, whatever the room's own C{on_drop} says.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        room_types: Mapping[str, type[Room]] = {},
        *,
        authenticate: Authenticator | None = None,
        require_auth: bool = False,
        shutdown_timeout: float = 10.0,
        directory: IRoomDirectory | None = None,
        stopwatch: Stopwatch = time.perf_counter,
        node: str = "local",
        cluster: ClusterNode | None = None,
        store: IRoomStore | None = None,
        storage: IPlayerStorage | None = None,
        restore_grace: float = DEFAULT_RESTORE_GRACE,
    ) -> None:
        self._clock = clock
        self._owner = f"{node}.{secrets.token_hex(4)}"
        self.store = store
        self.storage: IPlayerStorage = storage if storage is not None else MemoryPlayerStorage()
        self.restore_grace = restore_grace
        # Fires once the saved rooms are back (at once without a store).
        self.restored: Deferred[None] = Deferred()
        self._stopwatch = stopwatch
        self._authenticate = authenticate
        self._require_auth = require_auth
        self._shutdown_timeout = shutdown_timeout
        self.cluster = cluster
        if cluster is not None:
            cluster.attach(self)
            directory = cluster
        self.directory: IRoomDirectory = (
            directory if directory is not None else LocalDirectory(node)
        )
        # Players connected here whose room runs on another node (cluster only).
        self._remote: Mapping[str, Any] = {} if cluster is None else cluster.members
        self.room_types: dict[str, type[Room]] = {}
        # The node's name in the metrics (in a cluster, the ClusterNode's, which
        # stays the same when the node is fenced and rejoins under a new id).
        self.node: str = node if cluster is None else (cluster.name or node)
        # What the metrics count (gameframe.metrics reads it at scrape time).
        self.metrics = Metrics(self.room_types)
        self.players: dict[str, Player] = {}
        self._queues: dict[IPlayerLink, deque[Message | GameError]] = {}
        self._stopping = False
        self._lobby: dict[str, LobbyHandler] = {
            AUTHENTICATE: self._authenticate_player,
            PING: self._ping,
            JOIN_OR_CREATE: self._join_or_create,
            CREATE: self._create,
            JOIN: self._join_by_id,
            LEAVE: self._leave,
            LIST: self._list,
            RECONNECT: self._reconnect,
            SYNC: self._sync,
        }
        self._metronomes: dict[float, Metronome] = {}
        for name, room_class in room_types.items():
            self.define(name, room_class)

    def define(self, name: str, room_class: type[Room]) -> None:
        """Offer a room type to clients under C{name}."""
        if not (isinstance(room_class, type) and issubclass(room_class, Room)):
            raise TypeError(f"{room_class!r} is not a Room subclass")
        self.room_types[name] = room_class

    @property
    def rooms(self) -> dict[str, Room]:
        """The live rooms of this process, by room id."""
        return {
            handle.room_id: handle.room
            for handle in self.directory.rooms()
            if isinstance(handle, RoomHost)
        }

    # -- connections -------------------------------------------------------

    def connect(self, link: IPlayerLink) -> Player:
        """A connection opened: make its player and send the welcome."""
        player = Player(id=_new_id(), link=link)
        link.player = player
        if self._stopping:
            link.close(SERVER_SHUTDOWN, "the server is shutting down")
            return player
        self.players[player.id] = player
        player.send(
            {
                "action": "welcome",
                "player_id": player.id,
                "server": "gameframe",
                "version": __version__,
            }
        )
        return player

    def disconnect(
        self, player: Player, link: IPlayerLink | None = None, hold: float = 0.0
    ) -> None:
        """
        A connection closed: its player leaves its room, or the room holds
        the seat for a C{reconnect} (L{Room.on_drop}).

        @param link: the connection that closed; if the player has moved to
            another connection since, nothing happens.
        @param hold: hold its seat at least this many seconds (a cluster
            node of a player in this room is restarting with a room store).
        """
        if link is not None:
            # What it still had queued dies with it, even when a reconnect
            # moved its player to another connection already.
            self._queues.pop(link, None)
            if player.link is not link:
                return
        if player.link is not None:
            self._queues.pop(player.link, None)
        player.link = None
        self.players.pop(player.id, None)
        handle = self._handle_of(player)
        if handle is not None:
            handle.drop(player, hold)
        elif self.cluster is not None:
            self.cluster.dropped(player)

    def _handle_of(self, player: Player) -> IRoomHandle | None:
        """The room handle of the room the player is in."""
        if player.room is None:
            return None
        return self.directory.get(player.room.room_id)

    def receive(self, player: Player, message: Message | GameError) -> None:
        """
        Handle one decoded message from a player's connection, or the error
        its bad input earned. A connection's messages are handled in order:
        while one waits on a Deferred, the next ones queue (up to
        C{MAX_QUEUED}; a client that sends more is disconnected), and each is
        handled for the player the connection speaks for by then.
        """
        link = player.link
        if link is None:
            return
        queue = self._queues.get(link)
        if queue is not None:
            if len(queue) >= MAX_QUEUED:
                self._queues.pop(link, None)
                link.close(TOO_MANY_REQUESTS, "too many messages waiting for a reply")
                return
            queue.append(message)
            return
        pending = self._handle(player, message)
        if pending is not None:
            queue = self._queues[link] = deque()
            pending.addBoth(self._next, link, queue)

    def _next(self, ignored: object, link: IPlayerLink, queue: deque[Any]) -> None:
        if self._queues.get(link) is not queue:
            return  # the connection closed meanwhile
        if link.player.link is not link:
            del self._queues[link]  # its player moved to another connection meanwhile
            return
        while queue:
            pending = self._handle(link.player, queue.popleft())
            if pending is not None:
                pending.addBoth(self._next, link, queue)
                return
        del self._queues[link]

    def _handle(self, player: Player, message: Message | GameError) -> Deferred[None] | None:
        """Handle one message; a Deferred if it is still running. Never raises."""
        if isinstance(message, GameError):
            self.metrics.error(message.code)
            player.send(error_message(message.code, message.message, message.request_id))
            return None
        request_id = message.get("id")
        action = message["action"]
        try:
            if self._require_auth and player.user is None and action not in BEFORE_AUTH_ACTIONS:
                raise GameError(UNAUTHORIZED, f"{action}: authenticate first")
            if self._stopping and action in JOINING_ACTIONS:
                raise GameError(SERVER_SHUTDOWN, "the server is shutting down")
            lobby = self._lobby.get(action)
            if (
                player.room is None
                and player.id in self._remote
                and (lobby is None or action in FORWARDED_LOBBY_ACTIONS)
            ):
                # Its room runs on another node: the action goes there.
                assert self.cluster is not None
                self.cluster.forward(player, message)
                return None
            if lobby is not None:
                result = lobby(player, message)
            else:
                result = self._room_action(player, message)
        except Exception:
            self._failed(Failure(), player, request_id)
            return None
        if isinstance(result, Deferred):
            result.addErrback(self._failed, player, request_id)
            if not settled(result):
                return result
        return None

    def _room_action(self, player: Player, message: Message) -> Any:
        handle = self._handle_of(player)
        if handle is None:
            raise GameError(
                NOT_IN_ROOM,
                f"{message['action']!r} needs a room: join one first",
            )
        result = handle.dispatch(player, message)
        request_id = message.get("id")
        if request_id is None:
            return result
        if isinstance(result, Deferred):
            return result.addCallback(self._result, player, request_id)
        self._result(result, player, request_id)
        return None

    def _result(self, value: Any, player: Player, request_id: Any) -> None:
        self._reply(player, {"action": "result", "result": value}, request_id)

    def _reply(self, player: Player, message: Message, request_id: Any) -> None:
        if request_id is not None:
            message["id"] = request_id
        try:
            player.send(message)
        except TypeError:
            # A handler returned something JSON cannot hold.
            self._failed(Failure(), player, request_id)

    def _failed(self, failure: Failure, player: Player, request_id: Any) -> None:
        error = failure.value
        if isinstance(error, GameError):
            self.metrics.error(error.code)
            player.send(
                error_message(
                    error.code,
                    error.message,
                    request_id if error.request_id is None else error.request_id,
                )
            )
            return
        self.log.failure(
            "{player} in {room}: failed handling a message",
            failure,
            player=player,
            room=player.room,
        )
        self.metrics.error(INTERNAL_ERROR)
        player.send(
            error_message(INTERNAL_ERROR, "the server failed to handle that", request_id)
        )

    # -- lobby actions -----------------------------------------------------

    def _ping(self, player: Player, message: Message) -> None:
        player.send(pong_message(message))

    def _authenticate_player(self, player: Player, message: Message) -> Any:
        """Check the token with the server's C{--auth} callable: C{player.user}."""
        token = message.get("token")
        if type(token) is not str:
            raise GameError(BAD_ARGUMENTS, "authenticate: token must be a string")
        if self._authenticate is None:
            raise GameError(UNAUTHORIZED, "this server has no authentication")
        request_id = message.get("id")

        def accepted(user: Any) -> None:
            if user is None:
                raise GameError(UNAUTHORIZED, "authenticate: the token was refused")
            player.user = user
            self._reply(player, {"action": "authenticated"}, request_id)

        def refused(failure: Failure) -> None:
            if failure.check(GameError):
                failure.raiseException()
            # The reason is not logged: it may quote the secret.
            self.log.info(
                "{player} failed to authenticate ({error})",
                player=player,
                error=type(failure.value).__name__,
            )
            raise GameError(UNAUTHORIZED, "authenticate: the token was refused")

        try:
            result = call(self._authenticate, token)
        except Exception:
            refused(Failure())
        if isinstance(result, Deferred):
            return result.addCallbacks(accepted, refused)
        accepted(result)
        return None

    def _room_type_of(self, message: Message) -> str:
        name = message.get("room")
        if type(name) is not str:
            raise GameError(BAD_ARGUMENTS, f"{message['action']}: room must be a string")
        if name not in self.room_types:
            raise GameError(UNKNOWN_ROOM_TYPE, f"there is no room type {name!r}")
        return name

    @staticmethod
    def _options_of(message: Message) -> dict[str, Any]:
        options = message.get("options", {})
        if type(options) is not dict:
            raise GameError(
                BAD_ARGUMENTS, f"{message['action']}: options must be an object"
            )
        return options

    @staticmethod
    def _choose_encoding(player: Player, message: Message) -> None:
        """The state patches' encoding the joining (or reconnecting) client asked for."""
        encoding = message.get("encoding", ENCODING_JSON)
        if type(encoding) is not str or encoding not in ENCODINGS:
            raise GameError(
                BAD_ARGUMENTS,
                f"{message['action']}: encoding must be one of {', '.join(sorted(ENCODINGS))}",
            )
        link = player.link
        if link is not None and getattr(link, "encoding", ENCODING_JSON) != encoding:
            try:
                setattr(link, "encoding", encoding)  # an optional attribute of IPlayerLink
            except AttributeError:
                pass  # a link that cannot hold it: JSON Patches (clients take both)

    def _ready_to_join(self, player: Player, message: Message) -> None:
        """A player asking to join, create or reconnect: not in a room, and its encoding chosen."""
        if player.room is not None or player.id in self._remote:
            room_id = (
                player.room.room_id if player.room is not None else self._remote[player.id].room_id
            )
            raise GameError(ALREADY_IN_ROOM, f"already in room {room_id}: leave it first")
        self._choose_encoding(player, message)

    def _join_or_create(self, player: Player, message: Message) -> Any:
        name = self._room_type_of(message)
        options = self._options_of(message)
        self._ready_to_join(player, message)
        if self.cluster is not None:
            return self.cluster.join_or_create(player, name, options, message.get("id"))
        return self.join_or_create_here(player, name, options, message.get("id"))

    def join_or_create_here(
        self, player: Player, name: str, options: dict[str, Any], request_id: Any, *, new: bool = False
    ) -> Any:
        """Matchmaking among this process's rooms (C{new}: always a new room)."""
        if not new:
            filter_by = self.room_types[name].filter_by
            for handle in self.directory.joinable(name):
                if _matches(filter_by, handle, options):
                    return handle.join(player, options, request_id)
        return self._create_and_seat(player, name, options, request_id)

    def _create(self, player: Player, message: Message) -> Any:
        name = self._room_type_of(message)
        options = self._options_of(message)
        self._ready_to_join(player, message)
        if self.cluster is not None:
            return self.cluster.join_or_create(player, name, options, message.get("id"), new=True)
        return self._create_and_seat(player, name, options, message.get("id"))

    def _join_by_id(self, player: Player, message: Message) -> Any:
        room_id = message.get("room_id")
        if type(room_id) is not str:
            raise GameError(BAD_ARGUMENTS, "join: room_id must be a string")
        options = self._options_of(message)
        self._ready_to_join(player, message)
        if self.cluster is not None:
            return self.cluster.join(player, room_id, options, message.get("id"))
        handle = self.directory.get(room_id)
        if handle is None or not handle.running:
            raise GameError(ROOM_NOT_FOUND, f"there is no room {room_id!r}")
        return handle.join(player, options, message.get("id"))

    def _leave(self, player: Player, message: Message) -> Any:
        handle = self._handle_of(player)
        if handle is None:
            raise GameError(NOT_IN_ROOM, "leave: not in a room")
        self._reply(player, left_message(handle.room_id, LEFT_LEAVE), message.get("id"))
        return handle.leave(player, LEFT_LEAVE)

    def _reconnect(self, player: Player, message: Message) -> Any:
        """
        Take over a held seat with its token: the connection now speaks for
        the old player, which gets C{joined}, its full state and what it missed.
        """
        token = message.get("token")
        if type(token) is not str:
            raise GameError(BAD_ARGUMENTS, "reconnect: token must be a string")
        self._ready_to_join(player, message)
        player_id, _, secret = token.rpartition(".")
        if not (player_id and secret):
            raise GameError(INVALID_TOKEN, "reconnect: the token is unknown or expired")
        handle = self.directory.room_of(player_id)
        if handle is None and self.cluster is not None:
            # Its seat may be in a room on another node.
            return self.cluster.reconnect(player, player_id, secret, message.get("id"))
        if handle is None:
            raise GameError(INVALID_TOKEN, "reconnect: the token is unknown or expired")
        link = player.link
        assert link is not None
        back = handle.reconnect(player_id, secret, link, message.get("id"), player.user)
        # This connection's lobby player is done with.
        self.players.pop(player.id, None)
        player.link = None
        self.players[back.id] = back

    def _sync(self, player: Player, message: Message) -> None:
        """Send the full state again (a client that saw a gap in seq asks this)."""
        handle = self._handle_of(player)
        if handle is None:
            raise GameError(NOT_IN_ROOM, "sync: not in a room")
        handle.resync(player, message.get("id"))

    def _list(self, player: Player, message: Message) -> Any:
        name = message.get("room")
        if name is not None:
            name = self._room_type_of(message)
        request_id = message.get("id")

        def reply(rooms: list[Message]) -> None:
            self._reply(player, {"action": "rooms", "rooms": rooms}, request_id)

        listed = self.listing(name)
        if isinstance(listed, Deferred):
            return listed.addCallback(reply)
        reply(listed)
        return None

    def listing(self, room_type: str | None = None) -> Any:
        """
        The public rooms (of one type, or all): id, type, node, players,
        metadata. In a cluster, every node's: a Deferred of the list.
        """
        if self.cluster is not None:
            return self.cluster.room_listing(room_type)
        return self.directory.listing(room_type)

    # -- creating and seating ----------------------------------------------

    def create_room(self, name: str, options: Mapping[str, Any] = {}) -> Any:
        """
        Create a room of type C{name} (from a client's request or the server's
        own code): the Room, or a Deferred of it while C{on_create} runs.
        """
        created = self.new_host(name, options)
        if isinstance(created, Deferred):
            return created.addCallback(lambda host: host.room)
        return created.room

    def readiness(self) -> list[str]:
        """What keeps this server from taking new players now (empty: ready)."""
        problems = []
        if not self.running:
            problems.append("the room service has not started")
        if self._stopping:
            problems.append("shutting down")
        if self.cluster is not None and not self.cluster.available:
            problems.append("the cluster store (Redis) is unreachable or the lease is not held")
        return problems

    @property
    def stopping(self) -> bool:
        """Whether the server is shutting down (no new players, no new rooms)."""
        return self._stopping

    @staticmethod
    def new_room_id() -> str:
        return _new_id()

    def new_host(
        self,
        name: str,
        options: Mapping[str, Any],
        room_id: str | None = None,
        saved: SavedRoom | None = None,
        restoring: Mapping[str, Any] | None = None,
    ) -> Any:
        """
        Create a room (with a given id when the cluster placed it here, or
        back from the store when C{saved}, whose data decoded is
        C{restoring}): its running host, or a Deferred of it while
        C{on_create} runs.
        """
        host = RoomHost(
            self.room_types[name],
            room_id or _new_id(),
            name,
            dict(options),
            self._clock,
            self._metronome,
            self.directory,
            self._stopwatch,
            self.storage,
            metrics=self.metrics,
        )
        result = host.create(restoring, self.restore_grace)

        def running(_: object = None) -> RoomHost:
            if self.store is not None:
                host.saver = RoomSaver(
                    host,
                    self.store,
                    self.owner,
                    self._clock,
                    host.room.snapshot_interval,
                    version=0 if saved is None else saved.version,
                    observe=self.metrics.snapshot_saved,
                )
                host.saver.soon()
            return host

        if isinstance(result, Deferred):
            return result.addCallback(running)
        return running()

    @property
    def owner(self) -> str:
        """
        Whose rooms the room store says are this process's: in a cluster the
        node's id; else the node name and a token of this process, so a
        restarted server (same name or not) claims every room of the last run.
        """
        return self.cluster.node_id if self.cluster is not None else self._owner

    # -- saved rooms ------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        if self.store is None or self.cluster is not None:
            # In a cluster the node claims saved rooms once it is in (ClusterNode).
            self.restored.callback(None)
            return
        # One process: every saved room is this server's.
        self.restore_claimed(self.store.claim(self.owner)).chainDeferred(self.restored)

    def restore_claimed(self, claimed: Deferred[list[SavedRoom]]) -> Deferred[None]:
        """Bring back the rooms a claim on the store returned (a failed one is logged and kept)."""

        async def restore_all() -> None:
            try:
                rooms = await claimed
            except Exception:
                self.log.failure("the saved rooms cannot be read from the room store")
                return
            for saved in rooms:
                await self.restore_room(saved)

        return Deferred.fromCoroutine(restore_all())

    def restore_room(self, saved: SavedRoom) -> Deferred[None]:
        """Run one saved room again, with its id and seats; a failure is logged, the room stays saved."""

        def failed(failure: Failure) -> None:
            self.log.failure(
                "saved room {room_id} ({room_type}) cannot be restored; it stays in the store",
                failure,
                room_id=saved.room_id,
                room_type=saved.room_type,
            )

        if saved.room_type not in self.room_types:
            self.log.error(
                "saved room {room_id} is of type {room_type}, which this server does not "
                "serve; it stays in the store",
                room_id=saved.room_id,
                room_type=saved.room_type,
            )
            return succeed(None)
        try:
            restoring = orjson.loads(saved.data)
            created = self.new_host(
                saved.room_type, restoring.get("options", {}), saved.room_id, saved, restoring
            )
        except Exception:
            failed(Failure())
            return succeed(None)
        if isinstance(created, Deferred):
            return created.addCallbacks(lambda _: None, failed)
        return succeed(None)

    def _create_and_seat(
        self, player: Player, name: str, options: dict[str, Any], request_id: Any
    ) -> Any:
        created = self.new_host(name, options)
        if isinstance(created, Deferred):
            return created.addCallback(
                lambda host: self._seat_creator(player, host, options, request_id)
            )
        return self._seat_creator(player, created, options, request_id)

    def _seat_creator(
        self, player: Player, host: RoomHost, options: dict[str, Any], request_id: Any
    ) -> Any:
        if player.link is None:  # gone while the room was being created
            host.dispose_if_empty()
            return None
        return host.join(player, options, request_id)

    def _metronome(self, interval: float) -> Metronome:
        """The one timer every room beating at C{interval} shares."""
        metronome = self._metronomes.get(interval)
        if metronome is None:
            metronome = self._metronomes[interval] = Metronome(self._clock, interval)
        return metronome

    # -- shutdown ------------------------------------------------------------

    def stopService(self) -> Deferred[Any]:
        """
        Stop in order, within C{shutdown_timeout} seconds: every room's
        C{on_shutdown}, then every room is disposed (players get C{left}
        with reason C{"shutdown"}), then every connection is closed with
        C{server_shutdown}. With a room store, the rooms are saved and
        released instead of disposed (no C{left}), and the connections are
        closed with C{server_shutdown} and C{"retry": true}. Listening ports are stopped before this service
        (add them to the parent after it).
        """
        super().stopService()
        self._stopping = True
        if self.cluster is not None:
            self.cluster.drain()
        deadline = self._clock.seconds() + self._shutdown_timeout

        def hosts() -> list[RoomHost]:
            return [h for h in self.directory.rooms() if isinstance(h, RoomHost)]

        async def stop() -> None:
            await self._within(deadline, [h.shutdown() for h in hosts()], "on_shutdown")
            if self.store is not None:
                # Saved for the next run: no left; the seats and tokens stay good.
                await self._within(deadline, [h.suspend() for h in hosts()], "saving the rooms")
            else:
                await self._within(
                    deadline, [h.dispose(LEFT_SHUTDOWN) for h in hosts()], "on_leave/on_dispose"
                )
            for player in list(self.players.values()):
                if player.link is not None:
                    self._close_for_shutdown(player.link)
            # Rooms created while the first ones were going (a slow on_dispose).
            for host in hosts():
                host.dispose(LEFT_SHUTDOWN)

        return Deferred.fromCoroutine(stop())

    def _close_for_shutdown(self, link: IPlayerLink) -> None:
        if self.store is None:
            link.close(SERVER_SHUTDOWN, "the server is shutting down")
        else:
            link.close(
                SERVER_SHUTDOWN,
                "the server is restarting: reconnect with your token",
                retry=True,
            )

    def _within(self, deadline: float, waiting: list[Deferred[None]], what: str) -> Deferred[None]:
        """Fires when every Deferred has, or at the deadline (logging what was cut short)."""
        done: Deferred[None] = Deferred()
        everything = DeferredList(waiting)

        def finished(_: object) -> None:
            if timer.active():
                timer.cancel()
            if not done.called:
                done.callback(None)

        def late() -> None:
            if not done.called:
                self.log.warn(
                    "shutdown: {what} did not finish within the shutdown timeout", what=what
                )
                done.callback(None)

        timer = self._clock.callLater(max(0.0, deadline - self._clock.seconds()), late)
        everything.addBoth(finished)
        return done


def _matches(filter_by: tuple[str, ...], handle: IRoomHandle, options: Mapping[str, Any]) -> bool:
    """Whether a room was created with the same values of its filter_by options."""
    created: Mapping[str, Any] = handle.options
    return all(_same(created.get(key), options.get(key)) for key in filter_by)


def _same(a: Any, b: Any) -> bool:
    """JSON equality: 1, 1.0 and true are three different options."""
    return type(a) is type(b) and a == b
