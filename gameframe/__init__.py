"""gameframe: a multiplayer game server framework on Twisted. What an author imports."""

from gameframe._actions import action
from gameframe._version import __version__
from gameframe.cluster.backend import NodeLoad
from gameframe.codec import GameError
from gameframe.interfaces import IPlayerLink, IRoomDirectory, IRoomHandle
from gameframe.player import Player
from gameframe.protocol import GameFactory, GameProtocol
from gameframe.room import Room
from gameframe.service import RoomService
from gameframe.store.base import VersionConflict

__all__ = [
    "GameError",
    "GameFactory",
    "GameProtocol",
    "IPlayerLink",
    "IRoomDirectory",
    "IRoomHandle",
    "NodeLoad",
    "Player",
    "Room",
    "RoomService",
    "VersionConflict",
    "__version__",
    "action",
]
