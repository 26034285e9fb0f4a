"""The rooms the benchmark runs (a relay, each move broadcast at once; arena-style state sync) and the cluster bench's placement."""

from __future__ import annotations

from typing import Any, Sequence

from gameframe import NodeLoad, Player, Room, action


class RelayRoom(Room):
    """
    peerbench's relay scenario: every move goes to every player of the room,
    the sender included, at once. Rooms are keyed by the load generator's
    room key (option C{key}) through matchmaking.
    """

    filter_by = ("key",)
    patch_rate = None

    @action
    def move(self, player: Player, c: str, x: float, y: float, t: int) -> None:
        self.broadcast({"action": "move", "c": c, "x": x, "y": y, "t": t})


class StateRoom(Room):
    """
    peerbench's state scenario, the arena's way: a move sets the player's
    C{x}, C{y}, C{t} in the room state; JSON Patches go out every 50 ms.
    """

    filter_by = ("key",)
    patch_rate = 0.05

    def on_create(self, options: dict[str, Any]) -> None:
        self.state = {"players": {}}

    def on_join(self, player: Player, options: dict[str, Any]) -> None:
        self.state["players"][player.id] = {"x": 0, "y": 0, "t": 0}

    def on_leave(self, player: Player, reason: str) -> None:
        del self.state["players"][player.id]

    @action
    def move(self, player: Player, x: float, y: float, t: int) -> None:
        me = self.state["players"][player.id]
        me["x"] = x
        me["y"] = y
        me["t"] = t


def elsewhere(nodes: Sequence[NodeLoad], origin: str, room_type: str) -> str:
    """
    The cluster bench's placement (C{--placement bench.rooms:elsewhere}): a
    new room goes to a node other than the creating player's whenever there
    is one (the first by name that is not draining), so every action and
    every delivery crosses the bus, the cluster's worst case.
    """
    others = sorted(n.node for n in nodes if n.node != origin and not n.draining)
    return others[0] if others else origin
