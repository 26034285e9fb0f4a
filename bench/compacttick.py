"""The state scenario's patch tick in one process, JSON Patches beside compact patches.

    python bench/compacttick.py

A StateSync over bench.rooms.StateRoom's state shape (players {x, y, t}), every member
asking for one encoding, links that only count bytes: the CPU of a patch tick (diff,
encoding, handing the bytes to each member) without sockets, and the bytes a member
gets per patch. Half the players change `t` each tick, as at 10 moves a second and 20
patches a second.
"""

from __future__ import annotations

import random
import time

from gameframe._sync import StateSync
from gameframe.player import Player


class CountingLink:
    congested = False

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self.bytes = 0

    def send_encoded(self, data: bytes) -> None:
        self.bytes += len(data)


def tick_cost(encoding: str, players: int, ticks: int) -> tuple[float, float]:
    """Microseconds per tick, bytes per patch per member."""
    sync = StateSync(None)
    ids = [f"p{i:08d}" for i in range(players)]
    state = {"players": {pid: {"x": 1, "y": 2, "t": 0} for pid in ids}}
    links = []
    for pid in ids:
        player = Player(id=pid)
        link = CountingLink(encoding)
        player.link = link  # type: ignore[assignment]
        links.append(link)
        sync.subscribe(player, None, state)
    links[0].bytes = 0
    rnd = random.Random(1)
    t = 10**9
    start = time.perf_counter()
    for _ in range(ticks):
        for pid in rnd.sample(ids, players // 2):
            t += 137
            state["players"][pid]["t"] = t
        sync.patch(state)
    elapsed = time.perf_counter() - start
    return elapsed / ticks * 1e6, links[0].bytes / ticks


def main() -> None:
    for players, ticks in ((10, 20000), (50, 4000)):
        for _ in range(3):
            for encoding in ("json", "compact"):
                us, size = tick_cost(encoding, players, ticks)
                print(f"P={players} {encoding:8s} {us:7.1f} us/tick {size:6.0f} B/patch/member")


if __name__ == "__main__":
    main()
