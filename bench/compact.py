"""Bytes per changed field: compact patches beside JSON Patches (and Colyseus' schema encoder).

A state of N entities ``{x, y, hp}`` in a map; each tick 10 of them move (x
and y change: 20 changed fields). gameframe's ``StateSync`` sends one view
to a member that asked for JSON Patches and one that asked for compact
patches; the bytes are the ``patch`` messages as encoded (no framing).
Colyseus' ``Encoder`` (``@colyseus/schema``, run by Node) encodes the same
moves, same values; its bytes are ``encoder.encode()``'s. "warm" ticks come
after every entity has moved once (every path is in the compact path
table); "cold" is the first tick, when none is. Run:

    flock /tmp/bench.lock python bench/compact.py \\
        --colyseus /work/shared/peerbench/node_modules/@colyseus/schema
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

from gameframe._sync import StateSync
from gameframe.player import Player

MOVERS = 10
FIELDS = 2 * MOVERS  # x and y of each mover


class Counting:
    """A link that adds up the bytes it is sent."""

    congested = False

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self.sizes: list[int] = []

    def send_encoded(self, data: bytes) -> None:
        self.sizes.append(len(data))


def scenario(n: int, ticks: int, floats: bool, rng: random.Random) -> dict[str, Any]:
    def coordinate(value: float) -> float:
        return round(value, 2) if floats else int(value)

    start = [[coordinate(rng.uniform(0, 1000)), coordinate(rng.uniform(0, 1000))] for _ in range(n)]
    where = [list(p) for p in start]

    def moves(chosen: list[int]) -> list[list[Any]]:
        out = []
        for i in chosen:
            where[i][0] = coordinate(where[i][0] + rng.uniform(-5, 5))
            where[i][1] = coordinate(where[i][1] + rng.uniform(-5, 5))
            out.append([i, where[i][0], where[i][1]])
        return out

    everyone = list(range(n))
    rng.shuffle(everyone)
    # Cold: 10 entities that never moved; warm-up: the others, in ticks of n/10.
    cold = [moves(everyone[:MOVERS])]
    step = max(MOVERS, n // 10)
    warm = [moves(everyone[i : i + step]) for i in range(MOVERS, n, step)]
    measured = [moves(rng.sample(range(n), MOVERS)) for _ in range(ticks)]
    return {"n": n, "start": start, "cold": cold, "warm": warm, "ticks": measured}


def gameframe_bytes(plan: dict[str, Any]) -> dict[str, list[int]]:
    state = {"entities": {f"e{i}": {"x": x, "y": y, "hp": 100} for i, (x, y) in enumerate(plan["start"])}}
    sync = StateSync(lambda key, tree: tree)
    links = {"json": Counting("json"), "compact": Counting("compact")}
    for name, link in links.items():
        sync.subscribe(Player(id=name, link=link), None, state)  # type: ignore[arg-type]

    def run(ticks: list[list[Any]]) -> dict[str, list[int]]:
        for link in links.values():
            link.sizes.clear()
        for moves in ticks:
            for i, x, y in moves:
                entity = state["entities"][f"e{i}"]
                entity["x"], entity["y"] = x, y
            sync.patch(state)
        return {name: list(link.sizes) for name, link in links.items()}

    cold = run(plan["cold"])
    run(plan["warm"])
    warm = run(plan["ticks"])
    return {"json": warm["json"], "compact": warm["compact"], "compact_cold": cold["compact"]}


def colyseus_bytes(plan: dict[str, Any], schema: str) -> list[int]:
    run = subprocess.run(
        ["node", str(Path(__file__).with_name("compact-colyseus.js"))],
        input=json.dumps({**plan, "warm": plan["cold"] + plan["warm"]}),
        capture_output=True,
        text=True,
        env={**os.environ, "COLYSEUS_SCHEMA": schema},
        check=True,
    )
    sizes: list[int] = json.loads(run.stdout)["bytes"]
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--colyseus", help="the path of an installed @colyseus/schema")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    print(
        "| values | N | JSON Patch B/field | compact B/field (cold) | compact B/field (warm)"
        " | Colyseus B/field | compact / JSON Patch | compact / Colyseus |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for floats in (False, True):
        for n in map(int, args.sizes.split(",")):
            plan = scenario(n, args.ticks, floats, random.Random(args.seed))
            got = gameframe_bytes(plan)
            per_field = {k: sum(v) / len(v) / FIELDS for k, v in got.items()}
            colyseus = "-"
            ratio = "-"
            if args.colyseus:
                sizes = colyseus_bytes(plan, args.colyseus)
                theirs = sum(sizes) / len(sizes) / FIELDS
                colyseus = f"{theirs:.1f}"
                ratio = f"{per_field['compact'] / theirs:.2f}x"
            print(
                f"| {'float' if floats else 'int'} | {n} | {per_field['json']:.1f}"
                f" | {per_field['compact_cold']:.1f} | {per_field['compact']:.1f} | {colyseus}"
                f" | {per_field['compact'] / per_field['json']:.2f}x | {ratio} |"
            )
            sys.stdout.flush()


if __name__ == "__main__":
    main()
