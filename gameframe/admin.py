"""The operator's side of the engine: list, inspect and steer rooms (the admin API), on this node or any node of the cluster."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from gameframe._host import RoomHost
from gameframe._lifecycle import SeatPhase
from gameframe.codec import GameError
from gameframe.interfaces import IRoomDirectory
from gameframe.jsonpatch import to_tree
from gameframe.player import Player
from gameframe.vocabulary import (
    BAD_ARGUMENTS,
    INTERNAL_ERROR,
    LEFT_DISPOSED,
    LEFT_KICKED,
    NOT_FOUND,
    PLAYER_NOT_FOUND,
    ROOM_NOT_FOUND,
    UNAVAILABLE,
)

if TYPE_CHECKING:
    from gameframe.service import RoomService

__all__ = ["Admin", "details", "operate", "summary"]

log = Logger()

# The operations, by the names the cluster's bus carries (the admin API's paths).
LIST = "list"
DESCRIBE = "describe"
KICK = "kick"
LOCK = "lock"
UNLOCK = "unlock"
DISPOSE = "dispose"
BROADCAST = "broadcast"


def summary(host: RoomHost, node: str) -> dict[str, Any]:
    """One room as the admin listing shows it (private rooms included)."""
    return {
        "room_id": host.room_id,
        "room": host.room_type,
        "node": node,
        "players": len(host.players),
        "max_players": host.room.max_players,
        "locked": host.locked_by_author,
        "full": host.is_full,
        "private": host.private,
        "metadata": dict(host.metadata),
        "tick_rate": host.tick_rate,
        "tick_overruns": host.tick_overruns,
    }


def details(host: RoomHost, node: str) -> dict[str, Any]:
    """The summary, its seats (with their connections) and its state as a plain JSON tree."""
    info = summary(host, node)
    info["seats"] = [seat_of(host, player) for player in host.players.values()]
    try:
        info["state"] = to_tree(host.room.state)
    except TypeError as error:
        info["state"] = None
        info["state_error"] = str(error)
    return info


def seat_of(host: RoomHost, player: Player) -> dict[str, Any]:
    """A player as an operator sees it: connected or held, and over what."""
    seat = host.seat_of(player)
    phase = None if seat is None else seat.phase
    status = {SeatPhase.SEATED: "connected", SeatPhase.DROPPED: "held"}.get(
        phase, "joining"  # type: ignore[arg-type]
    )
    link = player.link
    return {
        "player_id": player.id,
        "status": status,
        "address": getattr(link, "address", None),
        "transport": getattr(link, "transport_name", None),
    }


def check_player_id(args: Mapping[str, Any]) -> str:
    player_id = args.get("player_id")
    if type(player_id) is not str:
        raise GameError(BAD_ARGUMENTS, 'kick: the body must be {"player_id": "..."}')
    return player_id


def check_message(args: Mapping[str, Any]) -> dict[str, Any]:
    message = args.get("message")
    if type(message) is not dict or type(message.get("action")) is not str:
        raise GameError(
            BAD_ARGUMENTS, 'broadcast: the body must be a message, {"action": "...", ...}'
        )
    return message


def operate(
    directory: IRoomDirectory, node: str, operation: str, room_id: str, args: Mapping[str, Any]
) -> Any:
    """
    Run one admin operation on this node's rooms: its JSON answer, or a
    Deferred of it. GameError C{room_not_found} when the room is not here
    (or not running), C{player_not_found}, C{bad_arguments}.
    """
    if operation == LIST:
        return [
            summary(host, node)
            for host in directory.rooms()
            if isinstance(host, RoomHost) and host.running
        ]
    host = directory.get(room_id)
    if not isinstance(host, RoomHost) or not host.running:
        raise GameError(ROOM_NOT_FOUND, f"there is no room {room_id!r}")
    if operation == DESCRIBE:
        return details(host, node)
    log.info("admin: {operation} {room} {args}", operation=operation, room=host, args=dict(args))
    if operation == KICK:
        player_id = check_player_id(args)
        player = host.players.get(player_id)
        if player is None:
            raise GameError(PLAYER_NOT_FOUND, f"room {room_id} has no player {player_id!r}")
        host.kick(player, LEFT_KICKED)
        return {"room_id": room_id, "player_id": player_id, "kicked": True}
    if operation in (LOCK, UNLOCK):
        host.set_locked(operation == LOCK)
        return summary(host, node)
    if operation == DISPOSE:
        done = host.dispose(LEFT_DISPOSED)
        return done.addCallback(lambda _: {"room_id": room_id, "disposed": True})
    if operation == BROADCAST:
        message = check_message(args)
        host.broadcast(message, ())
        return {"room_id": room_id, "recipients": len(host.players)}
    raise GameError(NOT_FOUND, f"there is no admin operation {operation!r}")


class Admin:
    """
    What the admin API does, over a L{RoomService}: every operation returns
    a Deferred of a JSON-able answer, or fails with a L{GameError} whose code
    the API returns. In a cluster, the listing gathers every node's rooms,
    and an operation on a room of another node goes to that node over the
    bus (C{unavailable} when it cannot be reached).
    """

    def __init__(self, service: RoomService) -> None:
        self._service = service

    @property
    def node(self) -> str:
        """This node's name, as listings show it."""
        cluster = self._service.cluster
        return self._service.node if cluster is None else cluster.node_id

    def local_host(self, room_id: str) -> RoomHost | None:
        """The room's host if it runs on this node (for the live stream)."""
        host = self._service.directory.get(room_id)
        return host if isinstance(host, RoomHost) and host.running else None

    def rooms(self) -> Deferred[dict[str, Any]]:
        """C{{"rooms": [...], "unreachable": [node, ...]}}: every running room of every node."""
        local: list[Any] = operate(self._service.directory, self.node, LIST, "", {})
        cluster = self._service.cluster
        if cluster is None:
            return succeed({"rooms": local, "unreachable": []})
        others = cluster.other_nodes()
        found: dict[str, Any] = {"rooms": local, "unreachable": []}
        waiting: list[Deferred[Any]] = []
        for node in others:
            asked = cluster.ask(node, LIST, "", {})
            asked.addCallbacks(
                found["rooms"].extend,
                lambda _, node=node: found["unreachable"].append(node),
            )
            waiting.append(asked)

        async def gather() -> dict[str, Any]:
            for asked in waiting:
                await asked
            return found

        return Deferred.fromCoroutine(gather())

    def room(self, room_id: str) -> Deferred[dict[str, Any]]:
        """The room's summary, seats and state."""
        return self._on_room(DESCRIBE, room_id, {})

    def kick(self, room_id: str, player_id: str) -> Deferred[dict[str, Any]]:
        """The player leaves the room: it gets C{left} with reason C{kicked}."""
        return self._on_room(KICK, room_id, {"player_id": player_id})

    def lock(self, room_id: str) -> Deferred[dict[str, Any]]:
        """No one is matched into the room, nor joins it by id (as L{Room.lock})."""
        return self._on_room(LOCK, room_id, {})

    def unlock(self, room_id: str) -> Deferred[dict[str, Any]]:
        return self._on_room(UNLOCK, room_id, {})

    def dispose(self, room_id: str) -> Deferred[dict[str, Any]]:
        """The room ends: its players get C{left} with reason C{disposed}."""
        return self._on_room(DISPOSE, room_id, {})

    def broadcast(self, room_id: str, message: Mapping[str, Any]) -> Deferred[dict[str, Any]]:
        """Every player of the room gets C{message} (an object with an C{action})."""
        return self._on_room(BROADCAST, room_id, {"message": message})

    def _on_room(self, operation: str, room_id: str, args: Mapping[str, Any]) -> Deferred[Any]:
        try:
            if operation == KICK:
                check_player_id(args)
            elif operation == BROADCAST:
                check_message(args)
        except GameError:
            return fail()
        directory = self._service.directory
        if directory.get(room_id) is not None:
            return maybeDeferred(operate, directory, self.node, operation, room_id, args)
        cluster = self._service.cluster
        if cluster is None:
            return fail(GameError(ROOM_NOT_FOUND, f"there is no room {room_id!r}"))
        if not cluster.available:
            return fail(GameError(UNAVAILABLE, "the cluster store is unreachable: try again soon"))
        return _first_answer(
            room_id, [cluster.ask(node, operation, room_id, args) for node in cluster.other_nodes()]
        )


def _first_answer(room_id: str, asks: list[Deferred[Any]]) -> Deferred[Any]:
    """
    The answer of the node that has the room: the first success, or its
    error; C{unavailable} if none had it and some node did not answer;
    C{room_not_found} if every node said so.
    """
    done: Deferred[Any] = Deferred()
    errors: list[GameError] = []
    remaining = [len(asks)]

    def settle() -> None:
        remaining[0] -= 1
        if done.called or remaining[0] > 0:
            return
        owner = [e for e in errors if e.code not in (ROOM_NOT_FOUND, UNAVAILABLE)]
        if owner:
            done.errback(owner[0])
        elif any(e.code == UNAVAILABLE for e in errors):
            done.errback(
                GameError(UNAVAILABLE, f"room {room_id!r} is not here and a node did not answer")
            )
        else:
            done.errback(GameError(ROOM_NOT_FOUND, f"there is no room {room_id!r}"))

    def answered(value: Any) -> None:
        if not done.called:
            done.callback(value)
        settle()

    def failed(failure: Failure) -> None:
        error = failure.value
        if isinstance(error, GameError):
            if error.code not in (ROOM_NOT_FOUND, UNAVAILABLE) and not done.called:
                done.errback(error)  # the room's node refused: its answer
            errors.append(error)
        else:
            errors.append(GameError(INTERNAL_ERROR, "a node failed to answer"))
        settle()

    if not asks:
        return fail(GameError(ROOM_NOT_FOUND, f"there is no room {room_id!r}"))
    for asked in asks:
        asked.addCallbacks(answered, failed)
    return done
