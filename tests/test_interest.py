"""Area of interest: the grid finds what a brute force finds; per-player views show only what is near."""

from __future__ import annotations

from typing import Any, Hashable

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from gameframe import Player, Room, action
from gameframe.interest import AreasOfInterest, InterestGrid
from gameframe.testing import Harness

coordinate = st.floats(min_value=-500, max_value=500, allow_nan=False)
operation = st.one_of(
    st.tuples(st.just("place"), st.integers(0, 20), coordinate, coordinate),
    st.tuples(st.just("remove"), st.integers(0, 20), st.just(0.0), st.just(0.0)),
)


def brute_near(positions: dict[int, tuple[float, float]], x: float, y: float, r: float) -> set[int]:
    return {e for e, (ex, ey) in positions.items() if (ex - x) ** 2 + (ey - y) ** 2 <= r * r}


def run(
    operations: list[tuple[str, int, float, float]],
    grid: InterestGrid,
    positions: dict[int, tuple[float, float]],
) -> None:
    """Place and remove on the grid, and keep the same positions beside it for a brute force."""
    for kind, entity, ex, ey in operations:
        if kind == "place":
            grid.place(entity, ex, ey)
            positions[entity] = (ex, ey)
        else:
            grid.remove(entity)
            positions.pop(entity, None)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(operation, max_size=60),
    st.floats(min_value=1, max_value=200),
    coordinate,
    coordinate,
    st.floats(min_value=0, max_value=300),
)
def test_the_grid_finds_what_a_brute_force_finds(
    operations: list[tuple[str, int, float, float]],
    cell_size: float,
    x: float,
    y: float,
    radius: float,
) -> None:
    grid = InterestGrid(cell_size)
    positions: dict[int, tuple[float, float]] = {}
    run(operations, grid, positions)
    assert len(grid) == len(positions)
    assert grid.near(x, y, radius) == brute_near(positions, x, y, radius)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(operation, max_size=10), min_size=1, max_size=8), coordinate, coordinate)
def test_entering_and_leaving_add_up_to_what_is_visible(
    rounds: list[list[tuple[str, int, float, float]]], x: float, y: float
) -> None:
    grid = InterestGrid(50)
    areas = AreasOfInterest(grid, 120)
    areas.watch("p", x, y)
    positions: dict[int, tuple[float, float]] = {}
    mirror: set[Hashable] = set()
    for operations in rounds:
        run(operations, grid, positions)
        entered, left = areas.update().get("p", (set(), set()))
        assert not entered & left
        mirror = (mirror - left) | entered
        assert mirror == brute_near(positions, x, y, 120) == areas.visible("p")


class BadCellSize(SynchronousTestCase):
    def test_a_cell_size_must_be_positive(self) -> None:
        with self.assertRaises(ValueError):
            InterestGrid(0)


class Field(Room):
    """
    A world of NPCs where each player sees only what is within 100 of its
    avatar: the per-player view pattern the docs show.
    """

    radius = 100.0

    def on_create(self, options: dict[str, Any]) -> None:
        self.grid = InterestGrid(cell_size=self.radius)
        self.areas = AreasOfInterest(self.grid, self.radius)
        self.state = {"entities": {}}
        for n in range(50):
            self.put(f"npc{n}", n * 40.0, 0.0)

    def put(self, entity: str, x: float, y: float) -> None:
        self.state["entities"][entity] = {"x": x, "y": y}
        self.grid.place(entity, x, y)

    def on_join(self, player: Player, options: dict[str, Any]) -> None:
        self.put(player.id, 0.0, 0.0)
        self.areas.watch(player.id, 0.0, 0.0)
        self.areas.update()

    def on_leave(self, player: Player, reason: str) -> None:
        self.state["entities"].pop(player.id, None)
        self.grid.remove(player.id)
        self.areas.unwatch(player.id)

    @action
    def walk(self, player: Player, x: float, y: float) -> None:
        self.put(player.id, x, y)
        self.areas.watch(player.id, x, y)
        self.areas.update()

    def view_key(self, player: Player) -> Hashable:
        return player.id

    def view_state(self, key: Hashable, tree: Any) -> Any:
        entities = tree["entities"]
        return {"entities": {e: entities[e] for e in self.areas.visible(key) if e in entities}}


class PerPlayerViewTests(SynchronousTestCase):
    def test_a_player_sees_only_what_is_near_and_the_rest_as_it_walks(self) -> None:
        kit = Harness({"field": Field})
        alice = kit.connect()
        alice.join_or_create("field")
        near = set(alice.state["entities"])
        self.assertEqual(near, {alice.player_id, "npc0", "npc1", "npc2"})
        alice.request("walk", x=1000.0, y=0.0)
        kit.advance(0.1)
        seen = set(alice.state["entities"])
        self.assertEqual(seen, {alice.player_id, "npc23", "npc24", "npc25", "npc26", "npc27"})
        self.assertNotIn("npc0", seen)  # left her area: removed by a patch


def test_an_entity_a_hair_across_a_cell_border_is_found() -> None:
    # Found by hypothesis: its squared distance underflows to 0, and it sits
    # in the cell next to the one a radius of 0 reads.
    grid = InterestGrid(1.0)
    grid.place(0, 0.0, -9.28e-292)
    assert grid.near(0.0, 0.0, 0.0) == brute_near({0: (0.0, -9.28e-292)}, 0.0, 0.0, 0.0) == {0}
