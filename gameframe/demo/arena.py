"""The arena demo: a real-time room whose state every player mirrors through patches."""

from __future__ import annotations

import math
import random
from typing import Any

import attrs

from gameframe import Player, Room, action


@attrs.define
class Avatar:
    """One player in the arena, as every client sees it."""

    x: float
    y: float
    connected: bool = True
    _target: tuple[float, float] | None = attrs.field(default=None, alias="_target")


@attrs.define
class ArenaState:
    players: dict[str, Avatar] = attrs.Factory(dict)
    width: int = 800
    height: int = 600


class Arena(Room):
    """
    Players walk toward the point they last chose.

    C{{"action": "move", "x": .., "y": ..}} sets the target; every tick the
    server moves each avatar toward its target at C{speed} units a second.
    Everyone sees everyone at C{state["players"][player_id]} (C{x}, C{y},
    C{connected}). A dropped player's seat is held for C{reconnect_timeout}
    seconds (option C{hold}, default 30, at most 120).
    """

    max_players = 50
    tick_rate = 20
    patch_rate = 0.05
    reconnect_timeout = 30.0
    max_hold = 120.0
    speed = 200.0

    def on_create(self, options: dict[str, Any]) -> None:
        self.state = ArenaState()
        hold = options.get("hold")
        if isinstance(hold, (int, float)) and not isinstance(hold, bool):
            # Clamped: a client must not keep an empty room ticking for days.
            self.hold_seconds = min(max(0.0, float(hold)), self.max_hold)
        else:
            self.hold_seconds = self.reconnect_timeout
        self._random = random.Random(self.room_id)

    def restore(self, snapshot: Any) -> None:
        # The saved state is a plain tree: rebuild the attrs classes from it.
        super().restore(snapshot)
        tree = snapshot["state"]
        self.state = ArenaState(
            players={pid: Avatar(**avatar) for pid, avatar in tree["players"].items()},
            width=tree["width"],
            height=tree["height"],
        )
        # Nobody is connected yet: each avatar lights up as its player reconnects.
        for avatar in self.state.players.values():
            avatar.connected = False

    def on_join(self, player: Player, options: dict[str, Any]) -> None:
        state: ArenaState = self.state
        state.players[player.id] = Avatar(
            x=float(self._random.randrange(state.width)),
            y=float(self._random.randrange(state.height)),
        )

    def on_leave(self, player: Player, reason: str) -> None:
        self.state.players.pop(player.id, None)

    def on_drop(self, player: Player) -> float:
        self.state.players[player.id].connected = False
        return self.hold_seconds

    def on_reconnect(self, player: Player) -> None:
        self.state.players[player.id].connected = True

    @action
    def move(self, player: Player, x: float, y: float) -> None:
        state: ArenaState = self.state
        avatar = state.players[player.id]
        avatar._target = (
            min(max(float(x), 0.0), state.width),
            min(max(float(y), 0.0), state.height),
        )

    def on_tick(self, dt: float) -> None:
        step = self.speed * dt
        for avatar in self.state.players.values():
            if avatar._target is None:
                continue
            tx, ty = avatar._target
            dx, dy = tx - avatar.x, ty - avatar.y
            distance = math.hypot(dx, dy)
            if distance <= step:
                avatar.x, avatar.y, avatar._target = tx, ty, None
            else:
                avatar.x = round(avatar.x + dx / distance * step, 2)
                avatar.y = round(avatar.y + dy / distance * step, 2)
