"""State sync with an area of interest: each player's view holds only the entities near what it follows."""

from __future__ import annotations

from typing import Any, Hashable, Iterable

from gameframe._statetree import StateTree
from gameframe._sync import PatchSizes
from gameframe.codec import encode, encode_json
from gameframe.compact import PathTable
from gameframe.interest import Cell, Interest, InterestGrid
from gameframe.jsonpatch import JSON, Operation, _escape, _key, _unescape
from gameframe.player import Player
from gameframe.vocabulary import ENCODING_COMPACT, state_message


_EMPTY: frozenset[str] = frozenset()
_NUMBERS = (int, float)  # what a position's x and y may be (not bool)


class _Watcher:
    """One player's stream: what it follows, where from, and what it sees."""

    __slots__ = (
        "player", "follows", "center", "cells", "visible", "seq", "behind",
        "compact", "table", "changed", "entered", "left", "refocused",
    )

    def __init__(self, player: Player, follows: str) -> None:
        self.player = player
        self.follows = follows
        self.center: tuple[float, float] | None = None
        self.cells: list[Cell] = []  # the cells its area touches (where it is indexed)
        self.visible: set[str] | frozenset[str] = _EMPTY
        self.seq = 0
        self.behind = False  # missed a patch while congested: gets the full view next
        self.compact = False
        self.table = PathTable()  # the compact path table
        # This tick's operations for it (after the ones outside the
        # collection, which all get): the changes of the entities it kept
        # seeing, the entities that came into sight (added whole) and went
        # out of it (removed), and whether what it follows changed.
        self.changed: list[str] = []
        self.entered: list[str] = []
        self.left: list[str] = []
        self.refocused = False

    def clear(self) -> None:
        self.changed = []
        self.entered = []
        self.left = []
        self.refocused = False


class InterestSync:
    """
    Patches per player, each holding only what is near the entity it follows.

    The state's tree is brought level once per tick (from tracked changes,
    or a diff); its operations under C{state[collection]} are grouped by
    entity, the moved entities are placed in a grid, and each changed entity
    is looked at only by the players whose area touches its cells (before
    and after it moved). A player whose own center moved looks again at the
    cells around it. So a tick costs the changes and the players near them,
    not players times entities; the encoded operations of each entity are
    shared by every player who gets them.

    A player enters and leaves entities as C{add} and C{remove} operations
    of C{/collection/ID}; whatever is outside the collection reaches every
    player. It has the interface of L{gameframe._sync.StateSync}.
    """

    def __init__(self, interest: Interest, patch_sizes: PatchSizes) -> None:
        self.interest = interest
        self._collection = interest.collection
        self._prefix = "/" + _escape(interest.collection) + "/"
        self._radius = float(interest.radius)
        self._limit = self._radius * self._radius
        self._cell_size = float(interest.cell_size or interest.radius)
        self._patch_sizes = patch_sizes
        self._tree: StateTree | None = None
        self._grid = InterestGrid(self._cell_size)
        self._watchers: dict[str, _Watcher] = {}
        self._followers: dict[str, list[_Watcher]] = {}  # entity -> who follows it
        self._by_cell: dict[Cell, dict[str, _Watcher]] = {}
        self._refollow: set[str] = set()  # player ids whose center must be looked at again
        self._early: dict[str, str] = {}  # follows set before a player's first full state
        self._resume: dict[Hashable, int] = {}

    # -- who follows what ------------------------------------------------------

    def follow(self, player: Player, entity: Hashable) -> None:
        """From the next patch, C{player} sees what is near C{entity}."""
        key = _key(entity)
        watcher = self._watchers.get(player.id)
        if watcher is None:
            self._early[player.id] = key
            return
        if watcher.follows != key:
            self._followers_of(watcher.follows).remove(watcher)
            watcher.follows = key
            self._followers_of(key).append(watcher)
            self._refollow.add(player.id)
            watcher.refocused = self.interest.followed_field is not None

    def _followers_of(self, entity: str) -> list[_Watcher]:
        followers = self._followers.get(entity)
        if followers is None:
            followers = self._followers[entity] = []
        return followers

    def visible_to(self, player: Player) -> frozenset[str]:
        """The entities C{player} saw at the last patch (or full state)."""
        watcher = self._watchers.get(player.id)
        return frozenset(watcher.visible) if watcher is not None else frozenset()

    # -- the StateSync interface ------------------------------------------------

    def subscribe(
        self, player: Player, key: Hashable, state: Any, request_id: Any = None
    ) -> bytes:
        """Add C{player}: the encoded full state of its view to send it."""
        if self._tree is None:
            self._tree = StateTree(state)
            self._place_all()
        watcher = self._watchers.get(player.id)
        if watcher is None:
            follows = self._early.pop(player.id, None) or _key(player.id)
            watcher = self._watchers[player.id] = _Watcher(player, follows)
            self._followers_of(follows).append(watcher)
            watcher.seq = self._resume.pop(player.id, 0)
        watcher.player = player
        watcher.behind = False
        watcher.compact = getattr(player.link, "encoding", None) == ENCODING_COMPACT
        watcher.table.reset = watcher.compact
        self._look(watcher)
        return encode(state_message(watcher.seq, self._view(watcher), request_id))

    def unsubscribe(self, player: Player) -> None:
        self._early.pop(player.id, None)
        watcher = self._watchers.pop(player.id, None)
        if watcher is None:
            return
        self._unindex(watcher)
        followers = self._followers.get(watcher.follows)
        if followers is not None:
            followers.remove(watcher)
            if not followers:
                del self._followers[watcher.follows]
        self._refollow.discard(player.id)
        if not self._watchers:
            self._tree = None
            self._grid = InterestGrid(self._cell_size)

    def is_subscribed(self, player: Player) -> bool:
        return player.id in self._watchers

    def key_of(self, player: Player) -> Hashable:
        return player.id if player.id in self._watchers else None

    def sequences(self) -> list[list[Any]]:
        found = dict(self._resume)
        found.update((pid, watcher.seq) for pid, watcher in self._watchers.items())
        return [[key, seq] for key, seq in found.items()]

    def resume(self, sequences: Iterable[Any]) -> None:
        for key, seq in sequences:
            self._resume[key] = seq

    # -- the tick ---------------------------------------------------------------

    def patch(self, state: Any) -> int:
        """Send each player the changes of its view since its last patch; the number of patches sent."""
        tree = self._tree
        if tree is None:
            return 0
        ops = tree.advance(state)
        if not ops and not self._refollow and not any(w.behind for w in self._watchers.values()):
            return 0
        shared: list[Operation] = []
        by_entity: dict[str, list[Operation]] = {}
        prefix = self._prefix
        cut = len(prefix)
        for op in ops:
            path = op["path"]
            if path.startswith(prefix):
                entity = _unescape(path[cut:].partition("/")[0])
                found = by_entity.get(entity)
                if found is None:
                    by_entity[entity] = [op]
                else:
                    found.append(op)
            elif prefix.startswith(path + "/"):  # the root or the collection itself changed
                return self._start_over()
            else:
                shared.append(op)
        moved = self._move_entities(by_entity)
        looked = self._move_watchers(by_entity)
        self._tell_near(by_entity, moved, looked)
        return self._send(shared, by_entity)

    def _move_entities(self, by_entity: dict[str, list[Operation]]) -> list[tuple[str, Cell | None, Cell | None]]:
        """Place the changed entities in the grid: (entity, cell before, cell now) for each."""
        grid = self._grid
        collection = self._entities()
        moved: list[tuple[str, Cell | None, Cell | None]] = []
        for entity in by_entity:
            value = collection.get(entity)
            x = y = None
            if type(value) is dict:
                x = value.get("x")
                y = value.get("y")
            if type(x) in _NUMBERS and type(y) in _NUMBERS:
                moved.append((entity, *grid.move(entity, x, y)))  # type: ignore[arg-type]
            else:
                before = grid.cell_of(entity)
                grid.remove(entity)
                moved.append((entity, before, None))
        return moved

    def _move_watchers(self, by_entity: dict[str, list[Operation]]) -> set[_Watcher]:
        """Look again around every player whose center changed: those looked at."""
        looked: set[_Watcher] = set()
        again = self._refollow
        self._refollow = set()
        for entity in by_entity:
            for follower in self._followers.get(entity, ()):
                again.add(follower.player.id)
        if not again:
            return looked
        changed = by_entity.keys()
        for player_id in again:
            watcher = self._watchers.get(player_id)
            if watcher is None:
                continue
            before = watcher.visible
            self._look(watcher)
            now = watcher.visible
            looked.add(watcher)
            if before:
                watcher.left.extend(before - now)
                stayed = before & now
                if stayed:
                    watcher.changed.extend(stayed & changed if len(stayed) < len(changed) else changed & stayed)
                watcher.entered.extend(now - before)
            else:
                watcher.entered.extend(now)
        return looked

    def _tell_near(
        self,
        by_entity: dict[str, list[Operation]],
        moved: list[tuple[str, Cell | None, Cell | None]],
        looked: set[_Watcher],
    ) -> None:
        """Each changed entity, to the players (not looked at again) whose area holds or held it."""
        by_cell = self._by_cell
        position = self._grid.position
        limit = self._limit
        for entity, before, now in moved:
            near = by_cell.get(before) if before is not None else None
            if now is not None and now != before:
                also = by_cell.get(now)
                if also:
                    near = {**near, **also} if near else also
            if not near:
                continue
            where = position(entity) if now is not None else None
            for watcher in near.values():
                if watcher in looked:
                    continue
                center = watcher.center
                inside = False
                if where is not None and center is not None:
                    dx = where[0] - center[0]
                    dy = where[1] - center[1]
                    inside = dx * dx + dy * dy <= limit
                visible = watcher.visible
                if entity in visible:
                    if inside:
                        watcher.changed.append(entity)
                    else:
                        visible.discard(entity)  # type: ignore[union-attr]
                        watcher.left.append(entity)
                elif inside:
                    if visible:
                        visible.add(entity)  # type: ignore[union-attr]
                    else:
                        watcher.visible = {entity}
                    watcher.entered.append(entity)

    def _send(self, shared: list[Operation], by_entity: dict[str, list[Operation]]) -> int:
        encoder = _Pieces(self, shared, by_entity)
        sent = 0
        for watcher in self._watchers.values():
            if shared or watcher.changed or watcher.entered or watcher.left or watcher.refocused:
                watcher.seq += 1
                sent += 1
                link = watcher.player.link
                if link is None or link.congested or watcher.behind:
                    watcher.clear()
                    if link is not None:
                        if link.congested:
                            watcher.behind = True
                        else:
                            self._catch_up(watcher)
                    continue
                if watcher.compact:
                    data = watcher.table.patch(watcher.seq, encoder.ops(watcher))
                else:
                    data = b'{"action":"patch","seq":%d,"patch":[%s]}' % (
                        watcher.seq, encoder.json(watcher)
                    )
                watcher.clear()
                self._patch_sizes(len(data))
                link.send_encoded(data)
            elif watcher.behind:
                link = watcher.player.link
                if link is not None and not link.congested:
                    self._catch_up(watcher)
        return sent

    def _catch_up(self, watcher: _Watcher) -> None:
        watcher.behind = False
        if watcher.compact:
            watcher.table.reset = True  # its path table is empty after a full state
        link = watcher.player.link
        assert link is not None
        link.send_encoded(encode(state_message(watcher.seq, self._view(watcher))))

    def _start_over(self) -> int:
        """The root or the collection was replaced: every player gets its whole view again."""
        self._grid = InterestGrid(self._cell_size)
        self._place_all()
        self._refollow.clear()
        for watcher in self._watchers.values():
            watcher.clear()
            watcher.seq += 1
            self._look(watcher)
            link = watcher.player.link
            if link is None or link.congested:
                watcher.behind = link is not None
            else:
                self._catch_up(watcher)
        return len(self._watchers)

    # -- views ------------------------------------------------------------------

    def _entities(self) -> dict[str, Any]:
        assert self._tree is not None
        tree = self._tree.tree
        found = tree.get(self._collection) if type(tree) is dict else None
        return found if type(found) is dict else {}

    def _place_all(self) -> None:
        place = self._grid.place
        for entity, value in self._entities().items():
            where = _position(value)
            if where is not None:
                place(entity, where[0], where[1])

    def _look(self, watcher: _Watcher) -> None:
        """Find C{watcher}'s center and everything near it; index it by the cells its area touches."""
        center = self._grid.position(watcher.follows)
        if center != watcher.center:
            watcher.center = center
            cells = [] if center is None else list(self._grid.cells_within(center[0], center[1], self._radius))
            if cells != watcher.cells:  # a move within its cells keeps its index
                self._unindex(watcher)
                watcher.cells = cells
                by_cell = self._by_cell
                player_id = watcher.player.id
                for cell in cells:
                    found = by_cell.get(cell)
                    if found is None:
                        by_cell[cell] = {player_id: watcher}
                    else:
                        found[player_id] = watcher
        if center is None:
            watcher.visible = _EMPTY
        else:
            watcher.visible = self._grid.near(center[0], center[1], self._radius)  # type: ignore[assignment]

    def _unindex(self, watcher: _Watcher) -> None:
        by_cell = self._by_cell
        player_id = watcher.player.id
        for cell in watcher.cells:
            found = by_cell.get(cell)
            if found is not None:
                found.pop(player_id, None)
                if not found:
                    del by_cell[cell]
        watcher.cells = []

    def _view(self, watcher: _Watcher) -> JSON:
        assert self._tree is not None
        tree = self._tree.tree
        if type(tree) is not dict:
            return tree
        collection = tree.get(self._collection)
        view = tree
        if type(collection) is dict:
            seen = {e: collection[e] for e in watcher.visible if e in collection}
            view = {k: (seen if k == self._collection else v) for k, v in tree.items()}
        field = self.interest.followed_field
        if field is not None:
            view = {**view, field: watcher.follows}
        return view


class _Pieces:
    """A tick's operations, each entity's encoded once for every player who gets them."""

    def __init__(self, sync: InterestSync, shared: list[Operation], by_entity: dict[str, list[Operation]]) -> None:
        self._prefix = sync._prefix
        self._field = sync.interest.followed_field
        self._collection = sync._entities()
        self._shared = shared
        self._by_entity = by_entity
        self._shared_bytes = encode_json(shared)[1:-1] if shared else b""
        self._changes: dict[str, bytes] = {}
        self._adds: dict[str, bytes] = {}
        self._removes: dict[str, bytes] = {}

    def _add(self, entity: str) -> Operation:
        return {"op": "add", "path": self._prefix + _escape(entity), "value": self._collection[entity]}

    def _remove(self, entity: str) -> Operation:
        return {"op": "remove", "path": self._prefix + _escape(entity)}

    def _refocus(self, watcher: _Watcher) -> Operation:
        assert self._field is not None
        return {"op": "replace", "path": "/" + _escape(self._field), "value": watcher.follows}

    def ops(self, watcher: _Watcher) -> list[Operation]:
        """C{watcher}'s operations of this tick."""
        ops = list(self._shared)
        by_entity = self._by_entity
        for entity in watcher.changed:
            ops.extend(by_entity[entity])
        ops.extend(self._remove(entity) for entity in watcher.left)
        ops.extend(self._add(entity) for entity in watcher.entered)
        if watcher.refocused:
            ops.append(self._refocus(watcher))
        return ops

    def json(self, watcher: _Watcher) -> bytes:
        """C{watcher}'s operations of this tick, encoded (a JSON array's inside)."""
        pieces = [self._shared_bytes] if self._shared else []
        if watcher.changed:
            changes = self._changes
            by_entity = self._by_entity
            for entity in watcher.changed:
                piece = changes.get(entity)
                if piece is None:
                    piece = changes[entity] = encode_json(by_entity[entity])[1:-1]
                pieces.append(piece)
        for entity in watcher.left:
            piece = self._removes.get(entity)
            if piece is None:
                piece = self._removes[entity] = encode_json(self._remove(entity))
            pieces.append(piece)
        for entity in watcher.entered:
            piece = self._adds.get(entity)
            if piece is None:
                piece = self._adds[entity] = encode_json(self._add(entity))
            pieces.append(piece)
        if watcher.refocused:
            pieces.append(encode_json(self._refocus(watcher)))
        return b",".join(pieces)


def _position(value: Any) -> tuple[float, float] | None:
    """An entity's C{(x, y)} from its tree (None: it has no numeric position)."""
    if type(value) is not dict:
        return None
    x: Any = value.get("x")
    y: Any = value.get("y")
    if type(x) not in _NUMBERS or type(y) not in _NUMBERS:
        return None
    return (x, y)
