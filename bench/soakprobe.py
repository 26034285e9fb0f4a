"""A room for bench/soak.py: its one action reports the server's live Python objects (after a full collection)."""

from __future__ import annotations

import gc
from collections import Counter
from typing import Any

from gameframe import Player, Room, action


class Probe(Room):
    """
    Serve it with C{--room soakprobe=bench.soakprobe:Probe}; C{count}
    returns C{{"objects": N, "garbage": N, "gameframe": {type: N}}}: every
    object the collector tracks once it has collected, and how many of
    them are instances of gameframe's own classes (where a leak would show).
    """

    max_players = 1

    @action
    def count(self, player: Player) -> dict[str, Any]:
        gc.collect()
        objects = gc.get_objects()
        ours: Counter[str] = Counter()
        for obj in objects:
            kind = type(obj)
            module = kind.__dict__.get("__module__")
            if isinstance(module, str) and module.startswith("gameframe"):
                ours[kind.__qualname__] += 1
        total = len(objects)
        del objects
        return {"objects": total, "garbage": len(gc.garbage), "gameframe": dict(ours.most_common(15))}
