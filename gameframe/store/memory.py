"""
Saved rooms and player storage in memory: the reference semantics every
backend matches, answering with Deferreds that have already fired. Lost
when the process ends.
"""

from __future__ import annotations

import itertools
from typing import Any, Iterable

import attrs
from zope.interface import implementer

from gameframe._async import answers
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


@implementer(IRoomStore)
class MemoryRoomStore:
    """Saved rooms in a dict: for tests, and the reference the other backends match."""

    def __init__(self) -> None:
        self._rooms: dict[str, SavedRoom] = {}

    @answers
    def save(self, room: SavedRoom) -> bool:
        held = self._rooms.get(room.room_id)
        if held is not None and (held.node not in (room.node, "") or held.version >= room.version):
            return False
        self._rooms[room.room_id] = room
        return True

    @answers
    def release(self, room_id: str, node: str) -> bool:
        held = self._rooms.get(room_id)
        if held is None or held.node != node:
            return False
        self._rooms[room_id] = attrs.evolve(held, node="")
        return True

    @answers
    def delete(self, room_id: str, node: str) -> bool:
        held = self._rooms.get(room_id)
        if held is None or held.node != node:
            return False
        del self._rooms[room_id]
        return True

    @answers
    def claim(self, node: str, owners: Iterable[str] | None = None) -> list[SavedRoom]:
        wanted = None if owners is None else set(owners)
        claimed = []
        for room_id in sorted(self._rooms):
            held = self._rooms[room_id]
            if (held.node != node) if wanted is None else (held.node in wanted):
                self._rooms[room_id] = attrs.evolve(held, node=node)
                claimed.append(self._rooms[room_id])
        return claimed

    @answers
    def load(self, room_id: str) -> SavedRoom | None:
        return self._rooms.get(room_id)

    @answers
    def close(self) -> None:
        pass


@implementer(IPlayerStorage)
class MemoryPlayerStorage(WritesOne):
    """
    Player storage in a dict (the default without C{--store}: lost on
    restart). Values are kept as JSON, so what comes back is a copy and
    what JSON cannot hold is refused, as the other backends do.
    """

    def __init__(self) -> None:
        # (owner, collection) -> key -> (JSON, version)
        self._objects: dict[tuple[str, str], dict[str, tuple[bytes, str]]] = {}
        self._versions = itertools.count(1)

    def _stored_version(self, owner: str, collection: str, key: str) -> str | None:
        held = self._objects.get((owner, collection), {}).get(key)
        return None if held is None else held[1]

    @answers
    def read(self, owner: str, collection: str, key: str) -> tuple[Any, str] | None:
        held = self._objects.get((owner, collection), {}).get(key)
        return None if held is None else (decode_value(held[0]), held[1])

    @answers
    def write_many(self, writes: Iterable[tuple[Any, ...]]) -> list[str]:
        return self._write_all(writes)

    def _write_all(self, writes: Iterable[tuple[Any, ...]]) -> list[str]:
        checked = writes_of(writes)
        encoded = [encode_value(write.value) for write in checked]
        # Checked in order against what the writes before them leave, then all applied.
        staged: dict[tuple[str, str, str], str] = {}
        versions = []
        for write in checked:
            place = (write.owner, write.collection, write.key)
            write.check(staged[place] if place in staged else self._stored_version(*place))
            staged[place] = str(next(self._versions))
            versions.append(staged[place])
        for write, data, version in zip(checked, encoded, versions):
            self._objects.setdefault((write.owner, write.collection), {})[write.key] = (
                data,
                version,
            )
        return versions

    @answers
    def list(self, owner: str, collection: str) -> list[tuple[str, Any, str]]:
        held = self._objects.get((owner, collection), {})
        return [(key, decode_value(held[key][0]), held[key][1]) for key in sorted(held)]

    @answers
    def delete(self, owner: str, collection: str, key: str, version: Version = None) -> bool:
        stored = self._stored_version(owner, collection, key)
        if not version_matches(stored, version):
            raise VersionConflict(owner, collection, key, version)
        if stored is None:
            return False
        del self._objects[(owner, collection)][key]
        if not self._objects[(owner, collection)]:
            del self._objects[(owner, collection)]
        return True

    @answers
    def close(self) -> None:
        pass
