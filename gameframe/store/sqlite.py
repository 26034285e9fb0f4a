"""
Saved rooms and player storage in one SQLite file (one machine): WAL mode,
every query on one thread of its own (never the reactor's), one
transaction per call.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorCore
from zope.interface import implementer

from gameframe.store._shared import SharedConnection
from gameframe.store.base import (
    IPlayerStorage,
    IRoomStore,
    SavedRoom,
    Version,
    VersionConflict,
    WritesOne,
    decode_value,
    encode_value,
    version_matches,
    writes_of,
)

T = TypeVar("T")

# Milliseconds a query waits for another process's lock on the file (a backup).
BUSY_TIMEOUT_MS = 5000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS saved_rooms (
    room_id TEXT PRIMARY KEY,
    room_type TEXT NOT NULL,
    node TEXT NOT NULL,
    version INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS saved_rooms_by_node ON saved_rooms (node);
CREATE TABLE IF NOT EXISTS player_storage (
    owner TEXT NOT NULL,
    collection TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    version TEXT NOT NULL,
    PRIMARY KEY (owner, collection, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO counters (name, value) VALUES ('storage_version', 0);
"""

_ROOM_COLUMNS = "room_id, room_type, node, version, data"


def _prepare(connection: sqlite3.Connection) -> None:
    """Each new connection (in the store's thread): WAL, a busy timeout, the schema."""
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode != "wal":
        raise sqlite3.OperationalError(f"the store's file cannot use WAL (journal mode {mode})")
    # With WAL, a crash of the process loses nothing committed; a power cut
    # may lose the last commits, never the file.
    connection.execute("PRAGMA synchronous = NORMAL")
    connection.executescript(_SCHEMA)


def _atomic(work: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
    """C{work} in one transaction that takes the write lock first (so reads and writes agree)."""

    def run(connection: sqlite3.Connection) -> T:
        connection.execute("BEGIN IMMEDIATE")
        try:
            result = work(connection)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
        return result

    return run


class SqliteStore:
    """
    One SQLite file holding both: L{rooms} (an L{IRoomStore}) and
    L{storage} (an L{IPlayerStorage}). They share one connection on one
    thread, so writes are serialized; the file (and its thread) closes when
    both have closed. The schema is created when the thread first connects.
    """

    def __init__(self, path: str | Path, reactor: IReactorCore) -> None:
        self.path = Path(path)
        self._pool = adbapi.ConnectionPool(
            "sqlite3",
            str(self.path),
            cp_min=1,
            cp_max=1,
            cp_noisy=False,
            cp_openfun=_prepare,
            cp_reactor=reactor,
            # Transactions are begun by hand (_atomic); closed from the reactor's thread.
            isolation_level=None,
            check_same_thread=False,
        )
        self._connection = SharedConnection(self._close, holders=2)
        self.rooms = SqliteRoomStore(self)
        self.storage = SqlitePlayerStorage(self)

    def run(self, holder: object, work: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        """C{work} on the store's thread, for C{holder} (refused once it closed)."""
        if not self._connection.holds(holder):
            return fail(RuntimeError(f"the store {self.path} is closed"))
        done: Deferred[T] = self._pool.runWithConnection(work)
        return done

    def let_go(self, holder: object) -> Deferred[None]:
        return self._connection.let_go(holder)

    def close(self) -> Deferred[None]:
        """Close both facets: the file and its thread once what was asked is done."""
        self.rooms.close()
        return self.storage.close()

    def _close(self) -> Deferred[None]:
        # The thread takes one call at a time, in order: once this no-op
        # has run, nothing asked before is still running.
        drained: Deferred[None] = self._pool.runWithConnection(lambda connection: None)

        def stop(result: object) -> object:
            self._pool.close()
            return result

        return drained.addBoth(stop).addCallback(lambda _: None)


def _room(row: tuple[Any, ...]) -> SavedRoom:
    room_id, room_type, node, version, data = row
    return SavedRoom(room_id, room_type, node, int(version), bytes(data))


@implementer(IRoomStore)
class SqliteRoomStore:
    """The saved rooms of a L{SqliteStore}."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    def save(self, room: SavedRoom) -> Deferred[bool]:
        def work(connection: sqlite3.Connection) -> bool:
            stored = connection.execute(
                f"INSERT INTO saved_rooms ({_ROOM_COLUMNS}) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (room_id) DO UPDATE SET room_type = excluded.room_type,"
                " node = excluded.node, version = excluded.version, data = excluded.data"
                " WHERE saved_rooms.node IN (excluded.node, '')"
                " AND saved_rooms.version < excluded.version",
                (room.room_id, room.room_type, room.node, room.version, room.data),
            )
            return stored.rowcount == 1

        return self._store.run(self, work)

    def release(self, room_id: str, node: str) -> Deferred[bool]:
        def work(connection: sqlite3.Connection) -> bool:
            released = connection.execute(
                "UPDATE saved_rooms SET node = '' WHERE room_id = ? AND node = ?",
                (room_id, node),
            )
            return released.rowcount == 1

        return self._store.run(self, work)

    def delete(self, room_id: str, node: str) -> Deferred[bool]:
        def work(connection: sqlite3.Connection) -> bool:
            deleted = connection.execute(
                "DELETE FROM saved_rooms WHERE room_id = ? AND node = ?", (room_id, node)
            )
            return deleted.rowcount == 1

        return self._store.run(self, work)

    def claim(self, node: str, owners: Iterable[str] | None = None) -> Deferred[list[SavedRoom]]:
        if owners is None:
            which, arguments = "node != ?", [node]
        else:
            wanted = sorted(set(owners))
            which, arguments = f"node IN ({', '.join('?' * len(wanted))})", wanted

        def work(connection: sqlite3.Connection) -> list[SavedRoom]:
            rows = connection.execute(
                f"SELECT {_ROOM_COLUMNS} FROM saved_rooms WHERE {which} ORDER BY room_id",
                arguments,
            ).fetchall()
            connection.execute(f"UPDATE saved_rooms SET node = ? WHERE {which}", [node, *arguments])
            return [_room((room_id, room_type, node, version, data))
                    for room_id, room_type, _, version, data in rows]

        return self._store.run(self, _atomic(work))

    def load(self, room_id: str) -> Deferred[SavedRoom | None]:
        def work(connection: sqlite3.Connection) -> SavedRoom | None:
            row = connection.execute(
                f"SELECT {_ROOM_COLUMNS} FROM saved_rooms WHERE room_id = ?", (room_id,)
            ).fetchone()
            return None if row is None else _room(row)

        return self._store.run(self, work)

    def close(self) -> Deferred[None]:
        return self._store.let_go(self)


def _stored_version(
    connection: sqlite3.Connection, owner: str, collection: str, key: str
) -> str | None:
    row = connection.execute(
        "SELECT version FROM player_storage WHERE owner = ? AND collection = ? AND key = ?",
        (owner, collection, key),
    ).fetchone()
    return None if row is None else str(row[0])


@implementer(IPlayerStorage)
class SqlitePlayerStorage(WritesOne):
    """The player storage of a L{SqliteStore}."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    def read(self, owner: str, collection: str, key: str) -> Deferred[tuple[Any, str] | None]:
        def work(connection: sqlite3.Connection) -> tuple[Any, str] | None:
            row = connection.execute(
                "SELECT value, version FROM player_storage"
                " WHERE owner = ? AND collection = ? AND key = ?",
                (owner, collection, key),
            ).fetchone()
            return None if row is None else (decode_value(row[0]), str(row[1]))

        return self._store.run(self, work)

    def write_many(self, writes: Iterable[tuple[Any, ...]]) -> Deferred[list[str]]:
        try:
            checked = writes_of(writes)
            encoded = [encode_value(write.value).decode() for write in checked]
        except (TypeError, ValueError) as error:
            return fail(error)

        def work(connection: sqlite3.Connection) -> list[str]:
            versions = []
            for write, data in zip(checked, encoded):
                write.check(_stored_version(connection, write.owner, write.collection, write.key))
                connection.execute(
                    "UPDATE counters SET value = value + 1 WHERE name = 'storage_version'"
                )
                (number,) = connection.execute(
                    "SELECT value FROM counters WHERE name = 'storage_version'"
                ).fetchone()
                connection.execute(
                    "INSERT INTO player_storage (owner, collection, key, value, version)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (owner, collection, key)"
                    " DO UPDATE SET value = excluded.value, version = excluded.version",
                    (write.owner, write.collection, write.key, data, str(number)),
                )
                versions.append(str(number))
            return versions

        return self._store.run(self, _atomic(work))

    def list(self, owner: str, collection: str) -> Deferred[list[tuple[str, Any, str]]]:
        def work(connection: sqlite3.Connection) -> list[tuple[str, Any, str]]:
            rows = connection.execute(
                "SELECT key, value, version FROM player_storage"
                " WHERE owner = ? AND collection = ? ORDER BY key",
                (owner, collection),
            ).fetchall()
            return [(key, decode_value(value), str(version)) for key, value, version in rows]

        return self._store.run(self, work)

    def delete(
        self, owner: str, collection: str, key: str, version: Version = None
    ) -> Deferred[bool]:
        def work(connection: sqlite3.Connection) -> bool:
            stored = _stored_version(connection, owner, collection, key)
            if not version_matches(stored, version):
                raise VersionConflict(owner, collection, key, version)
            deleted = connection.execute(
                "DELETE FROM player_storage WHERE owner = ? AND collection = ? AND key = ?",
                (owner, collection, key),
            )
            return deleted.rowcount == 1

        return self._store.run(self, _atomic(work))

    def close(self) -> Deferred[None]:
        return self._store.let_go(self)
