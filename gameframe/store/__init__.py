"""Saved rooms and player storage: the interfaces and their backends (memory, SQLite, Redis)."""

from gameframe.store.base import (
    ABSENT,
    IPlayerStorage,
    IRoomStore,
    SavedRoom,
    VersionConflict,
)
from gameframe.store.memory import MemoryPlayerStorage, MemoryRoomStore

__all__ = [
    "ABSENT",
    "IPlayerStorage",
    "IRoomStore",
    "MemoryPlayerStorage",
    "MemoryRoomStore",
    "SavedRoom",
    "VersionConflict",
]
