"""RoomService: room types, live rooms, matchmaking, routing and shutdown order."""

from __future__ import annotations

import secrets
from collections import deque
from typing import Any, Callable, Mapping

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from gameframe._async import call, settled
from gameframe._timers import Metronome
from gameframe._version import __version__
from gameframe.codec import (
    ALREADY_IN_ROOM,
    BAD_ARGUMENTS,
    INTERNAL_ERROR,
    INVALID_TOKEN,
    NO_STATE,
    NOT_IN_ROOM,
    ROOM_NOT_FOUND,
    UNKNOWN_ROOM_TYPE,
    GameError,
    Message,
    encode,
    error_message,
)
from gameframe.interfaces import IPlayerLink
from gameframe.player import Player
from gameframe.room import Room

LobbyHandler = Callable[[Player, Message], Any]

# Messages one connection may have waiting behind a request still running.
MAX_QUEUED = 1000
SERVER_SHUTDOWN = "server_shutdown"
# Lobby actions refused once the server is shutting down.
_JOINING = frozenset({"join_or_create", "create", "join", "reconnect"})


def _new_id() -> str:
    return secrets.token_urlsafe(6)


class RoomService(Service):
    """
    Holds the room types and the live rooms; every player's messages pass
    through L{receive}, in order, one at a time per player.

    @param clock: the reactor (or a C{task.Clock} in tests).
    @param room_types: room type name → Room subclass.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        room_types: Mapping[str, type[Room]] = {},
        *,
        authenticate: Callable[[str], Any] | None = None,
        require_auth: bool = False,
        shutdown_timeout: float = 10.0,
    ) -> None:
        self._clock = clock
        self._authenticate = authenticate
        self._require_auth = require_auth
        self._shutdown_timeout = shutdown_timeout
        self.room_types: dict[str, type[Room]] = {}
        self.rooms: dict[str, Room] = {}
        self.players: dict[str, Player] = {}
        self._queues: dict[IPlayerLink, deque[Message | GameError]] = {}
        self._stopping = False
        self._lobby: dict[str, LobbyHandler] = {
            "join_or_create": self._join_or_create,
            "create": self._create,
            "join": self._join_by_id,
            "leave": self._leave,
            "list": self._list,
            "reconnect": self._reconnect,
            "sync": self._sync,
        }
        self._tokens: dict[str, Player] = {}
        self._metronomes: dict[float, Metronome] = {}
        for name, room_class in room_types.items():
            self.define(name, room_class)

    def define(self, name: str, room_class: type[Room]) -> None:
        """Offer a room type to clients under C{name}."""
        if not (isinstance(room_class, type) and issubclass(room_class, Room)):
            raise TypeError(f"{room_class!r} is not a Room subclass")
        self.room_types[name] = room_class

    # -- connections -------------------------------------------------------

    def connect(self, link: IPlayerLink) -> Player:
        """A connection opened: make its player and send the welcome."""
        player = Player(id=_new_id(), link=link)
        link.player = player
        if self._stopping:
            link.close("server_shutdown", "the server is shutting down")
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

    def disconnect(self, player: Player, link: IPlayerLink | None = None) -> None:
        """
        A connection closed: its player leaves its room, or the room holds
        the seat for a C{reconnect} (L{Room.on_drop}).

        @param link: the connection that closed; if the player has moved to
            another connection since, nothing happens.
        """
        if link is not None and player.link is not link:
            return
        if player.link is not None:
            self._queues.pop(player.link, None)
        player.link = None
        self.players.pop(player.id, None)
        room = player.room
        if room is not None:
            room._drop(player)
        if player.room is None:
            self._revoke(player)

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
                link.close("too_many_requests", "too many messages waiting for a reply")
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
        while queue:
            pending = self._handle(link.player, queue.popleft())
            if pending is not None:
                pending.addBoth(self._next, link, queue)
                return
        del self._queues[link]

    def _handle(self, player: Player, message: Message | GameError) -> Deferred[None] | None:
        """Handle one message; a Deferred if it is still running. Never raises."""
        if isinstance(message, GameError):
            player.send(error_message(message.code, message.message, message.request_id))
            return None
        request_id = message.get("id")
        try:
            if self._stopping and message["action"] in _JOINING:
                raise GameError(SERVER_SHUTDOWN, "the server is shutting down")
            lobby = self._lobby.get(message["action"])
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
        room = player.room
        if room is None:
            raise GameError(
                NOT_IN_ROOM,
                f"{message['action']!r} needs a room: join one first",
            )
        result = room._dispatch(player, message)
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
            player.send(
                error_message(
                    error.code,
                    error.message,
                    request_id if error.request_id is None else error.request_id,
                )
            )
            return
        self.log.failure(
            "{player} failed handling a message", failure, player=player
        )
        player.send(
            error_message(INTERNAL_ERROR, "the server failed to handle that", request_id)
        )

    # -- lobby actions -----------------------------------------------------

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
    def _not_in_room(player: Player) -> None:
        if player.room is not None:
            raise GameError(
                ALREADY_IN_ROOM,
                f"already in room {player.room.room_id}: leave it first",
            )

    def _join_or_create(self, player: Player, message: Message) -> Any:
        name = self._room_type_of(message)
        options = self._options_of(message)
        self._not_in_room(player)
        for room in self.rooms.values():
            if room.room_type == name and room.joinable and _matches(room, options):
                return self._seat(player, room, options, message.get("id"))
        return self._create_and_seat(player, name, options, message.get("id"))

    def _create(self, player: Player, message: Message) -> Any:
        name = self._room_type_of(message)
        options = self._options_of(message)
        self._not_in_room(player)
        return self._create_and_seat(player, name, options, message.get("id"))

    def _join_by_id(self, player: Player, message: Message) -> Any:
        room_id = message.get("room_id")
        if type(room_id) is not str:
            raise GameError(BAD_ARGUMENTS, "join: room_id must be a string")
        options = self._options_of(message)
        self._not_in_room(player)
        room = self.rooms.get(room_id)
        if room is None or not room._ready:
            raise GameError(ROOM_NOT_FOUND, f"there is no room {room_id!r}")
        return self._seat(player, room, options, message.get("id"))

    def _leave(self, player: Player, message: Message) -> Any:
        room = player.room
        if room is None:
            raise GameError(NOT_IN_ROOM, "leave: not in a room")
        self._reply(
            player,
            {"action": "left", "room_id": room.room_id, "reason": "leave"},
            message.get("id"),
        )
        return room._leave(player, "leave")

    def _reconnect(self, player: Player, message: Message) -> None:
        """
        Take over a held seat with its token: the connection now speaks for
        the old player, which gets C{joined}, its full state and what it missed.
        """
        token = message.get("token")
        if type(token) is not str:
            raise GameError(BAD_ARGUMENTS, "reconnect: token must be a string")
        self._not_in_room(player)
        old = self._tokens.get(token)
        room = old.room if old is not None else None
        if old is None or room is None or room.players.get(old.id) is not old:
            raise GameError(INVALID_TOKEN, "reconnect: the token is unknown or expired")
        link = player.link
        assert link is not None
        self.players.pop(player.id, None)
        player.link = None  # this connection's lobby player is done with
        previous = old.link
        if previous is not None:
            # The old connection is still open (not noticed dead yet): replace it.
            old.link = None
            previous.close("replaced", "the player reconnected elsewhere")
        old.link = link
        link.player = old
        self.players[old.id] = old
        room._reconnect(old, encode(self._joined(old, room, message.get("id"))))
        self.log.info("{player} reconnected to {room}", player=old, room=room)

    def _sync(self, player: Player, message: Message) -> None:
        """Send the full state again (a client that saw a gap in seq asks this)."""
        room = player.room
        if room is None:
            raise GameError(NOT_IN_ROOM, "sync: not in a room")
        if room.state is None:
            raise GameError(NO_STATE, f"{room.room_type} has no synchronized state")
        room._send_full_state(player, message.get("id"))

    def _list(self, player: Player, message: Message) -> None:
        name = message.get("room")
        if name is not None:
            name = self._room_type_of(message)
        self._reply(
            player, {"action": "rooms", "rooms": self.listing(name)}, message.get("id")
        )

    def listing(self, room_type: str | None = None) -> list[Message]:
        """The public rooms (of one type, or all): id, type, players, metadata."""
        return [
            room._describe()
            for room in self.rooms.values()
            if room._ready
            and not room.private
            and (room_type is None or room.room_type == room_type)
        ]

    # -- creating and seating ----------------------------------------------

    def create_room(self, name: str, options: Mapping[str, Any] = {}) -> Any:
        """
        Create a room of type C{name} (from a client's request or the server's
        own code): the Room, or a Deferred of it while C{on_create} runs.
        """
        room = self.room_types[name]()
        room_id = _new_id()
        room._bind(self, room_id, name, self._clock, dict(options))
        self.rooms[room_id] = room

        def ready(_: object = None) -> Room:
            room._start()
            self.log.info("{room} created", room=room)
            return room

        def failed(failure: Failure) -> Failure:
            room._dispose("disposed")
            return failure

        try:
            result = call(room.on_create, room.options)
        except BaseException:
            room._dispose("disposed")
            raise
        if isinstance(result, Deferred):
            return result.addCallbacks(ready, failed)
        return ready()

    def _create_and_seat(
        self, player: Player, name: str, options: dict[str, Any], request_id: Any
    ) -> Any:
        created = self.create_room(name, options)
        if isinstance(created, Deferred):
            return created.addCallback(
                lambda room: self._seat(player, room, options, request_id)
            )
        return self._seat(player, created, options, request_id)

    def _seat(
        self, player: Player, room: Room, options: dict[str, Any], request_id: Any
    ) -> Any:
        if player.link is None:  # gone while the room was being created
            room._dispose_if_empty()
            return None
        joining = room._join(player, options)

        def joined(_: object = None) -> None:
            if room.players.get(player.id) is not player or room.disposed:
                # Removed (dropped, kicked, disposed) while on_join ran.
                raise GameError(
                    ROOM_NOT_FOUND, f"room {room.room_id} closed while joining", request_id
                )
            room._welcome(player, encode(self._joined(player, room, request_id)))
            self.log.info("{player} joined {room}", player=player, room=room)

        if isinstance(joining, Deferred):
            return joining.addCallback(joined)
        joined()
        return None

    def _joined(self, player: Player, room: Room, request_id: Any) -> Message:
        """The C{joined} reply, with a fresh reconnection token."""
        self._revoke(player)
        player.token = secrets.token_urlsafe(18)
        self._tokens[player.token] = player
        reply: Message = {
            "action": "joined",
            "room": room.room_type,
            "room_id": room.room_id,
            "player_id": player.id,
            "players": list(room.players),
            "token": player.token,
        }
        if request_id is not None:
            reply["id"] = request_id
        return reply

    def _revoke(self, player: Player) -> None:
        """The player's token no longer reconnects."""
        if player.token is not None:
            self._tokens.pop(player.token, None)
            player.token = None

    def _metronome(self, interval: float) -> Metronome:
        """The one timer every room beating at C{interval} shares."""
        metronome = self._metronomes.get(interval)
        if metronome is None:
            metronome = self._metronomes[interval] = Metronome(self._clock, interval)
        return metronome

    def _forget(self, room: Room) -> None:
        if self.rooms.get(room.room_id) is room:
            del self.rooms[room.room_id]
            self.log.info("{room} disposed", room=room)

    # -- shutdown ------------------------------------------------------------

    def stopService(self) -> Deferred[Any]:
        """
        Dispose every room (players get C{left} with reason C{"shutdown"}),
        then close every connection with C{server_shutdown}. Listening ports
        are stopped before this service (add them to the parent after it).
        """
        super().stopService()
        self._stopping = True
        disposing = [room._dispose("shutdown") for room in list(self.rooms.values())]

        def close_all(_: object) -> Deferred[Any]:
            for player in list(self.players.values()):
                if player.link is not None:
                    player.link.close(SERVER_SHUTDOWN, "the server is shutting down")
            # Rooms created while the first ones were going (a slow on_dispose).
            return DeferredList(
                [room._dispose("shutdown") for room in list(self.rooms.values())]
            )

        return DeferredList(disposing).addCallback(close_all)


def _matches(room: Room, options: Mapping[str, Any]) -> bool:
    """Whether a room was created with the same values of its filter_by options."""
    return all(
        _same(room.options.get(key), options.get(key)) for key in room.filter_by
    )


def _same(a: Any, b: Any) -> bool:
    """JSON equality: 1, 1.0 and true are three different options."""
    return type(a) is type(b) and a == b
