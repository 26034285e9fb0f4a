"""State sync: a full state on join, then patches per distinct view, encoded once each per encoding."""

from __future__ import annotations

from typing import Any, Callable, Hashable

from gameframe.codec import encode
from gameframe.compact import PathTable
from gameframe._statetree import StateTree
from gameframe.interfaces import IPlayerLink
from gameframe.jsonpatch import JSON, diff, to_tree
from gameframe.player import Player
from gameframe.vocabulary import ENCODING_COMPACT, state_message

ViewState = Callable[[Hashable, JSON], JSON]
PatchSizes = Callable[[int], None]


def _unmeasured(size: int) -> None:
    pass


class _View:
    """One stream of patches, shared by every player whose view key is the same."""

    __slots__ = ("tree", "seq", "members", "behind", "compact", "table")

    def __init__(self, tree: JSON) -> None:
        self.tree = tree  # what every member's mirror holds at `seq`
        self.seq = 0
        self.members: dict[str, Player] = {}
        # Members whose socket was backed up at a patch: they missed it, and
        # get the full tree instead of the next patch once they drain.
        self.behind: set[str] = set()
        # Members who asked for compact patches, and the stream's path table.
        self.compact: set[str] = set()
        self.table = PathTable()


class StateSync:
    """
    Keeps, for each distinct view, the tree its members last received.

    A patch tick turns the state into a plain tree once, derives each view
    from it, diffs against that view's last tree, and sends one encoded
    patch to all the view's members. C{seq} counts the messages of a view's
    stream, so a member sees it grow by exactly one per message.

    Without C{view_state} (every view is the whole state) the views share
    one tree, and a tracked state (L{gameframe.tracking}) gives the
    tick's operations from its recorded changes instead of a diff of the
    whole tree: a tick costs what changed, not what exists.

    @param view_state: each view's part of the state tree (L{None}: all of it).
    @param patch_sizes: called with the size in bytes of each patch encoded
        (once per view per patch tick, whatever the view's members).
    """

    def __init__(
        self, view_state: ViewState | None, patch_sizes: PatchSizes = _unmeasured
    ) -> None:
        self._view_state = view_state
        self._patch_sizes = patch_sizes
        self._views: dict[Hashable, _View] = {}
        self._keys: dict[str, Hashable] = {}  # player id -> view key
        # A restored room's streams: where each view's seq goes on from.
        self._resume: dict[Hashable, int] = {}
        # Without view_state: the tree every view's members hold (None while
        # there is no view).
        self._shared: StateTree | None = None

    def subscribe(
        self, player: Player, key: Hashable, state: Any, request_id: Any = None
    ) -> bytes:
        """
        Add C{player} to its view's patches; the encoded full state to send it.

        The full state is the view's last sent tree, so the next patch
        applies to it; a view nobody shared yet starts from the state now.
        """
        if self._keys.get(player.id, key) != key:
            self.unsubscribe(player)
        view = self._views.get(key)
        if view is None:
            if self._view_state is not None:
                tree = self._view_state(key, to_tree(state))
            else:
                if self._shared is None:  # the first view: start from the state as it is
                    self._shared = StateTree(state)
                tree = self._shared.tree
            view = self._views[key] = _View(tree)
            view.seq = self._resume.pop(key, 0)
        view.members[player.id] = player
        view.behind.discard(player.id)  # this full state catches it up
        link = player.link
        if getattr(link, "encoding", None) == ENCODING_COMPACT:
            view.compact.add(player.id)
            view.table.reset = True
        else:
            view.compact.discard(player.id)
        self._keys[player.id] = key
        return encode(state_message(view.seq, view.tree, request_id))

    def sequences(self) -> list[list[Any]]:
        """
        Each view's C{[key, seq]} (keys JSON can hold), the ones not
        resumed yet included: what a saved room keeps so that, restored,
        its streams go on counting rather than start over.
        """
        found = dict(self._resume)
        found.update((key, view.seq) for key, view in self._views.items())
        return [[key, seq] for key, seq in found.items() if _plain(key)]

    def resume(self, sequences: Any) -> None:
        """Go on from saved C{[key, seq]} pairs (lists in keys come back as tuples)."""
        for key, seq in sequences:
            self._resume[_hashable(key)] = seq

    def unsubscribe(self, player: Player) -> None:
        if player.id not in self._keys:
            return
        key = self._keys.pop(player.id)
        view = self._views[key]
        del view.members[player.id]
        view.behind.discard(player.id)
        view.compact.discard(player.id)
        if not view.compact:
            view.table = PathTable()
        if not view.members:
            del self._views[key]
            if not self._views:
                self._shared = None

    def is_subscribed(self, player: Player) -> bool:
        return player.id in self._keys

    def key_of(self, player: Player) -> Hashable:
        return self._keys.get(player.id)

    def patch(self, state: Any) -> int:
        """
        Send every view's changes since its last patch; the number of patches sent.

        A member whose connection is congested (not reading) gets nothing
        queued: it is marked behind, and once its connection drains it gets
        one full C{state} of its view, then patches again.
        """
        if not self._views:
            return 0
        view_state = self._view_state
        if view_state is None:
            assert self._shared is not None
            shared = self._shared.advance(state)
            whole = self._shared.tree
        else:
            tree = to_tree(state)
        sent = 0
        for key, view in self._views.items():
            if view_state is None:
                # The one tree, patched in place or replaced: every view holds it.
                view.tree = new = whole
                ops = shared
            else:
                new = view_state(key, tree)
                ops = diff(view.tree, new)
            if ops:
                view.tree = new
                view.seq += 1
                data = compact = b""
                if len(view.compact) < len(view.members):
                    data = encode({"action": "patch", "seq": view.seq, "patch": ops})
                    self._patch_sizes(len(data))
                if view.compact:
                    compact = view.table.patch(view.seq, ops)
                    self._patch_sizes(len(compact))
                sent += 1
            elif not view.behind:
                continue
            else:
                data = compact = b""
            self._deliver(view, data, compact)
        return sent

    @staticmethod
    def _deliver(view: _View, patch: bytes, compact: bytes = b"") -> None:
        """
        The patch to members keeping up; the full tree to those back from behind.

        When some members take compact patches and others JSON Patches, the
        compact patch goes out after the JSON one, to its members in a row:
        one message to many players is one item on a cluster's bus
        (L{gameframe.cluster.node.Outbox}) only while nothing comes between.
        When all take compact patches, they go out as JSON Patches do alone.
        """
        behind = view.behind
        wants_compact = view.compact
        mixed = False
        if wants_compact:
            mixed = len(wants_compact) < len(view.members)
            if not mixed:
                patch = compact
        full = b""
        later: list[IPlayerLink] = []
        for member_id, member in view.members.items():
            link = member.link
            if link is None:
                continue
            if link.congested:
                behind.add(member_id)
            elif behind and member_id in behind:
                behind.discard(member_id)
                if not full:
                    full = encode(state_message(view.seq, view.tree))
                link.send_encoded(full)
                if member_id in wants_compact:
                    view.table.reset = True  # its path table is empty now
            elif mixed and member_id in wants_compact:
                if compact:
                    later.append(link)
            elif patch:
                link.send_encoded(patch)
        for link in later:
            link.send_encoded(compact)


def _plain(key: Any) -> bool:
    """Whether a view key survives JSON (None, str, int, float, bool, tuples of them)."""
    if isinstance(key, tuple):
        return all(_plain(part) for part in key)
    return key is None or type(key) in (str, int, float, bool)


def _hashable(key: Any) -> Hashable:
    return tuple(_hashable(part) for part in key) if isinstance(key, list) else key
