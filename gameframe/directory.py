"""The in-memory room directory: one process's rooms, indexed per type, listings kept current by events."""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from gameframe.interfaces import IRoomDirectory, IRoomHandle


@implementer(IRoomDirectory)
class LocalDirectory:
    """
    The rooms of one process. Each room's listing entry is stored when the
    room reports a change (L{changed}), so listing and matchmaking read
    stored entries of one room type, never every room's live state.
    """

    def __init__(self, node: str = "local") -> None:
        self.node = node  # the node's name, shown in every listing entry
        self._rooms: dict[str, IRoomHandle] = {}
        self._by_type: dict[str, dict[str, IRoomHandle]] = {}
        self._entries: dict[str, dict[str, Any]] = {}  # room id -> listing entry
        self._seats: dict[str, str] = {}  # player id -> room id

    def register(self, room: IRoomHandle) -> None:
        self._rooms[room.room_id] = room
        self._by_type.setdefault(room.room_type, {})[room.room_id] = room

    def changed(self, room: IRoomHandle) -> None:
        if self._rooms.get(room.room_id) is room:
            self._entries[room.room_id] = room.describe()

    def unregister(self, room: IRoomHandle) -> None:
        if self._rooms.get(room.room_id) is not room:
            return
        del self._rooms[room.room_id]
        self._entries.pop(room.room_id, None)
        of_type = self._by_type[room.room_type]
        del of_type[room.room_id]
        if not of_type:
            del self._by_type[room.room_type]

    def get(self, room_id: str) -> IRoomHandle | None:
        return self._rooms.get(room_id)

    def public_entry(self, room_id: str) -> dict[str, Any] | None:
        """A room's listing entry as clients see it (its node included), if it has one."""
        entry = self._entries.get(room_id)
        return None if entry is None else _public(entry, self.node)

    def rooms(self, room_type: str | None = None) -> list[IRoomHandle]:
        if room_type is None:
            return list(self._rooms.values())
        return list(self._by_type.get(room_type, {}).values())

    def joinable(self, room_type: str) -> list[IRoomHandle]:
        entries = self._entries
        return [
            room
            for room_id, room in self._by_type.get(room_type, {}).items()
            if (entry := entries.get(room_id)) is not None and entry["joinable"]
        ]

    def listing(self, room_type: str | None = None) -> list[dict[str, Any]]:
        if room_type is None:
            ids: Any = self._rooms
        else:
            ids = self._by_type.get(room_type, {})
        entries = self._entries
        node = self.node
        return [
            _public(entry, node)
            for room_id in ids
            if (entry := entries.get(room_id)) is not None and entry["listed"]
        ]

    def seat(self, player_id: str, room_id: str) -> None:
        self._seats[player_id] = room_id

    def unseat(self, player_id: str, room_id: str) -> None:
        if self._seats.get(player_id) == room_id:
            del self._seats[player_id]

    def room_of(self, player_id: str) -> IRoomHandle | None:
        room_id = self._seats.get(player_id)
        return None if room_id is None else self._rooms.get(room_id)


# Entry fields for the directory's own use, not shown to clients.
_PRIVATE_FIELDS = ("joinable", "listed")


def _public(entry: dict[str, Any], node: str) -> dict[str, Any]:
    public = {k: v for k, v in entry.items() if k not in _PRIVATE_FIELDS}
    public["node"] = node
    return public
