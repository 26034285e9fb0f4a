"""The admin API over HTTP (/admin/..., a bearer token, JSON errors with stable codes) and its live stream of a room."""

from __future__ import annotations

import hmac
from importlib.resources import files
from typing import Any, Callable
from urllib.parse import unquote

import orjson
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from twisted.web.static import File

from gameframe._host import RoomHost
from gameframe.admin import Admin, details
from gameframe.codec import GameError, encode
from gameframe.jsonpatch import JSON, diff
from gameframe.service import RoomService
from gameframe.vocabulary import (
    BAD_ARGUMENTS,
    INTERNAL_ERROR,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    NOT_ON_THIS_NODE,
    PLAYER_NOT_FOUND,
    ROOM_NOT_FOUND,
    UNAUTHORIZED,
    UNAVAILABLE,
)

# The monitor page's files (no build step).
MONITOR = files("gameframe") / "static" / "monitor"

# The HTTP status of each error code the admin API returns.
STATUS = {
    BAD_ARGUMENTS: 400,
    UNAUTHORIZED: 401,
    ROOM_NOT_FOUND: 404,
    PLAYER_NOT_FOUND: 404,
    NOT_FOUND: 404,
    METHOD_NOT_ALLOWED: 405,
    NOT_ON_THIS_NODE: 409,
    INTERNAL_ERROR: 500,
    UNAVAILABLE: 503,
}
# Largest request body the admin API reads (a broadcast message), in bytes.
MAX_BODY = 64 * 1024

# POST /admin/rooms/ID/<operation>: the Admin method and the body it needs.
ROOM_ACTIONS = ("kick", "lock", "unlock", "dispose", "broadcast")


def add_admin(root: Resource, service: RoomService, token: str | None) -> None:
    """C{/admin} and C{/monitor} under C{root}: live with a token, 404 without."""
    if not token:
        root.putChild(b"admin", NotFoundResource())
        root.putChild(b"monitor", NotFoundResource())
        return
    root.putChild(b"admin", AdminResource(Admin(service), token))
    root.putChild(b"monitor", File(str(MONITOR)))


class NotFoundResource(Resource):
    """What C{/admin} and C{/monitor} are without an admin token: 404, whatever is asked."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"application/json")
        return encode({"error": NOT_FOUND, "message": "no such resource"})


class AdminResource(Resource):
    """
    C{/admin}: the JSON admin API. Every request needs
    C{Authorization: Bearer TOKEN}; every answer is JSON; every error is
    C{{"error": code, "message": ...}} with the status of L{STATUS}.
    """

    isLeaf = True
    log = Logger()

    def __init__(self, admin: Admin, token: str) -> None:
        super().__init__()
        self._admin = admin
        self._token = token.encode()

    def render(self, request: Request) -> bytes | int:
        request.setHeader(b"cache-control", b"no-store")
        if not self._authorized(request):
            request.setHeader(b"www-authenticate", b'Bearer realm="gameframe admin"')
            return _error(request, GameError(UNAUTHORIZED, "a valid Authorization: Bearer token is needed"))
        path = [unquote(segment.decode("utf-8", "replace")) for segment in request.postpath or []]
        if path and path[-1] == "":
            path.pop()
        method = request.method
        try:
            answer = self._route(request, method, path)
        except GameError as error:
            return _error(request, error)
        if answer is None:  # a live stream: it writes as it goes
            return NOT_DONE_YET
        return _respond(request, answer)

    def _authorized(self, request: Request) -> bool:
        given = request.getHeader(b"authorization") or b""
        scheme, _, credentials = given.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(
            credentials.strip(), self._token
        )

    def _route(self, request: Request, method: bytes, path: list[str]) -> Deferred[Any] | None:
        admin = self._admin
        if path == ["rooms"]:
            _allow(request, method, b"GET")
            return admin.rooms()
        if len(path) == 2 and path[0] == "rooms":
            _allow(request, method, b"GET")
            return admin.room(path[1])
        if len(path) == 3 and path[0] == "rooms" and path[2] == "events":
            _allow(request, method, b"GET")
            self._stream(request, path[1])
            return None
        if len(path) == 3 and path[0] == "rooms" and path[2] in ROOM_ACTIONS:
            _allow(request, method, b"POST")
            room_id, operation = path[1], path[2]
            if operation == "kick":
                player_id = _body(request).get("player_id")
                if type(player_id) is not str:
                    raise GameError(BAD_ARGUMENTS, 'kick: the body must be {"player_id": "..."}')
                return admin.kick(room_id, player_id)
            if operation == "broadcast":
                return admin.broadcast(room_id, _body(request))
            run: Callable[[str], Deferred[Any]] = getattr(admin, operation)
            return run(room_id)
        raise GameError(NOT_FOUND, f"no admin resource /admin/{'/'.join(path)}")

    def _stream(self, request: Request, room_id: str) -> None:
        host = self._admin.local_host(room_id)
        if host is None:
            exists: Deferred[Any] = maybeDeferred(self._admin.room, room_id)

            def elsewhere(_: object) -> bytes:
                # It runs on another node: poll GET /admin/rooms/ID instead.
                raise GameError(NOT_ON_THIS_NODE, f"room {room_id} runs on another node: poll it")

            _finish(request, exists.addCallback(elsewhere))
            return
        RoomStream(request, host, self._admin.node).start()


class RoomStream:
    """
    C{GET /admin/rooms/ID/events}: a text/event-stream of one room of this
    node. C{room} (its summary and seats, each time they change), C{state}
    (the full state and a C{seq}, first), C{patch} (JSON Patch operations
    taking the previous state to the new one, C{seq} one more), C{end}
    (the room is gone; the stream closes).
    """

    def __init__(self, request: Request, host: RoomHost, node: str) -> None:
        self._request = request
        self._host = host
        self._node = node
        self._room: dict[str, Any] | None = None
        self._state: JSON = None
        self._seq = 0
        self._unwatch: Callable[[], None] | None = None
        self._done = False

    def start(self) -> None:
        request = self._request
        request.setHeader(b"content-type", b"text/event-stream")
        request.setHeader(b"x-accel-buffering", b"no")
        request.notifyFinish().addBoth(self._stop)
        info = details(self._host, self._node)
        self._state = info.pop("state")
        self._room = info
        self._send("room", info)
        self._send("state", {"seq": self._seq, "state": self._state})
        self._unwatch = self._host.watch(self._changed)

    def _changed(self) -> None:
        if self._done:
            return
        host = self._host
        if not host.running:
            self._send("end", {"room_id": host.room_id})
            self._stop(None)
            self._request.finish()
            return
        info = details(host, self._node)
        state = info.pop("state")
        if info != self._room:
            self._room = info
            self._send("room", info)
        ops = diff(self._state, state)
        if ops:
            self._state = state
            self._seq += 1
            self._send("patch", {"seq": self._seq, "patch": ops})

    def _send(self, event: str, data: Any) -> None:
        self._request.write(b"event: " + event.encode() + b"\ndata: " + encode(data) + b"\n\n")

    def _stop(self, _: object) -> None:
        self._done = True
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None


def _allow(request: Request, method: bytes, allowed: bytes) -> None:
    if method != allowed:
        request.setHeader(b"allow", allowed)
        raise GameError(METHOD_NOT_ALLOWED, f"use {allowed.decode()} here")


def _body(request: Request) -> dict[str, Any]:
    """The request's JSON object; GameError C{bad_arguments} if it is not one."""
    assert request.content is not None
    raw = request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise GameError(BAD_ARGUMENTS, f"the body is over {MAX_BODY} bytes")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise GameError(BAD_ARGUMENTS, "the body must be a JSON object") from None
    if type(body) is not dict:
        raise GameError(BAD_ARGUMENTS, "the body must be a JSON object")
    return body


def _respond(request: Request, answer: Deferred[Any]) -> int:
    _finish(request, answer.addCallback(encode))
    return NOT_DONE_YET


def _finish(request: Request, answer: Deferred[bytes]) -> None:
    """Write the answer (or its error) unless the client hung up first."""
    gone: list[bool] = []
    request.notifyFinish().addErrback(lambda _: gone.append(True))

    def write(data: bytes) -> None:
        if not gone:
            request.setHeader(b"content-type", b"application/json")
            request.write(data)
            request.finish()

    def failed(failure: Failure) -> None:
        error = failure.value
        if not isinstance(error, GameError):
            AdminResource.log.failure("the admin API failed", failure)
            error = GameError(INTERNAL_ERROR, "the admin operation failed")
        if not gone:
            request.write(_error(request, error))
            request.finish()

    answer.addCallbacks(write, failed)


def _error(request: Request, error: GameError) -> bytes:
    request.setResponseCode(STATUS.get(error.code, 400))
    request.setHeader(b"content-type", b"application/json")
    return encode({"error": error.code, "message": error.message})
