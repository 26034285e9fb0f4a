"""Where a new room goes in a cluster: the default policy, and the shape of an author's own."""

from __future__ import annotations

from typing import Callable, Sequence

from gameframe.cluster.backend import NodeLoad

# (live nodes, the node the creating player is connected to, the room type) -> node name
Placement = Callable[[Sequence[NodeLoad], str, str], str]

# Per room, per player, per core used: what one unit of each costs a node.
ROOM_WEIGHT = 4.0
PLAYER_WEIGHT = 1.0
CPU_WEIGHT = 100.0
# The creator's own node wins while its load is within this much of the least loaded.
CLOSE_ENOUGH = 1.25
CLOSE_SLACK = 10.0


def load_of(node: NodeLoad) -> float:
    """One number for how busy a node is."""
    return node.rooms * ROOM_WEIGHT + node.players * PLAYER_WEIGHT + node.cpu * CPU_WEIGHT


def least_loaded(nodes: Sequence[NodeLoad], origin: str, room_type: str) -> str:
    """
    The default placement: the least loaded node that is not draining,
    unless the creating player's own node is close to it (then that one:
    the creator's actions need not cross the bus).
    """
    open_nodes = [node for node in nodes if not node.draining]
    if not open_nodes:
        return origin
    best = min(open_nodes, key=lambda node: (load_of(node), node.node))
    for node in open_nodes:
        if node.node == origin and load_of(node) <= load_of(best) * CLOSE_ENOUGH + CLOSE_SLACK:
            return origin
    return best.node
