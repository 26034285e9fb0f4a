"""twistd plugin support: command-line Options and makeService (the only user of the global reactor)."""

from __future__ import annotations

import importlib
from typing import Any

from twisted.application import strports
from twisted.application.service import IService, MultiService
from twisted.python import usage

from gameframe.protocol import DEFAULT_MAX_FRAME, GameFactory
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


class Options(usage.Options):
    """C{twistd gameframe} options."""

    synopsis = "[options]"
    longdesc = (
        "Serve gameframe rooms. Players connect over TCP (JSON Lines). "
        "With no --room, the built-in demo rooms are served."
    )
    optParameters = [
        ["port", "p", "tcp:7000", "TCP endpoint for players (an endpoint string)."],
        [
            "max-frame",
            None,
            DEFAULT_MAX_FRAME,
            "Largest message a client may send, in bytes.",
            int,
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["rooms"] = {}

    def opt_room(self, spec: str) -> None:
        """Serve a room type: NAME=module:Class (repeatable)."""
        name, room_class = load_room(spec)
        self["rooms"][name] = room_class

    def postOptions(self) -> None:
        if self["max-frame"] < 64:
            raise usage.UsageError("--max-frame must be at least 64 bytes")
        if not self["rooms"]:
            self["rooms"] = demo_rooms()


def makeService(options: Any) -> IService:
    """Wire the RoomService and its listening ports into one MultiService."""
    from twisted.internet import reactor

    top = MultiService()
    rooms = RoomService(reactor, options["rooms"])
    # The RoomService first: MultiService stops children in reverse order,
    # so the ports stop listening before the rooms are disposed.
    rooms.setServiceParent(top)
    factory = GameFactory(rooms, reactor, max_frame=options["max-frame"])
    strports.service(options["port"], factory).setServiceParent(top)
    return top
