"""The public face: exactly what `gameframe/__init__.py` exports, and that it all imports."""

from __future__ import annotations

import importlib

import gameframe

EXPECTED = [
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


def test_all_is_the_expected_list() -> None:
    assert sorted(gameframe.__all__) == sorted(EXPECTED)
    assert len(gameframe.__all__) == len(set(gameframe.__all__))


def test_every_exported_name_is_importable() -> None:
    module = importlib.import_module("gameframe")
    for name in EXPECTED:
        assert getattr(module, name) is not None, name
    namespace: dict[str, object] = {}
    exec("from gameframe import *", namespace)
    assert set(EXPECTED) <= set(namespace)


def test_exports_are_the_real_things() -> None:
    from gameframe._actions import action
    from gameframe.codec import GameError
    from gameframe.interfaces import IPlayerLink
    from gameframe.player import Player
    from gameframe.protocol import GameFactory, GameProtocol
    from gameframe.room import Room
    from gameframe.service import RoomService
    from gameframe.store.base import VersionConflict

    assert gameframe.Room is Room
    assert gameframe.RoomService is RoomService
    assert gameframe.Player is Player
    assert gameframe.GameProtocol is GameProtocol
    assert gameframe.GameFactory is GameFactory
    assert gameframe.GameError is GameError
    assert gameframe.IPlayerLink is IPlayerLink
    assert gameframe.action is action
    assert gameframe.VersionConflict is VersionConflict
    assert isinstance(gameframe.__version__, str) and gameframe.__version__
