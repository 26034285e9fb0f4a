"""The world demo: a field too big to send whole, where each player sees only what is near its avatar (area of interest)."""

from __future__ import annotations

import math
import random
from typing import Any, Hashable

from gameframe import Player, Room, action
from gameframe.interest import AreasOfInterest, InterestGrid


class World(Room):
    """
    C{npcs} wanderers on a C{size} × C{size} field, and the players walking
    toward the point they last chose (C{{"action": "move", "x": .., "y": ..}}).

    Each player has a view of its own: C{state["entities"]} holds only the
    entities within C{sight} of its avatar (its own included), each
    C{{"x", "y", "kind"}} with kind C{"npc"} or C{"player"}; they arrive and
    go as patch operations while it walks. C{state["width"]},
    C{state["height"]} and C{state["you"]} (its own entity id) say where
    it is.
    """

    max_players = 100
    tick_rate = 10
    patch_rate = 0.1
    reconnect_timeout = 30.0
    size = 4000
    npcs = 2000
    sight = 400.0
    speed = 200.0  # a player's, per second
    npc_speed = 40.0

    def on_create(self, options: dict[str, Any]) -> None:
        self._random = random.Random(self.room_id)
        self.grid = InterestGrid(cell_size=self.sight)
        self.areas = AreasOfInterest(self.grid, self.sight)
        self.targets: dict[str, tuple[float, float]] = {}
        self.headings: dict[str, float] = {}
        self.state = {"width": self.size, "height": self.size, "entities": {}}
        for n in range(self.npcs):
            self._put(f"n{n}", self._anywhere(), self._anywhere(), "npc")
        self.areas.update()

    def restore(self, snapshot: Any) -> None:
        super().restore(snapshot)
        # The grid is rebuilt from the saved entities; the wanderers pick new headings.
        self.grid = InterestGrid(cell_size=self.sight)
        self.areas = AreasOfInterest(self.grid, self.sight)
        self.headings = {}
        for entity, where in self.state["entities"].items():
            self.grid.place(entity, where["x"], where["y"])
            if where["kind"] == "player":
                self.areas.watch(entity, where["x"], where["y"])
        self.areas.update()

    def _anywhere(self) -> float:
        return round(self._random.uniform(0, self.size), 1)

    def _put(self, entity: str, x: float, y: float, kind: str) -> None:
        self.state["entities"][entity] = {"x": x, "y": y, "kind": kind}
        self.grid.place(entity, x, y)

    def on_join(self, player: Player, options: dict[str, Any]) -> None:
        x, y = self._anywhere(), self._anywhere()
        self._put(player.id, x, y, "player")
        self.areas.watch(player.id, x, y)
        self.areas.update()

    def on_leave(self, player: Player, reason: str) -> None:
        self.state["entities"].pop(player.id, None)
        self.grid.remove(player.id)
        self.areas.unwatch(player.id)
        self.targets.pop(player.id, None)

    @action
    def move(self, player: Player, x: float, y: float) -> None:
        self.targets[player.id] = (
            min(max(float(x), 0.0), self.size),
            min(max(float(y), 0.0), self.size),
        )

    def on_tick(self, dt: float) -> None:
        entities = self.state["entities"]
        self._wander(entities, dt)
        step = self.speed * dt
        for player_id, (tx, ty) in list(self.targets.items()):
            avatar = entities.get(player_id)
            if avatar is None:
                continue
            dx, dy = tx - avatar["x"], ty - avatar["y"]
            distance = math.hypot(dx, dy)
            if distance <= step:
                x, y = tx, ty
                del self.targets[player_id]
            else:
                x = round(avatar["x"] + dx / distance * step, 1)
                y = round(avatar["y"] + dy / distance * step, 1)
            self._put(player_id, x, y, "player")
            self.areas.watch(player_id, x, y)
        self.areas.update()

    def _wander(self, entities: dict[str, Any], dt: float) -> None:
        """Every wanderer walks on, turning now and then, and off the edges."""
        step = self.npc_speed * dt
        turn = self._random.random
        headings = self.headings
        size = self.size
        place = self.grid.place
        for entity, where in entities.items():
            if where["kind"] != "npc":
                continue
            heading = headings.get(entity)
            if heading is None or turn() < 0.05:
                heading = headings[entity] = turn() * 2 * math.pi
            x = where["x"] + math.cos(heading) * step
            y = where["y"] + math.sin(heading) * step
            if not (0 <= x <= size and 0 <= y <= size):
                headings[entity] = heading + math.pi
                continue
            where["x"] = x = round(x, 1)
            where["y"] = y = round(y, 1)
            place(entity, x, y)

    def view_key(self, player: Player) -> Hashable:
        return player.id

    def view_state(self, key: Hashable, tree: Any) -> Any:
        entities = tree["entities"]
        seen = self.areas.visible(key)
        return {
            "width": tree["width"],
            "height": tree["height"],
            "you": key,
            "entities": {e: entities[e] for e in seen if e in entities},
        }
