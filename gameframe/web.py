"""The HTTP side: the browser demo's static files, GET /rooms, and the /ws WebSocket."""

from __future__ import annotations

from importlib.resources import files
from twisted.application.service import Service
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from twisted.web.static import File

from gameframe.codec import encode
from gameframe.service import RoomService
from gameframe.websocket import GameWebSocketResource, WebSocketGameFactory

STATIC = files("gameframe") / "static"


class RoomsResource(Resource):
    """C{GET /rooms}: room types, and the public rooms with players and metadata."""

    isLeaf = True

    def __init__(self, service: RoomService) -> None:
        super().__init__()
        self._service = service

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        service = self._service
        return encode({"types": sorted(service.room_types), "rooms": service.listing()})


class QuietSite(Site):
    """A Site without an access log: lobby pages poll C{/rooms} every few seconds."""

    def log(self, request: http.Request) -> None:
        pass


def make_site(service: RoomService, websocket: WebSocketGameFactory) -> Site:
    """The web site: C{/} static demo, C{/rooms}, C{/ws}."""
    root = File(str(STATIC))
    root.putChild(b"ws", GameWebSocketResource(websocket))
    root.putChild(b"rooms", RoomsResource(service))
    site = QuietSite(root)
    site.displayTracebacks = False
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
