"""The area-of-interest load scenario (issue 11, section 2): one room, many players each with its own area, many wandering NPCs.

    .venv/bin/python -m bench.aoi --players 1000 --npcs 10000 [--hold 60] [--processes 2] [--json]

Starts a real `twistd -n gameframe --room crowd=bench.aoi:Crowd` on 127.0.0.1 (its
players' port, and a web endpoint only for /rooms and /metrics), pinned to CPU 0; runs
`gameframe-loadtest` with `--player bench.aoi:Walker`, pinned to CPU 1, all players in
one room; once every player is in, measures for --hold seconds, then stops the load
tester (Ctrl-C, so its players leave in order) and the server, by their PIDs.

The room (`Crowd`): N NPCs (--npcs) wander on a square field sized for the players
and NPCs at a constant density, so each player sees about --in-sight entities (75)
within the sight radius (100); every NPC moves every tick. The room ticks and patches
20 times a second (--rate), and each tick first stamps the state with the server's
wall clock (`state.t = time.time()`, outside the entity collection, so every
player's every patch carries it). The player (`Walker`) turns its avatar a little and
asks to move (`move`, a request) every 0.25 s, and on every patch records
`patch_delay` = time of receipt - t (the same machine: the same clock), and
`patch_gap`, the time since its previous patch, once every player is in the room.

Reported (markdown, and with --json the whole record): players in, NPCs, entities in
sight, ticks and patch rounds per second achieved (of --rate), the room's tick
overruns, the time in on_tick (the NPC simulation), server CPU (utime + stime over
wall time, /proc/PID/stat), p50/p99/max patch delay and gap, the move requests' round
trip, bytes per player per second, and the load generator's CPU per process (if a
process is near 100 %, the delays include the client's own queueing).
"""

from __future__ import annotations

import math
import os
import random
import time
from typing import Any

from gameframe import Player, Room, action
from gameframe.client import Message
from gameframe.interest import Interest
from gameframe.loadtest import SimulatedPlayer
from gameframe.tracking import tracked

#: The radius each player sees (field units).
SIGHT = 100.0
#: The interest grid's cell size (None: the radius); the runner's --cell sets it for the server.
CELL = float(os.environ.get("BENCH_AOI_CELL") or 0) or None
#: Entities within sight of a player, on average: sizes the field.
IN_SIGHT = 75
NPC_SPEED = 40.0  # field units per second
PLAYER_SPEED = 100.0
TURN_CHANCE = 0.02  # per NPC per tick
#: Seconds without a join after which the players in are all there will be.
SETTLED = 10.0


def field_size(entities: int, in_sight: float = IN_SIGHT, sight: float = SIGHT) -> float:
    """The side of a square field where C{entities} spread evenly put C{in_sight} within C{sight} of a point."""
    return math.sqrt(entities * math.pi * sight * sight / in_sight)


@tracked
class CrowdState:
    """
    C{t}: the server's wall clock at the start of the last tick; C{players}
    in the room; C{measuring}: the players are in (see L{Crowd}); C{entities} by id.
    """

    t: float
    players: int
    measuring: bool
    size: float
    entities: dict[str, dict[str, Any]]


class Crowd(Room):
    """
    One big room: C{npcs} wanderers (option, default 10,000) and the players
    (C{players}, the number expected, sizes the field with the NPCs; default
    1,000), each player seeing the entities within L{SIGHT} of its avatar.
    A player steers with C{move(dx, dy)} (a direction; its avatar walks at
    L{PLAYER_SPEED}). Options C{rate} (ticks and patches a second, 20) and
    C{in_sight} (75).

    The state's C{measuring} (and the room's metadata) turns true once the
    expected players are in, or no one has joined for L{SETTLED} seconds
    (some could not connect), and false again at the first leave: the
    window the players measure in.
    """

    tick_rate = 20
    patch_rate = 0.05
    interest = Interest(collection="entities", radius=SIGHT, cell_size=CELL, followed_field="you")

    def on_create(self, options: dict[str, Any]) -> None:
        npcs = int(options.get("npcs", 10_000))
        expected = int(options.get("players", 1_000))
        rate = float(options.get("rate", 20))
        self.size = round(field_size(npcs + expected, float(options.get("in_sight", IN_SIGHT))), 1)
        self._random = random.Random(options.get("seed", 1))
        self._expected = expected
        self._last_join = self.clock.seconds()
        self.state = CrowdState(
            t=time.time(), players=0, measuring=False, size=self.size, entities={}
        )
        entities = self.state.entities
        uniform = self._random.uniform
        # Each NPC: its id, its position as floats, its velocity (its dict is
        # looked up in the state each tick).
        self._npcs: list[list[Any]] = []
        for n in range(npcs):
            key = f"n{n}"
            x, y = uniform(0, self.size), uniform(0, self.size)
            entities[key] = {"x": round(x, 1), "y": round(y, 1), "kind": "npc"}
            heading = uniform(0, 2 * math.pi)
            self._npcs.append([key, x, y, math.cos(heading), math.sin(heading)])
        self._avatars: dict[str, list[Any]] = {}  # player id -> [id, x, y, dx, dy]
        self.set_tick_rate(rate)
        self.set_patch_rate(1 / rate)
        self._samples = self.every(2.0, self._count_in_sight)

    def on_join(self, player: Player, options: dict[str, Any]) -> None:
        x, y = self._random.uniform(0, self.size), self._random.uniform(0, self.size)
        entities = self.state.entities
        entities[player.id] = {"x": round(x, 1), "y": round(y, 1), "kind": "player"}
        self._avatars[player.id] = [player.id, x, y, 0.0, 0.0]
        self.state.players += 1
        self._last_join = self.clock.seconds()
        if self.state.players >= self._expected:
            self._measure(True)

    def on_leave(self, player: Player, reason: str) -> None:
        self.state.entities.pop(player.id, None)
        if self._avatars.pop(player.id, None) is not None:
            self.state.players -= 1
        self._measure(False)

    def _measure(self, on: bool) -> None:
        if self.state.measuring != on:
            self.state.measuring = on
            self.set_metadata(measuring=on)

    @action
    def move(self, player: Player, dx: float, dy: float) -> None:
        """Walk in the direction C{(dx, dy)} (any length; 0, 0 stops)."""
        avatar = self._avatars.get(player.id)
        if avatar is None:
            return
        length = math.hypot(float(dx), float(dy))
        avatar[3], avatar[4] = (dx / length, dy / length) if length else (0.0, 0.0)

    def on_tick(self, dt: float) -> None:
        self.state.t = time.time()  # the state of this tick is as of now
        entities = self.state.entities
        size = self.size
        step = NPC_SPEED * dt
        turn = self._random.random
        for npc in self._npcs:
            if turn() < TURN_CHANCE:
                heading = turn() * 2 * math.pi
                npc[3], npc[4] = math.cos(heading), math.sin(heading)
            x = npc[1] + npc[3] * step
            y = npc[2] + npc[4] * step
            if not 0 <= x <= size:
                npc[3] = -npc[3]
                x = npc[1]
            if not 0 <= y <= size:
                npc[4] = -npc[4]
                y = npc[2]
            npc[1], npc[2] = x, y
            where = entities[npc[0]]
            where["x"] = round(x, 1)
            where["y"] = round(y, 1)
        step = PLAYER_SPEED * dt
        for avatar in self._avatars.values():
            if not (avatar[3] or avatar[4]):
                continue
            x = min(max(avatar[1] + avatar[3] * step, 0.0), size)
            y = min(max(avatar[2] + avatar[4] * step, 0.0), size)
            avatar[1], avatar[2] = x, y
            where = entities[avatar[0]]
            where["x"] = round(x, 1)
            where["y"] = round(y, 1)

    def _count_in_sight(self) -> None:
        """The mean number of entities the first 50 players see, in the room's metadata (GET /rooms)."""
        if (
            not self.state.measuring
            and self.state.players
            and self.clock.seconds() - self._last_join > SETTLED
            and "measuring" not in self.metadata  # once: not again after a leave
        ):
            self._measure(True)
        seen = [len(self.visible_to(p)) for p in list(self.players.values())[:50]]
        if seen:
            self.set_metadata(in_sight=round(sum(seen) / len(seen), 1), size=self.size)


class Walker(SimulatedPlayer):
    """
    Steers its avatar (a request every 0.25 s, turning a little each time),
    and records how old each patch is when it arrives (C{patch_delay}) and
    the time since the previous one (C{patch_gap}), while the room's state
    says C{measuring} (every player in, until the first leaves).
    """

    interval = 0.25
    mirror_state = False

    def on_join(self, joined: Message) -> None:
        self._heading = self.random.uniform(0, 2 * math.pi)
        self._everyone = False
        self._last: float | None = None

    def on_message(self, message: Message) -> None:
        kind = message["action"]
        if kind == "patch":
            now = time.time()
            stamp = None
            # What is outside the entities comes first in every patch.
            for op in message["patch"]:
                path = op["path"]
                if path == "/t":
                    stamp = op["value"]
                elif path == "/measuring":
                    self._everyone = op["value"]
                elif path.startswith("/entities/"):
                    break
            if self._everyone:
                if stamp is not None:
                    self.record("patch_delay", now - stamp)
                if self._last is not None:
                    self.record("patch_gap", now - self._last)
                self._last = now
            else:
                self._last = None
        elif kind == "state":
            self._everyone = message["state"]["measuring"]
            self._last = None

    def act(self) -> Any:
        self._heading += self.random.gauss(0, 0.5)
        return self.request("move", dx=math.cos(self._heading), dy=math.sin(self._heading))


# -- the runner ----------------------------------------------------------------------------

if __name__ == "__main__":
    from bench.aoirun import main

    raise SystemExit(main())
