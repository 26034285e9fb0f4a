"""CPU per patch tick with change tracking, beside the whole-state diff and Colyseus' schema encoder.

A state of N entities ``{x, y, hp}`` in a dict keyed by id, 10 of them moving
each tick (two fields each). One tick is what a room pays per patch: the ten
moves, finding the changes, encoding the patch (once: one view, one member).
Measured in one run, on process CPU time, the best of 5 rounds:

- ``diff``: the state in plain attrs classes; ``StateSync`` with a
  ``view_state`` (the per-view path: the whole state to a tree, then a diff);
- ``tracked``: the same classes made with ``gameframe.tracking.tracked``;
  ``StateSync`` without ``view_state`` walks the recorded changes;
- ``colyseus``: ``bench/schema-tick.js`` run by Node, when ``--node-modules``
  names a directory holding ``@colyseus/schema`` (e.g. peerbench's).

A second table puts the same entities in a list (a ``TrackedList``; an
``ArraySchema`` for Colyseus), the movers at the same indices. With
``--against REV`` a third compares the core of a tick (the moves,
``changes()``, the encode) with ``gameframe/tracking.py`` as it was at git
revision REV, both loaded in this process and measured in alternating rounds.

Run it alone on the machine (``flock /tmp/bench.lock``)::

    flock /tmp/bench.lock .venv/bin/python -m bench.tracking \\
        --node-modules /work/shared/peerbench/node_modules
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import attrs

from gameframe._sync import StateSync
from gameframe.codec import encode
from gameframe.jsonpatch import to_tree
from gameframe.player import Player
from gameframe.tracking import tracked

MOVERS = 10
ROUNDS = 5


@attrs.define
class Entity:
    x: float
    y: float
    hp: int


@attrs.define
class World:
    entities: dict[str, Any]


@tracked
class TrackedEntity:
    x: float
    y: float
    hp: int


@tracked
class TrackedWorld:
    entities: dict[str, Any]


@tracked
class TrackedListWorld:
    entities: list[Any]


class _Sink:
    """A link that keeps up and counts the bytes it was given."""

    congested = False

    def __init__(self) -> None:
        self.last = 0

    def send_encoded(self, data: bytes) -> None:
        self.last = len(data)

    def send(self, message: Any) -> None:
        pass

    def close(self, code: str, message: str, retry: bool = False) -> None:
        pass


def _whole(key: Any, tree: Any) -> Any:
    return tree


def measure(n: int, track: bool, seconds: float, in_list: bool = False) -> tuple[float, int]:
    """CPU microseconds and bytes per tick (C{in_list}: the entities in a tracked list, not a dict)."""
    entity: Callable[..., Any] = TrackedEntity if track else Entity
    world: Any
    if in_list:
        make_list: Callable[..., Any] = TrackedListWorld
        world = make_list(entities=[entity(x=i, y=i, hp=100) for i in range(n)])
    else:
        make: Callable[..., Any] = TrackedWorld if track else World
        world = make(entities={str(i): entity(x=i, y=i, hp=100) for i in range(n)})
    sync = StateSync(None if track else _whole)
    sink = _Sink()
    player = Player(id="p", link=sink)  # type: ignore[arg-type]
    sync.subscribe(player, None, world)
    at = [i * n // MOVERS for i in range(MOVERS)]
    movers = [world.entities[i] for i in at] if in_list else [world.entities[str(i)] for i in at]
    step = 0

    def tick() -> None:
        nonlocal step
        step += 1
        for e in movers:
            e.x = e.x + 1
            e.y = step
        sync.patch(world)

    for _ in range(5):
        tick()
    best = float("inf")
    for _ in range(ROUNDS):  # the best round: the least disturbed by the machine's other work
        ticks = 0
        start = time.process_time()
        deadline = start + seconds / ROUNDS
        while True:
            for _ in range(10):
                tick()
            ticks += 10
            now = time.process_time()
            if now >= deadline:
                break
        best = min(best, (now - start) / ticks * 1e6)
    return best, sink.last


def tracking_at(rev: str) -> ModuleType:
    """C{gameframe/tracking.py} as it was at git revision C{rev}, loaded as a module of its own."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(
        ["git", "show", f"{rev}:gameframe/tracking.py"],
        cwd=root, check=True, capture_output=True, text=True,
    ).stdout
    module = ModuleType(f"_tracking_{rev}")
    sys.modules[module.__name__] = module
    exec(compile(source, f"{rev}:gameframe/tracking.py", "exec"), module.__dict__)
    return module


def core_ticks(modules: list[Any], n: int, seconds: float) -> list[float]:
    """
    CPU microseconds of the core of a tick (the moves, C{changes()}, the
    encode of the operations) with each tracking module, measured in
    alternating rounds in this one process: the best round of each.
    """
    ticks: list[Callable[..., None]] = []
    for module in modules:

        @module.tracked
        class Moving:
            x: float
            y: float
            hp: int

        @module.tracked
        class Holding:
            entities: dict[str, Any]

        made: Callable[..., Any] = Moving
        holding: Callable[..., Any] = Holding
        world: Any = holding(entities={str(i): made(x=i, y=i, hp=100) for i in range(n)})
        movers = [world.entities[str(i * n // MOVERS)] for i in range(MOVERS)]
        module.is_tracked(world)
        holder = [to_tree(world)]

        def tick(module: Any = module, world: Any = world, movers: list[Any] = movers, holder: list[Any] = holder) -> None:
            for e in movers:
                e.x = e.x + 1
                e.y = e.y + 1
            ops, holder[0] = module.changes(world, holder[0])
            encode({"action": "patch", "seq": 1, "patch": ops})

        ticks.append(tick)
    best = [float("inf")] * len(ticks)
    for _ in range(ROUNDS * 2):
        for which, tick in enumerate(ticks):
            count = 0
            start = time.process_time()
            deadline = start + seconds / ROUNDS / 2
            while True:
                for _ in range(10):
                    tick()
                count += 10
                now = time.process_time()
                if now >= deadline:
                    break
            best[which] = min(best[which], (now - start) / count * 1e6)
    return best


def colyseus(node_modules: str, sizes: list[int]) -> dict[str, Any]:
    script = Path(__file__).with_name("schema-tick.js")
    out = subprocess.run(
        ["node", str(script), node_modules, *map(str, sizes)],
        check=True, capture_output=True, text=True,
    ).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000,100000")
    parser.add_argument("--seconds", type=float, default=2.0, help="CPU time per measurement")
    parser.add_argument("--node-modules", help="a node_modules holding @colyseus/schema")
    parser.add_argument(
        "--against", metavar="REV",
        help="also measure the core of a tick with gameframe/tracking.py at git revision REV, "
        "alternating with this tree's in one process",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    peer = colyseus(args.node_modules, sizes) if args.node_modules else {}
    print("| N entities | diff µs/tick | tracked µs/tick | diff / tracked"
          + (" | Colyseus µs/tick | tracked / Colyseus" if peer else "")
          + " | diff bytes | tracked bytes" + (" | Colyseus bytes |" if peer else " |"))
    print("|---" * (9 if peer else 6) + "|")
    for n in sizes:
        diff_us, diff_bytes = measure(n, False, args.seconds)
        tracked_us, tracked_bytes = measure(n, True, args.seconds)
        row = f"| {n:,} | {diff_us:,.0f} | {tracked_us:,.1f} | {diff_us / tracked_us:,.0f}×"
        if peer:
            them = peer[str(n)]
            row += f" | {them['us']:,.1f} | {tracked_us / them['us']:,.1f}×"
        row += f" | {diff_bytes} | {tracked_bytes}"
        row += f" | {peer[str(n)]['bytes']} |" if peer else " |"
        print(row, flush=True)
    print()
    print("| N entities in a list | tracked µs/tick"
          + (" | Colyseus (ArraySchema) µs/tick | tracked / Colyseus" if peer else "")
          + " | tracked bytes" + (" | Colyseus bytes |" if peer else " |"))
    print("|---" * (5 if peer else 3) + "|")
    for n in sizes:
        tracked_us, tracked_bytes = measure(n, True, args.seconds, in_list=True)
        row = f"| {n:,} | {tracked_us:,.1f}"
        if peer:
            them = peer[f"list {n}"]
            row += f" | {them['us']:,.1f} | {tracked_us / them['us']:,.1f}×"
        row += f" | {tracked_bytes}"
        row += f" | {peer[f'list {n}']['bytes']} |" if peer else " |"
        print(row, flush=True)
    if args.against:
        from gameframe import tracking

        before = tracking_at(args.against)
        print()
        print(f"| N entities | {args.against} core µs/tick | this tree core µs/tick | {args.against} / this tree |")
        print("|---|---|---|---|")
        for n in sizes:
            them_us, us = core_ticks([before, tracking], n, args.seconds)
            print(f"| {n:,} | {them_us:,.1f} | {us:,.1f} | {them_us / us:,.2f}× |", flush=True)


if __name__ == "__main__":
    main()
