"""Change tracking: room state that records its own mutations, so a patch tick walks only what changed.

A room opts in by making its state's root a :func:`tracked` attrs class or a
:class:`TrackedDict` (or :class:`TrackedList`). From there on, every plain
``dict`` and ``list`` stored into a tracked object is wrapped into a tracked
container on assignment, and every mutation marks its path up to the root.
The state sync then produces the JSON Patch operations of a tick from those
marks, comparing only the changed keys against the tree its clients hold.

Anything else inside a tracked state (an attrs class that is not
:func:`tracked`, a ``collections.OrderedDict``, a tuple holding a list) is a
plain value: it cannot tell when it changes, so its subtree is converted and
diffed on every patch tick, as an untracked state is as a whole.

How it works: each tracked object has a `_Node` (in a slot for the containers,
in a side table keyed by the instance for attrs classes, so the author's
namespace and slots are untouched) holding the links to its parents (one per
place it is stored: the same object may be reachable twice), the keys set or
deleted since the last tick (``changed``), the keys whose subtree changed
(``dirty``), and the keys holding plain values (``sticky``, visited every
tick). A mutation adds its key to ``changed`` and, the first time in a tick,
tells every parent, which tells its own parents: the cost is the depth of the
tree, once per object per tick. Marks are hints: the walk compares each
marked key against the last sent tree, so a stale mark costs a look, never a
wrong patch.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Iterable, SupportsIndex, TypeVar, dataclass_transform, overload

import attrs
from attrs import setters

from gameframe.jsonpatch import _DICTS, _LISTS, JSON, Operation, _diff, _equal, _escape, to_tree

__all__ = ["TrackedDict", "TrackedList", "tracked"]

_SCALARS = frozenset({str, int, float, bool, type(None)})
_MISSING: Any = object()
_EMPTY: frozenset[Any] = frozenset()
_LIST_KEY = None  # the only key a list's node records: lists change as a whole

# Advanced after every walk: a node told its parents in an older epoch tells
# them again at its next change (see `_tell`).
_epoch = [0]


class _Node:
    """What tracking knows of one tracked object (never the object itself)."""

    __slots__ = ("parents", "changed", "dirty", "sticky", "told", "ref")

    def __init__(self) -> None:
        self.parents: list[tuple[_Node, Any]] = []
        # Empty sets are shared (and immutable) until a key arrives: most
        # nodes of a big world never change between two ticks.
        self.changed: set[Any] | frozenset[Any] = _EMPTY
        self.dirty: set[Any] | frozenset[Any] = _EMPTY
        self.sticky: set[Any] | frozenset[Any] = _EMPTY
        self.told = -1
        self.ref: Any = None  # keeps an attrs instance's weakref (and its callback) alive

    def pending(self) -> bool:
        return bool(self.changed or self.dirty or self.sticky)


def _touch(node: _Node, key: Any) -> None:
    if node.changed:
        node.changed.add(key)  # type: ignore[union-attr]
    else:
        node.changed = {key}
    if node.told != _epoch[0]:
        _tell(node)


def _tell(node: _Node) -> None:
    """Mark every path from the root down to C{node} (once per node per tick)."""
    node.told = _epoch[0]
    for parent, key in node.parents:
        if parent.dirty:
            parent.dirty.add(key)  # type: ignore[union-attr]
        else:
            parent.dirty = {key}
        if parent.told != _epoch[0]:
            _tell(parent)


def _stick(node: _Node, key: Any) -> None:
    """C{node}'s C{key} holds a plain value: visit it, and the way to it, every tick."""
    if key in node.sticky:
        return
    if node.sticky:
        node.sticky.add(key)  # type: ignore[union-attr]
    else:
        node.sticky = {key}
    for parent, parent_key in node.parents:
        _stick(parent, parent_key)


def _settled(value: Any) -> bool:
    """Whether a value that is not tracked can never change in place (scalars, tuples of them)."""
    if type(value) in _SCALARS or isinstance(value, (int, float, str)):
        return True
    return type(value) is tuple and all(_settled(v) for v in value)


# --------------------------------------------------------------------------
# the tracked attrs classes

_TRACKED_CLASSES: dict[type, tuple[str, ...]] = {}  # class -> public field names
_nodes: dict[int, _Node] = {}  # id(attrs instance) -> its node, while it lives


class _Ref(weakref.ref):  # type: ignore[type-arg]
    """A weak reference to an attrs instance that knows its key in C{_nodes}."""

    __slots__ = ("key",)
    key: int


def _forget(ref: _Ref) -> None:
    _nodes.pop(ref.key, None)


def _record(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> Any:
    """The C{on_setattr} hook of L{tracked} classes: wrap the value, mark the field."""
    # attrs' own convert and validate hooks, run only for fields that have
    # them (a pipe of three hooks would cost every assignment three calls).
    if attribute.converter is not None:
        value = setters.convert(instance, attribute, value)
    if attribute.validator is not None:
        value = setters.validate(instance, attribute, value)
    node = _nodes.get(id(instance))
    if node is None:  # not in a tracked state (yet): adoption will see it whole
        return value
    name = attribute.name
    if name[0] == "_":
        return value
    old = getattr(instance, name, _MISSING)
    if old is value:
        return value
    if type(value) in _SCALARS and type(old) in _SCALARS:  # the common case, inlined
        if node.changed:
            node.changed.add(name)  # type: ignore[union-attr]
        else:
            node.changed = {name}
        if node.told != _epoch[0]:
            _tell(node)
        return value
    _release(old, node, name)
    value = _adopt(value, node, name)
    _touch(node, name)
    return value


_C = TypeVar("_C", bound=type)


@overload
@dataclass_transform(field_specifiers=(attrs.field,))
def tracked(cls: _C, **define: Any) -> _C: ...


@overload
def tracked(cls: None = None, **define: Any) -> Callable[[_C], _C]: ...


def tracked(cls: Any = None, **define: Any) -> Any:
    """
    Like C{attrs.define}, and every assignment to a public field of an
    instance in a tracked state is recorded for the next patch tick. Plain
    C{dict} and C{list} values assigned to a field become
    L{TrackedDict} / L{TrackedList}.

    Fields whose names start with C{_} are not synchronized (as
    C{to_tree} skips them) and not recorded. Keyword arguments go to
    C{attrs.define} (not C{frozen}: a frozen class is a plain value).
    """

    def wrap(cls: Any) -> Any:
        hooks = define.get("on_setattr") or []
        if not isinstance(hooks, list):
            hooks = [hooks]
        define["on_setattr"] = setters.pipe(*hooks, _record) if hooks else _record
        define["weakref_slot"] = True
        made = attrs.define(cls, **define)
        _TRACKED_CLASSES[made] = tuple(
            f.name for f in attrs.fields(made) if not f.name.startswith("_")
        )
        return made

    return wrap if cls is None else wrap(cls)


# --------------------------------------------------------------------------
# the tracked containers


def _node_of(value: Any) -> _Node | None:
    """The node of a tracked object (made on first sight for attrs instances); None for plain values."""
    t = type(value)
    if t is TrackedDict or t is TrackedList:
        node: _Node = value._node
        return node
    names = _TRACKED_CLASSES.get(t)
    if names is None:
        return None
    node_or_none = _nodes.get(id(value))
    if node_or_none is not None:
        return node_or_none
    node = _nodes[id(value)] = _Node()
    ref = node.ref = _Ref(value, _forget)
    ref.key = id(value)
    for name in names:  # adopt what __init__ stored (its hooks do not run there)
        child = getattr(value, name)
        adopted = _adopt(child, node, name)
        if adopted is not child:
            object.__setattr__(value, name, adopted)
    return node


def _adopt(value: Any, parent: _Node, key: Any) -> Any:
    """What to store of C{value} at C{parent}'s C{key}: plain dicts and lists wrapped, linked."""
    t = type(value)
    if t in _SCALARS:
        return value
    if t is dict:
        value = TrackedDict(value)
    elif t is list:
        value = TrackedList(value)
    node = _node_of(value)
    if node is None:
        if not _settled(value):
            _stick(parent, key)
        return value
    node.parents.append((parent, key))
    if node.told == _epoch[0]:  # it has told its other parents this tick: tell this one
        if parent.dirty:
            parent.dirty.add(key)  # type: ignore[union-attr]
        else:
            parent.dirty = {key}
        if parent.told != _epoch[0]:
            _tell(parent)
    if node.sticky:
        _stick(parent, key)
    return value


def _release(value: Any, parent: _Node, key: Any) -> None:
    """C{value} no longer sits at C{parent}'s C{key}: drop that one link."""
    t = type(value)
    if t in _SCALARS:
        return
    node = value._node if t is TrackedDict or t is TrackedList else _nodes.get(id(value))
    if node is not None:
        try:
            node.parents.remove((parent, key))
        except ValueError:
            pass


_K = TypeVar("_K")
_V = TypeVar("_V")
_T = TypeVar("_T")


class TrackedDict(dict[_K, _V]):
    """
    A C{dict} that records its changes for the state sync. Plain dicts and
    lists stored into it are wrapped (so C{d["a"] = {}} stores a
    L{TrackedDict}: keep using C{d["a"]}, not the dict you assigned).
    C{copy()} and pickling give plain data.
    """

    __slots__ = ("_node",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._node = _Node()
        super().__init__()
        if args or kwargs:
            self.update(*args, **kwargs)

    def __setitem__(self, key: _K, value: _V) -> None:
        node = self._node
        old = dict.get(self, key, _MISSING)
        if old is value:
            return
        if old is not _MISSING:
            _release(old, node, key)
        dict.__setitem__(self, key, _adopt(value, node, key))
        _touch(node, key)

    def __delitem__(self, key: _K) -> None:
        old = dict.pop(self, key)
        _release(old, self._node, key)
        _touch(self._node, key)

    def pop(self, key: _K, *default: Any) -> Any:
        if key not in self:
            return dict.pop(self, key, *default)
        old = dict.pop(self, key)
        _release(old, self._node, key)
        _touch(self._node, key)
        return old

    def popitem(self) -> tuple[_K, _V]:
        key, old = dict.popitem(self)
        _release(old, self._node, key)
        _touch(self._node, key)
        return key, old

    def clear(self) -> None:
        while self:
            self.popitem()

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: _K, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return dict.__getitem__(self, key)

    def __ior__(self, other: Any) -> TrackedDict[_K, _V]:  # type: ignore[override,misc]
        self.update(other)
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (TrackedDict, (dict(self),))

    def __repr__(self) -> str:
        return f"TrackedDict({dict.__repr__(self)})"


class TrackedList(list[_T]):
    """
    A C{list} that records its changes for the state sync (plain dicts and
    lists stored into it are wrapped). A list that changes is diffed as a
    whole at the next tick, which costs its length: keep large collections
    of entities in a L{TrackedDict} keyed by id.
    """

    __slots__ = ("_node",)

    def __init__(self, items: Iterable[Any] = ()) -> None:
        self._node = _Node()
        super().__init__()
        if items:
            self.extend(items)

    def _in(self, value: Any) -> Any:
        return _adopt(value, self._node, _LIST_KEY)

    def _out(self, value: Any) -> None:
        _release(value, self._node, _LIST_KEY)

    def _changed(self) -> None:
        _touch(self._node, _LIST_KEY)

    def __setitem__(self, index: Any, value: Any) -> None:
        if isinstance(index, slice):
            olds = list.__getitem__(self, index)
            list.__setitem__(self, index, [self._in(v) for v in value])
        else:
            olds = [list.__getitem__(self, index)]
            list.__setitem__(self, index, self._in(value))
        for old in olds:
            self._out(old)
        self._changed()

    def __delitem__(self, index: Any) -> None:
        olds = list.__getitem__(self, index)
        list.__delitem__(self, index)
        for old in olds if isinstance(index, slice) else [olds]:
            self._out(old)
        self._changed()

    def append(self, value: _T) -> None:
        list.append(self, self._in(value))
        self._changed()

    def extend(self, values: Iterable[_T]) -> None:
        list.extend(self, [self._in(v) for v in values])
        self._changed()

    def insert(self, index: SupportsIndex, value: _T) -> None:
        list.insert(self, index, self._in(value))
        self._changed()

    def pop(self, index: SupportsIndex = -1) -> _T:
        old = list.pop(self, index)
        self._out(old)
        self._changed()
        return old

    def remove(self, value: _T) -> None:
        del self[self.index(value)]

    def clear(self) -> None:
        olds = list(self)
        list.clear(self)
        for old in olds:
            self._out(old)
        self._changed()

    def sort(self, *args: Any, **kwargs: Any) -> None:
        list.sort(self, *args, **kwargs)
        self._changed()

    def reverse(self) -> None:
        list.reverse(self)
        self._changed()

    def __iadd__(self, values: Iterable[_T]) -> TrackedList[_T]:  # type: ignore[override,misc]
        self.extend(values)
        return self

    def __imul__(self, times: SupportsIndex) -> TrackedList[_T]:
        items = list(self) * int(times)
        self.clear()
        self.extend(items)
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (TrackedList, (list(self),))

    def __repr__(self) -> str:
        return f"TrackedList({list.__repr__(self)})"


_DICTS.add(TrackedDict)
_LISTS.add(TrackedList)

# --------------------------------------------------------------------------
# the walk: a tick's operations from the marks


def is_tracked(state: Any) -> bool:
    """Whether C{state} records its changes (a tracked root)."""
    return _node_of(state) is not None


def changes(state: Any, base: JSON) -> tuple[list[Operation], JSON]:
    """
    The operations turning C{base} (the tree clients hold, equal to the
    state's tree at the last call) into the state's tree now, found by
    walking the marks from the root; and the new tree (C{base}, patched in
    place, unless the root itself changed kind). Clears the marks walked.

    C{state} must be tracked (L{is_tracked}) and C{base} its tree at the
    last call (or earlier: stale marks cost a look, never a wrong patch,
    but a change made before C{base} was taken and not marked since is
    not seen, so take C{base} from the state as it is now).
    """
    node = _node_of(state)
    assert node is not None
    ops: list[Operation] = []
    if not node.pending():
        return ops, base
    visited: list[_Node] = []
    if type(state) is TrackedList:
        new = to_tree(state)
        visited.append(node)
        _compare(base, new, "", ops)
        base = new
        _resettle_list(state, node)
    elif type(base) is dict:
        _walk(state, node, base, "", ops, visited)
    else:
        new = to_tree(state)
        _compare(base, new, "", ops)
        base = new
    for walked in visited:
        walked.changed = walked.dirty = _EMPTY
    _epoch[0] += 1
    return ops, base


def _compare(old: Any, new: Any, path: str, ops: list[Operation]) -> None:
    """Append the operations turning C{old} into C{new} at C{path}."""
    if old is new:
        return
    t = type(old)
    if t is type(new) and (t is dict or t is list):
        _diff(old, new, path, ops)
    elif not _equal(old, new):
        ops.append({"op": "replace", "path": path, "value": new})


def _tree_key(key: Any) -> str:
    if type(key) is str:
        return key
    if isinstance(key, int) and not isinstance(key, bool):
        return str(int(key))
    if isinstance(key, str):
        return str.__str__(key)
    raise TypeError(f"dict keys must be str or int, not {type(key).__qualname__} ({key!r})")


def _resettle_list(lst: list[Any], node: _Node) -> bool:
    """After a list was diffed whole: whether it still holds plain values to visit each tick."""
    for v in lst:
        if type(v) in _SCALARS:
            continue
        child = _node_of(v)
        if (child is None and not _settled(v)) or (child is not None and child.sticky):
            return True
    node.sticky = _EMPTY
    return False


def _walk(
    obj: Any, node: _Node, base: dict[str, Any], path: str, ops: list[Operation], visited: list[_Node]
) -> bool:
    """Bring C{base} (a dict) level with C{obj} (a TrackedDict or tracked attrs instance) along the marks; whether it stays sticky."""
    visited.append(node)
    changed = node.changed
    keys = changed | node.dirty | node.sticky if (node.dirty or node.sticky) else changed
    is_dict = type(obj) is TrackedDict
    sticky: Any = node.sticky  # a set of its own once it has a key
    for key in keys:
        cur = dict.get(obj, key, _MISSING) if is_dict else getattr(obj, key, _MISSING)
        tk = key if type(key) is str else _tree_key(key)
        old = base.get(tk, _MISSING)
        where = path + "/" + (_escape(tk) if "~" in tk or "/" in tk else tk)
        if cur is _MISSING:
            if old is not _MISSING:
                ops.append({"op": "remove", "path": where})
                del base[tk]
            if sticky:
                sticky.discard(key)
            continue
        t = type(cur)
        if t in _SCALARS:
            if old is not cur and (type(old) is not t or old != cur):
                ops.append({"op": "add" if old is _MISSING else "replace", "path": where, "value": cur})
                base[tk] = cur
            if sticky:
                sticky.discard(key)
            continue
        child = cur._node if t is TrackedDict or t is TrackedList else _nodes.get(id(cur))
        if child is not None and key not in changed:
            if t is TrackedList:
                if type(old) is list:
                    visited.append(child)
                    new_list: Any = to_tree(cur)
                    _diff(old, new_list, where, ops)
                    old[:] = new_list
                    if not _resettle_list(cur, child):
                        if sticky:
                            sticky.discard(key)
                    continue
            elif type(old) is dict:
                if not _walk(cur, child, old, where, ops, visited):
                    if sticky:
                        sticky.discard(key)
                continue
        new = to_tree(cur)
        if old is _MISSING:
            ops.append({"op": "add", "path": where, "value": new})
        else:
            _compare(old, new, where, ops)
        base[tk] = new
        if child is None:
            if _settled(cur):
                if sticky:
                    sticky.discard(key)
        elif not child.sticky:
            if sticky:
                sticky.discard(key)
    return bool(sticky)
