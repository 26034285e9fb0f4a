"""The HTTP side: the browser demo's static files, GET /rooms, /metrics, the health checks and the /ws WebSocket."""

from __future__ import annotations

from importlib.resources import files
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IAddress, IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from twisted.web.static import File

from gameframe.codec import encode
from gameframe.metrics import MetricsResource, metrics_registry
from gameframe.service import RoomService
from gameframe.web_admin import add_admin
from gameframe.websocket import GameWebSocketResource, WebSocketGameFactory

STATIC = files("gameframe") / "static"


class RoomsResource(Resource):
    """C{GET /rooms}: room types, and the public rooms with players and metadata."""

    isLeaf = True
    log = Logger()

    def __init__(self, service: RoomService) -> None:
        super().__init__()
        self._service = service

    def render_GET(self, request: Request) -> bytes | int:
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        service = self._service
        types = sorted(service.room_types)
        listed = service.listing()
        if not isinstance(listed, Deferred):
            return encode({"types": types, "rooms": listed})

        gone: list[bool] = []  # the client hung up before the listing came
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def write(rooms: list[Any]) -> None:
            if not gone:
                request.write(encode({"types": types, "rooms": rooms}))
                request.finish()

        def failed(failure: Failure) -> None:
            self.log.failure("GET /rooms failed", failure)
            if not gone:
                request.setResponseCode(503)
                request.finish()

        listed.addCallbacks(write, failed)
        return NOT_DONE_YET


class DeadlineChannel(http.HTTPChannel):
    """
    An HTTP connection whose every request (the WebSocket upgrade included)
    must arrive whole within the site's C{request_deadline} seconds of its
    first byte, or the connection is dropped (slowloris). Twisted's own
    timeout restarts on every byte, so a client trickling one byte a second
    would hold a connection for ever. After a WebSocket upgrade the channel
    no longer sees the bytes; the WebSocket link's frame timeout takes over.
    """

    log = Logger()
    request_deadline = 0.0
    _deadline: IDelayedCall | None = None

    def dataReceived(self, data: bytes) -> None:
        if self._deadline is None and self.request_deadline > 0:
            self._deadline = self.callLater(self.request_deadline, self._too_slow)
        super().dataReceived(data)

    def allContentReceived(self) -> None:
        self._cancel_deadline()
        super().allContentReceived()

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self._cancel_deadline()
        super().connectionLost(reason)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            if self._deadline.active():
                self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        self.log.info("an HTTP request took over {s} s to arrive (frame_timeout), closing", s=self.request_deadline)
        transport = self.transport
        if transport is not None:
            transport.abortConnection()  # type: ignore[attr-defined]


class QuietSite(Site):
    """
    A Site without an access log (lobby pages poll C{/rooms} every few
    seconds), whose requests must arrive within C{request_deadline} seconds.
    """

    protocol = DeadlineChannel  # type: ignore[assignment]
    request_deadline = 0.0

    def buildProtocol(self, addr: IAddress | None) -> DeadlineChannel:  # type: ignore[override]
        channel: DeadlineChannel = super().buildProtocol(addr)
        channel.request_deadline = self.request_deadline
        return channel

    def log(self, request: http.Request) -> None:
        pass


class HealthResource(Resource):
    """C{GET /healthz}: 200 while the process serves HTTP at all (alive)."""

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return encode({"status": "alive"})


class ReadyResource(Resource):
    """
    C{GET /readyz}: 200 when the server should get new players, 503 with the
    reasons when not (still starting, shutting down, in a cluster without Redis).
    """

    isLeaf = True

    def __init__(self, problems: Callable[[], list[str]]) -> None:
        super().__init__()
        self._problems = problems

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        problems = self._problems()
        if problems:
            request.setResponseCode(503)
            return encode({"status": "not ready", "reasons": problems})
        return encode({"status": "ready"})


def make_site(
    service: RoomService,
    websocket: WebSocketGameFactory,
    readiness: Callable[[], list[str]] | None = None,
    admin_token: str | None = None,
) -> Site:
    """
    The web site: C{/} static demo, C{/rooms}, C{/ws}, C{/healthz}, C{/readyz},
    C{/metrics} (Prometheus, from a registry of this site's own), and with
    an C{admin_token}, C{/admin} (the admin API) and C{/monitor}.

    @param readiness: what keeps the server from being ready (by default the
        RoomService's own L{RoomService.readiness}); empty when ready.
    @param admin_token: the bearer token of the admin API (C{--admin-token});
        L{None}: C{/admin} and C{/monitor} answer 404.
    """
    root = File(str(STATIC))
    root.putChild(b"ws", GameWebSocketResource(websocket))
    root.putChild(b"rooms", RoomsResource(service))
    root.putChild(b"healthz", HealthResource())
    root.putChild(b"readyz", ReadyResource(readiness or service.readiness))
    root.putChild(b"metrics", MetricsResource(metrics_registry(service)))
    add_admin(root, service, admin_token)
    site = QuietSite(root, reactor=websocket.scheduler.clock)
    site.displayTracebacks = False
    site.request_deadline = websocket.limits.frame_timeout
    return site


class PingService(Service):
    """Pings WebSocket clients while the server runs."""

    def __init__(self, websocket: WebSocketGameFactory) -> None:
        self._websocket = websocket

    def startService(self) -> None:
        super().startService()
        self._websocket.start()

    def stopService(self) -> None:
        self._websocket.stop()
        super().stopService()
