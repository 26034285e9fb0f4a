"""The room state as the plain tree clients hold, brought level with the state once per patch tick."""

from __future__ import annotations

from typing import Any

from gameframe.jsonpatch import JSON, Operation, diff, to_tree
from gameframe.tracking import changes, is_tracked


class StateTree:
    """
    The tree of a room's state as its clients last received it, and the
    operations of each patch tick.

    A tracked state (L{gameframe.tracking}) gives a tick's operations from
    its recorded changes and patches the tree in place: a tick costs what
    changed. Any other state is turned into a new tree and diffed.
    """

    __slots__ = ("tree", "_root", "_tracked")

    def __init__(self, state: Any) -> None:
        self.tree: JSON = to_tree(state)
        self._root = state
        self._tracked = is_tracked(state)

    def advance(self, state: Any) -> list[Operation]:
        """The operations bringing L{tree} level with C{state}; applies them to it."""
        if state is self._root and self._tracked:
            ops, self.tree = changes(state, self.tree)
            return ops
        new = to_tree(state)
        ops = diff(self.tree, new)
        self.tree = new
        if state is not self._root:
            # A new state: tracked from here on if it can be (its marks so far
            # are stale hints; the tree just taken is what the walk compares to).
            self._root = state
            self._tracked = is_tracked(state)
        return ops
