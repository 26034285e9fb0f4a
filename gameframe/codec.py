"""Encode and decode protocol messages (JSON objects with an "action"), and error codes."""

from __future__ import annotations

from typing import Any, Mapping

import attrs
import orjson

# The codes live in vocabulary; re-exported here for existing imports.
from gameframe.vocabulary import (  # noqa: F401
    ALREADY_IN_ROOM,
    BAD_ARGUMENTS,
    BAD_JSON,
    BAD_MESSAGE,
    BAD_UTF8,
    FRAME_TOO_LARGE,
    INTERNAL_ERROR,
    INVALID_TOKEN,
    NO_STATE,
    NOT_IN_ROOM,
    ROOM_FULL,
    ROOM_LOCKED,
    ROOM_NOT_FOUND,
    UNKNOWN_ACTION,
    UNKNOWN_ROOM_TYPE,
    Message,
    error_message,
)




__all__ = [
    "ALREADY_IN_ROOM",
    "BAD_ARGUMENTS",
    "BAD_JSON",
    "BAD_MESSAGE",
    "BAD_UTF8",
    "FRAME_TOO_LARGE",
    "INTERNAL_ERROR",
    "INVALID_TOKEN",
    "NO_STATE",
    "NOT_IN_ROOM",
    "ROOM_FULL",
    "ROOM_LOCKED",
    "ROOM_NOT_FOUND",
    "UNKNOWN_ACTION",
    "UNKNOWN_ROOM_TYPE",
    "GameError",
    "Message",
    "decode",
    "encode",
    "error_message",
]


class GameError(Exception):
    """
    An error the client sees as C{{"action": "error", "code": ..., "message": ...}}.

    Raise it from a room hook or action handler to refuse a request; the
    room and the connection go on.
    """

    def __init__(self, code: str, message: str, request_id: Any = None) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.request_id = request_id

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def _default(obj: Any) -> Any:
    """Let orjson encode attrs instances (as dicts) and tuples of them."""
    if attrs.has(type(obj)):
        return {
            f.name: getattr(obj, f.name)
            for f in attrs.fields(type(obj))
            if not f.name.startswith("_")
        }
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


_OPTIONS = orjson.OPT_NON_STR_KEYS

# What a request id may be: anything a reply can echo cheaply and safely.
_ID_TYPES = frozenset({str, int, float, type(None)})


def encode(message: Mapping[str, Any]) -> bytes:
    """Encode one message as compact UTF-8 JSON, without framing."""
    return orjson.dumps(message, default=_default, option=_OPTIONS)


def encode_json(value: Any) -> bytes:
    """Encode any JSON value (a part of a message) as L{encode} does a message."""
    return orjson.dumps(value, default=_default, option=_OPTIONS)


# How deep a message may nest: orjson reads 1024 levels but writes only 254,
# and a reply (or a room's state) wraps what a client sent in a few more, so a
# deeper message could be read but never answered.
MAX_DEPTH = 128


def _nests_deeper_than(value: Any, limit: int) -> bool:
    """Whether a decoded JSON value has containers more than C{limit} levels deep."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if type(item) is dict:
            children: Any = item.values()
        elif type(item) is list:
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _may_nest_deep(frame: bytes | str) -> bool:
    """A cheap bound: fewer opening brackets than the limit cannot nest past it."""
    if isinstance(frame, bytes):
        return frame.count(b"[") + frame.count(b"{") > MAX_DEPTH
    return frame.count("[") + frame.count("{") > MAX_DEPTH


def decode(frame: bytes | str) -> Message:
    """
    Decode one frame into a message.

    @raise GameError: C{bad_utf8}, C{bad_json} or C{bad_message}.
    """
    try:
        message = orjson.loads(frame)
    except orjson.JSONDecodeError:
        if isinstance(frame, bytes):
            try:
                frame.decode("utf-8")
            except UnicodeDecodeError:
                raise GameError(BAD_UTF8, "the frame is not valid UTF-8") from None
        raise GameError(BAD_JSON, "the frame is not valid JSON") from None
    # Nesting past MAX_DEPTH takes more than 2 * MAX_DEPTH brackets: short
    # frames (nearly all of them) skip the checks.
    if (
        len(frame) > 2 * MAX_DEPTH
        and _may_nest_deep(frame)
        and _nests_deeper_than(message, MAX_DEPTH)
    ):
        request_id = message.get("id") if type(message) is dict else None
        raise GameError(
            BAD_JSON,
            f"the frame nests deeper than {MAX_DEPTH} levels",
            request_id if type(request_id) in _ID_TYPES else None,
        )
    if type(message) is not dict:
        raise GameError(BAD_MESSAGE, "a message must be a JSON object")
    if type(message.get("id")) not in _ID_TYPES:
        raise GameError(BAD_MESSAGE, '"id" must be a string or a number')
    action = message.get("action")
    if type(action) is not str or not action:
        raise GameError(
            BAD_MESSAGE,
            'a message needs an "action" that is a non-empty string',
            message.get("id"),
        )
    return message
