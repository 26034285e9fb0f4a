"""bench/aoi.py's room in one process, without sockets: CPU per tick of its simulation and of the area-of-interest patches.

    .venv/bin/python -m bench.aoiprof --players 1000 --npcs 10000 [--ticks 20] [--cell 50] [--still] [--profile N]

A `Crowd` room made through the test Harness (its own beats stopped), N players joined
through its `on_join` and each given an `InterestSync` stream of its own on a link that
only counts bytes; every tick runs the room's `on_tick(0.05)` and then one
`InterestSync.patch`, timed apart in CPU time (`time.process_time`), after a few ticks
to warm up. Players steer like `bench.aoi.Walker` (a new direction every 5 ticks)
unless --still. With --cells, the same run for each cell size given, in turn, so their
ratios come from one run. --profile N prints cProfile's N costliest functions of the
patches.
"""

from __future__ import annotations

import argparse
import cProfile
import math
import pstats
import random
import sys
import time
from typing import Any

import attrs

from bench.aoi import Crowd
from gameframe._interestsync import InterestSync
from gameframe.interest import Interest
from gameframe.testing import Harness

TICK = 0.05


@attrs.define
class CountingLink:
    """What InterestSync writes to: only counted."""

    congested: bool = False
    encoding: str | None = None
    sent: int = 0
    messages: int = 0

    def send_encoded(self, data: bytes) -> None:
        self.sent += len(data)
        self.messages += 1


@attrs.define
class Seat:
    """The part of a Player that the sync and the room's on_join read."""

    id: str
    link: CountingLink = attrs.Factory(CountingLink)


def run(players: int, npcs: int, ticks: int, warmup: int, cell: float | None, still: bool,
        profile: int) -> dict[str, Any]:
    kit = Harness({"crowd": Crowd})
    owner = kit.connect()
    owner.create("crowd", npcs=npcs, players=players)
    room = kit.room_of(owner)
    assert isinstance(room, Crowd)
    room.set_tick_rate(None)  # this loop ticks and patches it
    room.set_patch_rate(None)
    interest = Interest(collection="entities", radius=Crowd.interest.radius, cell_size=cell,
                        followed_field="you")
    sizes: list[int] = []
    sync = InterestSync(interest, sizes.append)
    seats = [Seat(f"p{n}") for n in range(players)]
    for seat in seats:
        room.on_join(seat, {})  # type: ignore[arg-type]
    for seat in seats:
        sync.subscribe(seat, seat.id, room.state)  # type: ignore[arg-type]
    steer = random.Random(7)
    sim = patch = 0.0
    profiler = cProfile.Profile() if profile else None
    for tick in range(warmup + ticks):
        if not still and tick % 5 == 0:
            for seat in seats:
                heading = steer.uniform(0, 2 * math.pi)
                room.move(seat, math.cos(heading), math.sin(heading))
        t0 = time.process_time()
        room.on_tick(TICK)
        t1 = time.process_time()
        if profiler is not None and tick >= warmup:
            profiler.enable()
        sync.patch(room.state)
        if profiler is not None:
            profiler.disable()
        t2 = time.process_time()
        if tick == warmup - 1:
            sizes.clear()
        if tick >= warmup:
            sim += t1 - t0
            patch += t2 - t1
    seen = [len(sync.visible_to(seat)) for seat in seats[:100]]  # type: ignore[arg-type]
    if profiler is not None:
        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(profile)
    return {
        "players": players,
        "npcs": npcs,
        "cell": cell or Crowd.interest.radius,
        "still": still,
        "in_sight": round(sum(seen) / len(seen), 1),
        "sim_ms": round(sim * 1000 / ticks, 1),
        "patch_ms": round(patch * 1000 / ticks, 1),
        "patch_bytes_mean": round(sum(sizes) / len(sizes)) if sizes else 0,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--players", type=int, default=1000)
    ap.add_argument("--npcs", type=int, default=10_000)
    ap.add_argument("--ticks", type=int, default=20, help="ticks measured")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--cells", type=float, nargs="*", default=[0.0],
                    help="cell sizes, one run each (0: the radius, the default)")
    ap.add_argument("--still", action="store_true", help="the players do not move")
    ap.add_argument("--profile", type=int, default=0, metavar="N")
    a = ap.parse_args()
    print(f"## bench/aoiprof ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}): "
          f"`python -m bench.aoiprof {' '.join(sys.argv[1:])}`\n")
    print("| players | NPCs | cell | players move | in sight | on_tick ms | patch ms | tick ms | mean patch B |")
    print("|---|---|---|---|---|---|---|---|---|")
    for cell in a.cells:
        r = run(a.players, a.npcs, a.ticks, a.warmup, cell or None, a.still, a.profile)
        print(f"| {r['players']:,} | {r['npcs']:,} | {r['cell']:g} | {'no' if r['still'] else 'yes'} | "
              f"{r['in_sight']} | {r['sim_ms']} | {r['patch_ms']} | "
              f"{r['sim_ms'] + r['patch_ms']:.1f} | {r['patch_bytes_mean']:,} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
