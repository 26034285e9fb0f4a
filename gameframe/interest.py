"""Area of interest: entities in a uniform grid, and what each watcher sees within its radius, as it enters and leaves."""

from __future__ import annotations

import math
from typing import Hashable, Iterator

import attrs

Cell = tuple[int, int]


@attrs.frozen
class Interest:
    """
    A room's area of interest (L{gameframe.Room.interest}): each player's
    view of the state holds, of the dict at C{state[collection]} (entities
    by id, each with numeric C{x} and C{y}), only the entities within
    C{radius} of the entity it follows (by default the one whose key is its
    player id; see L{gameframe.Room.follow}). Everything else in the state
    is the same for every player. With C{followed_field}, each view also
    holds that field: the id of the entity the player follows (so a client
    knows which entity is its own, or whom it is watching).

    The engine keeps the entities in an L{InterestGrid} of C{cell_size}
    (default: the radius) from the state's own changes: a patch tick costs
    what moved and who is near it, not players times entities.
    """

    collection: str
    radius: float
    cell_size: float | None = None
    #: The name of a field each player's view gets (not one of the state's
    #: own), holding the id of the entity it follows (None: no such field).
    followed_field: str | None = None

    def __attrs_post_init__(self) -> None:
        if not self.radius > 0:
            raise ValueError(f"radius must be more than 0, not {self.radius!r}")
        if self.cell_size is not None and not self.cell_size > 0:
            raise ValueError(f"cell_size must be more than 0, not {self.cell_size!r}")


class InterestGrid:
    """
    Entities by position in square cells of C{cell_size}: placing or moving
    one is O(1), and the entities near a point are found by looking only at
    the cells a circle of that radius touches, not at every entity.

    Pick a cell size about the radius players see: a query then reads about
    nine cells.
    """

    def __init__(self, cell_size: float) -> None:
        if not cell_size > 0:
            raise ValueError(f"cell_size must be more than 0, not {cell_size!r}")
        self.cell_size = float(cell_size)
        self._cells: dict[Cell, dict[Hashable, tuple[float, float]]] = {}
        self._where: dict[Hashable, Cell] = {}

    def _cell(self, x: float, y: float) -> Cell:
        size = self.cell_size
        return (math.floor(x / size), math.floor(y / size))

    def place(self, entity: Hashable, x: float, y: float) -> None:
        """Put C{entity} at C{(x, y)} (new, or moved from where it was)."""
        self.move(entity, x, y)

    def remove(self, entity: Hashable) -> None:
        """Take C{entity} out (nothing happens if it is not in)."""
        cell = self._where.pop(entity, None)
        if cell is not None:
            self._discard(entity, cell)

    def _discard(self, entity: Hashable, cell: Cell) -> None:
        members = self._cells[cell]
        del members[entity]
        if not members:
            del self._cells[cell]

    def cell_of(self, entity: Hashable) -> Cell | None:
        """The cell C{entity} is in (None: not in the grid)."""
        return self._where.get(entity)

    def position(self, entity: Hashable) -> tuple[float, float] | None:
        cell = self._where.get(entity)
        return None if cell is None else self._cells[cell][entity]

    def near(self, x: float, y: float, radius: float) -> set[Hashable]:
        """The entities at most C{radius} from C{(x, y)}."""
        found: set[Hashable] = set()
        add = found.add
        limit = radius * radius
        cells = self._cells
        size = self.cell_size
        # A cell wholly inside the circle is taken whole, one wholly outside
        # is skipped: only the cells the circle's edge crosses are read entity
        # by entity. The tests widen each cell by a hair, so rounding never
        # takes whole a cell that holds an entity just outside the circle.
        hair = 1e-9 * (abs(x) + abs(y) + radius + size)
        x0, y0, x1, y1 = self._box(x, y, radius)
        rows = []
        for cy in range(y0, y1 + 1):
            top = cy * size - hair - y
            bottom = top + size + 2 * hair
            far = max(-top, bottom)
            close = 0.0 if top <= 0.0 <= bottom else min(abs(top), abs(bottom))
            rows.append((cy, far * far, close * close))
        for cx in range(x0, x1 + 1):
            left = cx * size - hair - x
            right = left + size + 2 * hair
            far_x = max(-left, right)
            far_x *= far_x
            close_x = 0.0 if left <= 0.0 <= right else min(abs(left), abs(right))
            close_x *= close_x
            for cy, far_y, close_y in rows:
                if close_x + close_y > limit:
                    continue
                members = cells.get((cx, cy))
                if not members:
                    continue
                if far_x + far_y <= limit:
                    found.update(members)
                    continue
                for entity, (ex, ey) in members.items():
                    dx = ex - x
                    dy = ey - y
                    if dx * dx + dy * dy <= limit:
                        add(entity)
        return found

    def move(self, entity: Hashable, x: float, y: float) -> tuple[Cell | None, Cell]:
        """L{place}, and the cells C{entity} was in (None: new) and is in now."""
        size = self.cell_size
        cell = (math.floor(x / size), math.floor(y / size))
        old = self._where.get(entity)
        if old != cell:
            if old is not None:
                self._discard(entity, old)
            self._where[entity] = cell
        members = self._cells.get(cell)
        if members is None:
            self._cells[cell] = {entity: (x, y)}
        else:
            members[entity] = (x, y)
        return old, cell

    def _box(self, x: float, y: float, radius: float) -> tuple[int, int, int, int]:
        """The first and last cells, across and down, of a circle's box."""
        # A hair wider than the circle's box: rounding (of x - radius, or of a
        # squared distance that underflows to 0) must not leave out a cell
        # holding an entity the distance test counts in.
        margin = radius + 1e-9 * (abs(x) + abs(y) + radius + 1.0)
        x0, y0 = self._cell(x - margin, y - margin)
        x1, y1 = self._cell(x + margin, y + margin)
        return x0, y0, x1, y1

    def cells_within(self, x: float, y: float, radius: float) -> Iterator[Cell]:
        """Every cell a circle of C{radius} around C{(x, y)} may touch."""
        x0, y0, x1, y1 = self._box(x, y, radius)
        for cx in range(x0, x1 + 1):
            for cy in range(y0, y1 + 1):
                yield (cx, cy)

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, entity: object) -> bool:
        return entity in self._where


class AreasOfInterest:
    """
    What each watcher (a player, usually) sees of an L{InterestGrid}: the
    entities within C{radius} of the point it watches from (its avatar).

    L{update} says, per watcher, what entered and what left its area since
    the last update: what a per-player view adds and removes. A watcher's
    own area is found from the grid's cells, so an update costs about the
    watchers times the entities near each, never watchers times entities.
    """

    def __init__(self, grid: InterestGrid, radius: float) -> None:
        self.grid = grid
        self.radius = radius
        self._centers: dict[Hashable, tuple[float, float]] = {}
        self._seen: dict[Hashable, set[Hashable]] = {}

    def watch(self, watcher: Hashable, x: float, y: float) -> None:
        """C{watcher} sees from C{(x, y)} from now on (new, or moved)."""
        self._centers[watcher] = (x, y)
        self._seen.setdefault(watcher, set())

    def unwatch(self, watcher: Hashable) -> None:
        self._centers.pop(watcher, None)
        self._seen.pop(watcher, None)

    def visible(self, watcher: Hashable) -> set[Hashable]:
        """What C{watcher} saw at the last L{update} (empty before the first)."""
        return self._seen.get(watcher, set())

    def update(self) -> dict[Hashable, tuple[set[Hashable], set[Hashable]]]:
        """
        Recompute every area: C{{watcher: (entered, left)}}, only for the
        watchers whose area changed.
        """
        changes: dict[Hashable, tuple[set[Hashable], set[Hashable]]] = {}
        near = self.grid.near
        radius = self.radius
        for watcher, (x, y) in self._centers.items():
            now = near(x, y, radius)
            before = self._seen[watcher]
            if now != before:
                changes[watcher] = (now - before, before - now)
                self._seen[watcher] = now
        return changes
