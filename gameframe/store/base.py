"""
What gameframe keeps between runs: saved rooms (snapshots) and player
storage, behind two interfaces with one contract each. Backends: memory
(tests; lost on restart), SQLite (one machine) and Redis (a cluster).

Every call returns a Deferred; a backend never blocks the reactor. A
backend that cannot reach its storage (Redis down) fails the call with
L{Unavailable<gameframe.cluster.backend.Unavailable>} at once; player
storage refuses a value JSON cannot hold with L{TypeError}.
"""

from __future__ import annotations

from typing import Any, Iterable, Union

import attrs
import orjson
from zope.interface import Interface

# A version string meaning "only if there is no object yet" in a player-storage write.
ABSENT = "*"

Version = Union[str, None]


class VersionConflict(Exception):
    """
    A player-storage write or delete named a version the object does not
    have (or C{"*"} and the object exists): someone else wrote it first.
    """

    def __init__(self, owner: str, collection: str, key: str, wanted: str | None) -> None:
        super().__init__(
            f"{owner}/{collection}/{key}: version {wanted!r} is not the stored one"
        )
        self.owner = owner
        self.collection = collection
        self.key = key
        self.wanted = wanted


@attrs.frozen
class SavedRoom:
    """
    One room as saved: opaque bytes the engine encodes (the author's snapshot
    and the engine's seats), the node that owns it now (C{""}: released by a
    graceful stop, for any node to claim), and a version that only grows.
    """

    room_id: str
    room_type: str
    node: str
    version: int
    data: bytes


class IRoomStore(Interface):
    """
    Where rooms are saved so they outlive their process. Writes are atomic
    per room. A node may write only rooms it owns (or new ones): after
    another node claimed a room, the old owner's writes are refused, so a
    node cut off from the others cannot overwrite what came after it.
    """

    def save(room: SavedRoom) -> Any:
        """
        Store C{room} if no room of that id is saved, or the saved one is
        owned by C{room.node} (or released, C{""}) and has a lower version.
        A Deferred of L{True} if stored, L{False} if refused (owned by
        another node, or not newer).
        """

    def release(room_id: str, node: str) -> Any:
        """
        Mark a room C{node} owns as owned by no node (a graceful stop): any
        node may claim it. A Deferred of whether it was C{node}'s.
        """

    def delete(room_id: str, node: str) -> Any:
        """The room was disposed: forget it if C{node} owns it. A Deferred of whether it did."""

    def claim(node: str, owners: Iterable[str] | None = None) -> Any:
        """
        Take over saved rooms: every room owned by one of C{owners} (C{""}
        for released rooms; L{None}: every room not owned by C{node})
        becomes C{node}'s, atomically per room (two nodes claiming at once
        never both get one). A Deferred of the L{SavedRoom}s now C{node}'s,
        with C{node} set.
        """

    def load(room_id: str) -> Any:
        """A Deferred of the saved room, or L{None}."""

    def close() -> Any:
        """Let go of connections and threads: a Deferred that fires once done."""


class IPlayerStorage(Interface):
    """
    Objects owned by a string (usually the authenticated identity), grouped
    in collections and keyed, each with a version string that changes on
    every write. Values are anything JSON can hold.
    """

    def read(owner: str, collection: str, key: str) -> Any:
        """A Deferred of C{(value, version)}, or L{None} if there is no such object."""

    def write(
        owner: str, collection: str, key: str, value: Any, version: Version = None
    ) -> Any:
        """
        Write one object: a Deferred of its new version. C{version=None}
        writes whatever is there; C{"*"} only if there is no object yet;
        any other version only if it is the stored one. Otherwise it fails
        with L{VersionConflict} and nothing is written.
        """

    def write_many(writes: Iterable[tuple[Any, ...]]) -> Any:
        """
        Several writes in one transaction, each C{(owner, collection, key,
        value)} or C{(owner, collection, key, value, version)}: a Deferred of
        their new versions in order. Each is checked against what the writes
        before it in the batch leave; if any version does not match, nothing
        is written and it fails with L{VersionConflict}.
        """

    def list(owner: str, collection: str) -> Any:
        """A Deferred of C{[(key, value, version), ...]} in the collection, sorted by key."""

    def delete(owner: str, collection: str, key: str, version: Version = None) -> Any:
        """
        Delete one object (C{version}: only if it is the stored one, else
        L{VersionConflict}): a Deferred of whether there was one.
        """

    def close() -> Any:
        """Let go of connections and threads: a Deferred that fires once done."""


# -- helpers every backend shares -------------------------------------------------------


def version_matches(stored: str | None, wanted: Version) -> bool:
    """Whether an object at version C{stored} (L{None}: absent) may be written as C{wanted} asks."""
    if wanted is None:
        return True
    if wanted == ABSENT:
        return stored is None
    return stored == wanted


def encode_value(value: Any) -> bytes:
    """A player-storage value as JSON; L{TypeError} for what JSON cannot hold."""
    try:
        return orjson.dumps(value)
    except TypeError as error:  # orjson.JSONEncodeError is one
        raise TypeError(f"player storage keeps JSON values only: {error}") from None


def decode_value(data: bytes | str) -> Any:
    """A player-storage value back from its JSON."""
    return orjson.loads(data)


@attrs.frozen
class Write:
    """One write of a L{IPlayerStorage.write_many} batch, its shape checked."""

    owner: str
    collection: str
    key: str
    value: Any
    version: Version = None

    def check(self, stored: str | None) -> None:
        """Raise L{VersionConflict} unless the object, at version C{stored}, may be written."""
        if not version_matches(stored, self.version):
            raise VersionConflict(self.owner, self.collection, self.key, self.version)


def writes_of(writes: Iterable[tuple[Any, ...]]) -> list[Write]:
    """
    The C{(owner, collection, key, value[, version])} tuples of a batch as
    L{Write}s: L{ValueError} or L{TypeError} for one of another shape.
    """
    checked = []
    for write in writes:
        if not isinstance(write, (tuple, list)) or len(write) not in (4, 5):
            raise ValueError(
                f"a write is (owner, collection, key, value[, version]), not {write!r}"
            )
        owner, collection, key = write[:3]
        version = write[4] if len(write) == 5 else None
        for name, text in (("owner", owner), ("collection", collection), ("key", key)):
            if not isinstance(text, str):
                raise TypeError(f"a write's {name} is a string, not {text!r}")
        if version is not None and not isinstance(version, str):
            raise TypeError(f"a version is a string or None, not {version!r}")
        checked.append(Write(owner, collection, key, write[3], version))
    return checked


class WritesOne:
    """C{write} as a C{write_many} of one write: how every backend writes one object."""

    def write_many(self, writes: Iterable[tuple[Any, ...]]) -> Any:
        raise NotImplementedError

    def write(
        self, owner: str, collection: str, key: str, value: Any, version: Version = None
    ) -> Any:
        return self.write_many([(owner, collection, key, value, version)]).addCallback(
            lambda versions: versions[0]
        )
