"""The protocol's words in one place: action names, error, disconnect and leave codes, message builders."""

from __future__ import annotations

from typing import Any

Message = dict[str, Any]

# -- lobby actions: handled by the RoomService, never by a room -------------------

AUTHENTICATE = "authenticate"
PING = "ping"
JOIN_OR_CREATE = "join_or_create"
CREATE = "create"
JOIN = "join"
LEAVE = "leave"
LIST = "list"
RECONNECT = "reconnect"
SYNC = "sync"

LOBBY_ACTIONS = frozenset(
    {AUTHENTICATE, PING, JOIN_OR_CREATE, CREATE, JOIN, LEAVE, LIST, RECONNECT, SYNC}
)
# Lobby actions that seat a player (refused once the server is shutting down).
JOINING_ACTIONS = frozenset({JOIN_OR_CREATE, CREATE, JOIN, RECONNECT})
# Lobby actions about the player's room: forwarded to the room's node in a cluster.
FORWARDED_LOBBY_ACTIONS = frozenset({LEAVE, SYNC})
# What a connection may send before it has authenticated under --require-auth.
BEFORE_AUTH_ACTIONS = frozenset({AUTHENTICATE, PING})

# -- state patch encodings: "encoding" in the requests of JOINING_ACTIONS ------------

ENCODING_JSON = "json"  # RFC 6902 JSON Patches, the default
ENCODING_COMPACT = "compact"  # gameframe.compact
ENCODINGS = frozenset({ENCODING_JSON, ENCODING_COMPACT})

# -- error codes: {"action": "error", "code": ...}; the connection goes on ----------

BAD_JSON = "bad_json"
BAD_UTF8 = "bad_utf8"  # fatal: the connection closes after it
BAD_MESSAGE = "bad_message"
UNKNOWN_ACTION = "unknown_action"
BAD_ARGUMENTS = "bad_arguments"
NOT_IN_ROOM = "not_in_room"
ALREADY_IN_ROOM = "already_in_room"
ROOM_NOT_FOUND = "room_not_found"
ROOM_FULL = "room_full"
ROOM_LOCKED = "room_locked"
UNKNOWN_ROOM_TYPE = "unknown_room_type"
INTERNAL_ERROR = "internal_error"
FRAME_TOO_LARGE = "frame_too_large"  # fatal: the connection closes after it
INVALID_TOKEN = "invalid_token"
NO_STATE = "no_state"
RATE_LIMITED = "rate_limited"
UNAUTHORIZED = "unauthorized"
# Cluster: the room is on another node and the cluster (Redis) cannot reach it now.
UNAVAILABLE = "unavailable"

# -- admin API error codes, beside room_not_found, bad_arguments, unauthorized,
# unavailable and internal_error: {"error": code, "message": ...} (docs/operations.md)

PLAYER_NOT_FOUND = "player_not_found"
NOT_FOUND = "not_found"  # no such admin path
METHOD_NOT_ALLOWED = "method_not_allowed"
NOT_ON_THIS_NODE = "not_on_this_node"  # a live stream of a room another node runs

# -- disconnect codes: {"action": "disconnect", "code": ...}, then the close --------

SERVER_SHUTDOWN = "server_shutdown"  # also an error code: joining while stopping
REPLACED = "replaced"
TOO_MANY_REQUESTS = "too_many_requests"
FLOODING = "flooding"
FRAME_TIMEOUT = "frame_timeout"
IDLE_TIMEOUT = "idle_timeout"
TOO_MANY_CONNECTIONS = "too_many_connections"
SLOW_CLIENT = "slow_client"

# -- reasons in {"action": "left", "reason": ...} and Room.on_leave -----------------

LEFT_LEAVE = "leave"
LEFT_DISCONNECT = "disconnect"
LEFT_KICKED = "kicked"
LEFT_DISPOSED = "disposed"
LEFT_SHUTDOWN = "shutdown"
LEFT_ROOM_ERROR = "room_error"
LEFT_ROOM_LOST = "room_lost"  # cluster: the node that ran the room died


# -- builders of the messages the server sends ---------------------------------------


def error_message(code: str, text: str, request_id: Any = None) -> Message:
    """Build the C{error} message, echoing the request's C{id} when it had one."""
    message: Message = {"action": "error", "code": code, "message": text}
    if request_id is not None:
        message["id"] = request_id
    return message


def disconnect_message(code: str, text: str, **extra: Any) -> Message:
    """The last message before the server closes a connection."""
    return {"action": "disconnect", "code": code, "message": text, **extra}


def left_message(room_id: str, reason: str, request_id: Any = None) -> Message:
    """A player is out of its room (C{leave} reply, kick, dispose, shutdown)."""
    message: Message = {"action": "left", "room_id": room_id, "reason": reason}
    if request_id is not None:
        message["id"] = request_id
    return message


def state_message(seq: int, state: Any, request_id: Any = None) -> Message:
    """A full state of a player's view, C{seq} the number of its stream's last message."""
    message: Message = {"action": "state", "seq": seq, "state": state}
    if request_id is not None:
        message["id"] = request_id
    return message


def pong_message(request: Message) -> Message:
    """The answer to C{ping}: its C{t} and C{id} echoed."""
    message: Message = {"action": "pong"}
    if "t" in request:
        message["t"] = request["t"]
    if request.get("id") is not None:
        message["id"] = request["id"]
    return message
