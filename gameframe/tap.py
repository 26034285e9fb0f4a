"""twistd plugin support: command-line Options and makeService (the only user of the global reactor)."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from twisted.application import strports
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet import endpoints
from twisted.logger import Logger
from twisted.python import usage

from gameframe.protocol import DEFAULT_MAX_FRAME, GameFactory
from gameframe.web import PingService, make_site
from gameframe.websocket import DEFAULT_PING_INTERVAL, WebSocketGameFactory
from gameframe.room import Room
from gameframe.service import RoomService


def demo_rooms() -> dict[str, type[Room]]:
    """The built-in demo room types served when no --room is given."""
    from gameframe.demo import DEMO_ROOMS

    return dict(DEMO_ROOMS)


def load_room(spec: str) -> tuple[str, type[Room]]:
    """Parse C{NAME=module:Class} and import the class."""
    name, sep, target = spec.partition("=")
    module_name, colon, class_name = target.partition(":")
    if not (sep and colon and name and module_name and class_name):
        raise usage.UsageError(f"--room wants NAME=module:Class, not {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())  # the author's own modules, after installed ones
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise usage.UsageError(f"--room {spec}: cannot import {module_name}: {e}")
    room_class = getattr(module, class_name, None)
    if not (isinstance(room_class, type) and issubclass(room_class, Room)):
        raise usage.UsageError(
            f"--room {spec}: {module_name}.{class_name} is not a gameframe Room"
        )
    return name, room_class


def frame_size(value: str) -> int:
    """Coerce C{--max-frame}: a whole number of bytes, at least 64."""
    try:
        size = int(value)
    except ValueError:
        raise ValueError(f"--max-frame wants a number of bytes, not {value!r}") from None
    if size < 64:
        raise ValueError("--max-frame must be at least 64 bytes")
    return size


frame_size.coerceDoc = "At least 64."  # type: ignore[attr-defined]


# Stands in for the reactor while --port is checked at parse time.
_NO_REACTOR: Any = object()


class Options(usage.Options):
    """C{twistd gameframe} options."""

    synopsis = "[options]"
    longdesc = (
        "Serve gameframe rooms. Players connect over TCP (JSON Lines) and "
        "WebSocket (/ws on the web endpoint, which also serves the browser "
        "demo and GET /rooms). With no --room, the built-in demo rooms are served."
    )
    optParameters = [
        ["port", "p", "tcp:7000", "TCP endpoint for players (an endpoint string)."],
        [
            "max-frame",
            None,
            DEFAULT_MAX_FRAME,
            "Largest message a client may send, in bytes.",
            frame_size,
        ],
        [
            "web",
            None,
            "tcp:8080",
            "HTTP endpoint for WebSocket players (/ws), the browser demo and "
            "/rooms; 'none' turns it off.",
        ],
        [
            "flush-interval",
            None,
            0.0,
            "Milliseconds between sends to each player (0: at the end of every "
            "reactor turn). More batches more messages per send, for more latency.",
            float,
        ],
        [
            "ws-ping",
            None,
            DEFAULT_PING_INTERVAL,
            "Seconds between pings to WebSocket players; one unanswered ping "
            "drops the player (0: no pings).",
            float,
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["rooms"] = {}
        self["allowed-origins"] = []

    def opt_allow_origin(self, origin: str) -> None:
        """
        Accept WebSocket connections from browsers on this origin, e.g.
        https://game.example (repeatable; default: any origin).
        """
        self["allowed-origins"].append(origin)

    def opt_room(self, spec: str) -> None:
        """Serve a room type: NAME=module:Class (repeatable)."""
        name, room_class = load_room(spec)
        self["rooms"][name] = room_class

    def postOptions(self) -> None:
        if self["web"].lower() == "none":
            self["web"] = None
        for name in ("port", "web"):
            if self[name] is None:
                continue
            try:
                # Parse only (no listening yet); the reactor is not used for that.
                endpoints.serverFromString(_NO_REACTOR, self[name])
            except Exception as e:
                raise usage.UsageError(f"--{name} {self[name]!r}: {e}") from None
        if self["flush-interval"] < 0:
            raise usage.UsageError("--flush-interval must be 0 or more milliseconds")
        if self["ws-ping"] < 0:
            raise usage.UsageError("--ws-ping must be 0 or more seconds")
        if not self["rooms"]:
            self["rooms"] = demo_rooms()


class InOrderMultiService(MultiService):
    """
    Stops its children one at a time, last added first, each after the one
    before has finished: the ports have stopped listening before the rooms
    are disposed and the players told.
    """

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)

        async def stop_all() -> None:
            for child in reversed(list(self)):
                await maybeDeferred(child.stopService)

        return Deferred.fromCoroutine(stop_all())


def makeService(options: Any) -> IService:
    """Wire the RoomService and its listening ports into one MultiService."""
    from twisted.internet import reactor

    top = InOrderMultiService()
    rooms = RoomService(reactor, options["rooms"])
    # The RoomService first: MultiService stops children in reverse order,
    # so the ports stop listening before the rooms are disposed.
    rooms.setServiceParent(top)
    flush_interval = options["flush-interval"] / 1000.0
    factory = GameFactory(
        rooms, reactor, max_frame=options["max-frame"], flush_interval=flush_interval
    )
    strports.service(options["port"], factory).setServiceParent(top)
    if options["web"] is not None:
        websocket = WebSocketGameFactory(
            rooms,
            reactor,
            max_frame=options["max-frame"],
            allowed_origins=options["allowed-origins"],
            ping_interval=options["ws-ping"],
            flush_interval=flush_interval,
        )
        PingService(websocket).setServiceParent(top)
        web = strports.service(options["web"], make_site(rooms, websocket))
        web.setServiceParent(top)
        _announce(options["web"])
    return top


def _announce(endpoint: str) -> None:
    """Log the URL a newcomer opens to see the browser demo."""
    parts = endpoint.split(":")
    if parts[0] == "tcp" and len(parts) > 1 and parts[1].isdigit():
        host = next(
            (p.split("=", 1)[1] for p in parts[2:] if p.startswith("interface=")),
            "127.0.0.1",
        )
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        Logger().info(
            "gameframe web: http://{host}:{port}/ (browser demo, /ws, /rooms)", host=host, port=parts[1]
        )
