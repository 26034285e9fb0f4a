"""The world demo: a field too big to send whole, where each player sees only what is near its avatar (area of interest)."""

from __future__ import annotations

import math
import random
from typing import Any

from gameframe import Player, Room, action
from gameframe.interest import Interest
from gameframe.tracking import tracked


@tracked
class WorldState:
    """The whole world: C{entities} by id, each C{{"x", "y", "kind"}}."""

    width: int
    height: int
    entities: dict[str, dict[str, Any]]


class World(Room):
    """
    C{npcs} wanderers on a C{size} × C{size} field, and the players walking
    toward the point they last chose (C{{"action": "move", "x": .., "y": ..}}).

    The room's C{interest} gives each player a view of its own:
    C{state["entities"]} holds only the entities within C{sight} of its
    avatar (the entity keyed by its player id), each C{{"x", "y", "kind"}}
    with kind C{"npc"} or C{"player"}; they arrive and go as patch
    operations while it walks. C{state["width"]} and C{state["height"]}
    say how big the field is, and C{state["you"]} is its own entity id. The state is tracked, so a patch tick costs
    what moved, not the size of the world.
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
    interest = Interest(collection="entities", radius=sight, followed_field="you")

    def on_create(self, options: dict[str, Any]) -> None:
        self._random = random.Random(self.room_id)
        self.targets: dict[str, tuple[float, float]] = {}
        self.headings: dict[str, float] = {}
        self.state = WorldState(width=self.size, height=self.size, entities={})
        entities = self.state.entities
        for n in range(self.npcs):
            entities[f"n{n}"] = {"x": self._anywhere(), "y": self._anywhere(), "kind": "npc"}

    def restore(self, snapshot: Any) -> None:
        super().restore(snapshot)
        # The saved tree, tracked again; the wanderers pick new headings.
        self.state = WorldState(**self.state)
        self.headings = {}

    def _anywhere(self) -> float:
        return round(self._random.uniform(0, self.size), 1)

    def on_join(self, player: Player, options: dict[str, Any]) -> None:
        self.state.entities[player.id] = {
            "x": self._anywhere(), "y": self._anywhere(), "kind": "player"
        }

    def on_leave(self, player: Player, reason: str) -> None:
        self.state.entities.pop(player.id, None)
        self.targets.pop(player.id, None)

    @action
    def move(self, player: Player, x: float, y: float) -> None:
        self.targets[player.id] = (
            min(max(float(x), 0.0), self.size),
            min(max(float(y), 0.0), self.size),
        )

    def on_tick(self, dt: float) -> None:
        entities = self.state.entities
        self._wander(entities, dt)
        step = self.speed * dt
        for player_id, (tx, ty) in list(self.targets.items()):
            avatar = entities.get(player_id)
            if avatar is None:
                continue
            dx, dy = tx - avatar["x"], ty - avatar["y"]
            distance = math.hypot(dx, dy)
            if distance <= step:
                avatar["x"], avatar["y"] = tx, ty
                del self.targets[player_id]
            else:
                avatar["x"] = round(avatar["x"] + dx / distance * step, 1)
                avatar["y"] = round(avatar["y"] + dy / distance * step, 1)

    def _wander(self, entities: dict[str, Any], dt: float) -> None:
        """Every wanderer walks on, turning now and then, and off the edges."""
        step = self.npc_speed * dt
        turn = self._random.random
        headings = self.headings
        size = self.size
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
            where["x"] = round(x, 1)
            where["y"] = round(y, 1)
