"""What C{--store} names (C{sqlite:PATH} or C{redis}), checked, and the stores it opens."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import attrs
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorCore

from gameframe.cluster.redis import RedisCluster
from gameframe.store.base import IPlayerStorage, IRoomStore
from gameframe.store.memory import MemoryPlayerStorage
from gameframe.store.redis import RedisStore
from gameframe.store.sqlite import SqliteStore

STORE_FORMS = "sqlite:PATH or redis"


@attrs.frozen
class StoreSpec:
    """A checked C{--store} value: the backend, and for SQLite its file."""

    kind: Literal["sqlite", "redis"]
    path: Path | None = None


def parse_store(value: str) -> StoreSpec:
    """
    C{sqlite:PATH} (the file is created if missing; its directory must
    exist) or C{redis} (the C{--redis} connection). L{ValueError} with a
    one-line reason otherwise.
    """
    if value == "redis":
        return StoreSpec("redis")
    kind, colon, rest = value.partition(":")
    if kind != "sqlite" or not colon:
        raise ValueError(f"--store is {STORE_FORMS}, not {value!r}")
    if not rest:
        raise ValueError("--store sqlite:PATH needs a file path after 'sqlite:'")
    path = Path(rest).expanduser()
    if path.is_dir():
        raise ValueError(f"--store sqlite:{rest} is a directory, not a file")
    if not path.parent.is_dir():
        raise ValueError(f"--store sqlite:{rest}: the directory {str(path.parent)!r} does not exist")
    return StoreSpec("sqlite", path)


@attrs.frozen
class Stores:
    """
    What a server keeps: C{rooms} (L{None} without C{--store}: no room is
    saved) and C{storage} (in memory without C{--store}: lost on restart).
    """

    rooms: IRoomStore | None
    storage: IPlayerStorage

    def close(self) -> Deferred[None]:
        """Close both (a shared file or connection closes once)."""
        closing = [self.storage.close()]
        if self.rooms is not None:
            closing.append(self.rooms.close())
        return gatherResults(closing, consumeErrors=True).addCallback(lambda _: None)


def open_stores(
    spec: StoreSpec | None, reactor: IReactorCore, cluster: RedisCluster | None = None
) -> Stores:
    """
    The stores C{spec} names (L{None}: no C{--store}). C{redis} shares the
    cluster's command connection, so it needs C{cluster}: L{ValueError}
    without one. Opening is lazy: SQLite creates its file and schema on
    the store's thread with the first call.
    """
    if spec is None:
        return Stores(rooms=None, storage=MemoryPlayerStorage())
    if spec.kind == "redis":
        if cluster is None:
            raise ValueError("--store redis keeps rooms on the cluster's Redis: give --redis too")
        redis = RedisStore(cluster)
        return Stores(rooms=redis.rooms, storage=redis.storage)
    assert spec.path is not None
    sqlite = SqliteStore(spec.path, reactor)
    return Stores(rooms=sqlite.rooms, storage=sqlite.storage)
