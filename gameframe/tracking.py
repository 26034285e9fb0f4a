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

A list (`_ListNode`) records index-level operations instead of keys: an
append, an insertion, a removal at an index, an assignment to an index, in
order (its ``log``); the walk replays them on the tree the clients hold and
sends them as ``add``, ``remove`` and ``replace`` operations. Its tracked
elements link to it under their ``id()``, so a change inside one element is
found through an index of the list's elements (kept up by appends, pops from
the end and assignments to an index, rebuilt after anything else), and costs
what changed in that element, not the list's length. The rest (sorting,
reversing, slices) and a log longer than the list make the next tick diff
the list whole. A log replays only onto a tree that was level with the list
when the log began: each list node keeps the (identity of the) trees it
brought level at its last walk, and a tree it does not know (a state sent
whole since, a list that moved) is diffed whole instead.
"""

from __future__ import annotations

import functools
import operator
import weakref
from typing import Any, Callable, Iterable, SupportsIndex, TypeVar, dataclass_transform, overload

import attrs
from attrs import setters

from gameframe.jsonpatch import _DICTS, _LISTS, JSON, Operation, _diff, _equal, _escape, _key, to_tree

__all__ = ["TrackedDict", "TrackedList", "tracked"]

_SCALARS = frozenset({str, int, float, bool, type(None)})
_MISSING: Any = object()
_EMPTY: frozenset[Any] = frozenset()
# The sticky key of a list holding a plain value (its tracked elements'
# keys are their ids): the list is diffed whole every tick.
_PLAIN = None
_ITEM: Any = object()  # _adopt's key for a list's element
# How many more entries than its length a list's log may hold before the
# list is diffed whole at the next tick instead (the log also bounds the
# memory a list mutated with nobody watching holds on to).
_LOG_SLACK = 16

# The list operations a log holds: (_ADD, index, value), (_REMOVE, index),
# (_REPLACE, index, value).
_ADD = 0
_REMOVE = 1
_REPLACE = 2

# Advanced after every walk: a node told its parents in an older tick tells
# them again at its next change (see `_tell`).
_tick = 0


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


class _ListNode(_Node):
    """A list's node: its operations since the last walk, where its elements are, which trees are level with it."""

    __slots__ = ("log", "index", "level", "levelled")

    def __init__(self) -> None:
        super().__init__()
        # The operations since the last walk, in order; None: diff it whole.
        self.log: list[tuple[Any, ...]] | None = []
        # id(element) -> its index, for the tracked elements; None when an
        # operation moved elements (rebuilt by the walk when it needs it).
        self.index: dict[int, int] | None = None
        # The trees that were level with the list after its last walk (the
        # only ones its log replays onto), and those brought level in this one.
        self.level: list[list[Any]] = []
        self.levelled: list[list[Any]] = []

    def pending(self) -> bool:
        return self.log is None or bool(self.log or self.dirty or self.sticky)


def _touch(node: _Node, key: Any) -> None:
    if node.changed:
        node.changed.add(key)  # type: ignore[union-attr]
    else:
        node.changed = {key}
    if node.told != _tick:
        _tell(node)


def _tell(node: _Node) -> None:
    """Mark every path from the root down to C{node} (once per node per tick)."""
    node.told = _tick
    for parent, key in node.parents:
        if parent.dirty:
            parent.dirty.add(key)  # type: ignore[union-attr]
        else:
            parent.dirty = {key}
        if parent.told != _tick:
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
_SUFFIXES: dict[type, dict[str, str]] = {}  # class -> public field name -> "/name"
_nodes: dict[int, _Node] = {}  # id(attrs instance) -> its node, while it lives
_node_get = _nodes.get


class _Ref(weakref.ref):  # type: ignore[type-arg]
    """A weak reference to an attrs instance that knows its key in C{_nodes}."""

    __slots__ = ("key",)
    key: int


def _forget(ref: _Ref) -> None:
    _nodes.pop(ref.key, None)


def _assign(node: _Node, name: str, old: Any, value: Any) -> Any:
    """Record that field C{name} goes from C{old} to C{value} (not both scalars); what to store."""
    _release(old, node, name)
    value = _adopt(value, node, name)
    _touch(node, name)
    return value


def _note(instance: Any, name: str, value: Any) -> Any:
    """Record an assignment to public field C{name} (its hooks have run); what to store."""
    node = _node_get(id(instance))
    if node is None:  # not in a tracked state (yet): adoption will see it whole
        return value
    old = getattr(instance, name, _MISSING)
    if old is value:
        return value
    if type(value) in _SCALARS and type(old) in _SCALARS:
        _touch(node, name)
        return value
    return _assign(node, name, old, value)


def _convert_validate(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> Any:
    """attrs.define's default C{on_setattr} (convert, then validate), for the fields that need it."""
    if attribute.converter is not None:
        value = setters.convert(instance, attribute, value)
    if attribute.validator is not None:
        value = setters.validate(instance, attribute, value)
    return value


def _record(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> Any:
    """
    An C{on_setattr} hook doing what a L{tracked} class's C{__setattr__}
    does for a field without hooks of its own: convert, validate, record.
    (The classes themselves run a C{__setattr__} of their own, which costs
    one call per assignment instead of three.)
    """
    value = _convert_validate(instance, attribute, value)
    if attribute.name[0] == "_":
        return value
    return _note(instance, attribute.name, value)


_Hook = Callable[[Any, "attrs.Attribute[Any]", Any], Any]


def _setattr_for(cls: type, class_hook: _Hook | None) -> Callable[[Any, str, Any], None]:
    """
    The C{__setattr__} of a tracked class: each field's attrs hooks (its
    own C{on_setattr}, else the class's, else converting and validating),
    then, for a public field of an instance in a tracked state, the record.
    The common case (a public field without hooks, a scalar replacing a
    scalar) runs inline: one Python call per assignment.
    """
    fast: set[str] = set()
    hooked: dict[str, tuple[attrs.Attribute[Any], _Hook | None, bool]] = {}
    for field in attrs.fields(cls):
        hook: Any = field.on_setattr or class_hook
        if hook is setters.NO_OP:
            hook = None
        elif hook is None and (field.converter is not None or field.validator is not None):
            hook = _convert_validate
        public = not field.name.startswith("_")
        if hook is None and public:
            fast.add(field.name)
        else:
            hooked[field.name] = (field, hook, public)
    fast_names = frozenset(fast)
    set_slot = object.__setattr__
    scalars = _SCALARS

    def __setattr__(self: Any, name: str, value: Any) -> None:
        if name in fast_names:
            node = _node_get(id(self))
            if node is not None:
                old = getattr(self, name, _MISSING)
                if old is not value:
                    if type(value) in scalars and type(old) in scalars:
                        changed = node.changed
                        if changed:
                            changed.add(name)  # type: ignore[union-attr]
                        else:
                            node.changed = {name}
                        if node.told != _tick:  # its first change this tick
                            _tell(node)
                    else:
                        value = _assign(node, name, old, value)
            set_slot(self, name, value)
            return
        entry = hooked.get(name)
        if entry is not None:
            field, field_hook, public = entry
            if field_hook is not None:
                value = field_hook(self, field, value)
            if public:
                value = _note(self, name, value)
        set_slot(self, name, value)

    return __setattr__


_FieldsWalker = Callable[[Any, Any, dict[str, Any], str, list[Operation], list["_Node"], "_Node"], None]
_WALKERS: dict[type, _FieldsWalker] = {}  # class -> its fields' walk (see `_fields_walker`)


def _fields_walker(names: tuple[str, ...]) -> _FieldsWalker:
    """
    The walk of a tracked class's changed fields, written out for its
    fields (a slot read and a constant path per field instead of a loop
    over names): C{walk(instance, changed, tree, path, ops, visited, node)}
    brings C{tree} level with C{instance}'s fields in C{changed}.
    """
    if len(names) > 12 or not all(name.isidentifier() for name in names):
        return _walk_fields
    lines = [
        "def walk(cur, changed, old, where, ops, visited, child, _SCALARS=_SCALARS, _walk_fields=_walk_fields):",
        "    append = ops.append",
    ]
    for name in names:
        path = "/" + name
        lines += [
            f"    if {name!r} in changed:",
            "        try:",
            f"            value = cur.{name}",
            f"            was = old[{name!r}]",
            "        except (AttributeError, KeyError):  # not set, or not in the tree: the loop sorts it out",
            f"            _walk_fields(cur, ({name!r},), old, where, ops, visited, child)",
            "        else:",
            "            t = type(value)",
            "            if t in _SCALARS:",
            "                if type(was) is not t or was != value:",
            f'                    append({{"op": "replace", "path": where + {path!r}, "value": value}})',
            f"                    old[{name!r}] = value",
            f"            elif _visit(cur, value, {name!r}, changed, old, where + {path!r}, ops, visited):",
            f"                _stick(child, {name!r})",
        ]
    namespace: dict[str, Any] = {}
    exec("\n".join(lines), globals(), namespace)
    walk: _FieldsWalker = namespace["walk"]
    return walk


def _walk_fields(
    cur: Any, changed: Any, old: dict[str, Any], where: str, ops: list[Operation], visited: list[_Node], child: _Node
) -> None:
    """The loop that `_fields_walker` writes out (for classes with many fields)."""
    suffixes = _SUFFIXES[type(cur)]
    for name in changed:
        value = getattr(cur, name, _MISSING)
        if type(value) in _SCALARS:
            was = old.get(name, _MISSING)
            if was is not value and (type(was) is not type(value) or was != value):
                ops.append({
                    "op": "add" if was is _MISSING else "replace",
                    "path": where + suffixes[name],
                    "value": value,
                })
                old[name] = value
        elif _visit(cur, value, name, changed, old, where + suffixes[name], ops, visited):
            _stick(child, name)


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
    C{attrs.define} (not C{frozen}: a frozen class is a plain value);
    C{on_setattr} hooks (the class's and the fields') run before the
    assignment is recorded.
    """

    def wrap(cls: Any) -> Any:
        options = dict(define)
        hooks = options.get("on_setattr") or []
        if not isinstance(hooks, list):
            hooks = [hooks]
        class_hook = setters.pipe(*hooks) if hooks else None
        # attrs writes an __init__ that bypasses __setattr__ only for classes
        # with hooks: give it one, then put the class's own __setattr__ in
        # place of the one attrs wrote.
        options["on_setattr"] = setters.pipe(*hooks, _record) if hooks else _record
        options["weakref_slot"] = True
        made = attrs.define(cls, **options)
        made.__setattr__ = _setattr_for(made, class_hook)
        made.__init__ = _adopting(made.__init__)
        names = tuple(f.name for f in attrs.fields(made) if not f.name.startswith("_"))
        _TRACKED_CLASSES[made] = names
        _SUFFIXES[made] = {name: "/" + name for name in names}
        _WALKERS[made] = _fields_walker(names)
        return made

    return wrap if cls is None else wrap(cls)


def _adopting(init: Callable[..., None]) -> Callable[..., None]:
    """C{init}, then the instance's dicts and lists made tracked: what it holds is what the state will."""

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        _node_of(self)

    return __init__


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


def _link(node: _Node, parent: _Node, key: Any) -> None:
    """C{node} is stored at C{parent}'s C{key}: link it, and tell the parent what it knows."""
    node.parents.append((parent, key))
    if node.told == _tick:  # it has told its other parents this tick: tell this one too
        _tell(node)
    if node.sticky:
        _stick(parent, key)


def _adopt(value: Any, parent: _Node, key: Any) -> Any:
    """
    What to store of C{value} at C{parent}'s C{key}: plain dicts and lists
    wrapped, linked. A list's element (C{key} L{_ITEM}) is linked under its
    id and, if it is a plain value, marked under L{_PLAIN}.
    """
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
            _stick(parent, _PLAIN if key is _ITEM else key)
        return value
    _link(node, parent, id(value) if key is _ITEM else key)
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
        if type(value) in _SCALARS and type(old) in _SCALARS:  # the common case: no links
            dict.__setitem__(self, key, value)
        else:
            if old is not _MISSING:
                _release(old, node, key)
            dict.__setitem__(self, key, _adopt(value, node, key))
        _touch(node, key)

    def __delitem__(self, key: _K) -> None:
        self.pop(key)

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
    lists stored into it are wrapped). Appending, inserting, removing or
    assigning at an index reach the clients as one operation each, and a
    change inside a tracked element (C{lst[i].x = 1}) as the operations of
    that element alone. Sorting, reversing and slice assignments make the
    next tick compare the list whole, which costs its length.
    """

    __slots__ = ("_node",)
    _node: _ListNode

    def __init__(self, items: Iterable[Any] = ()) -> None:
        self._node = _ListNode()
        super().__init__()
        if items:
            # A new list: nothing to log (no tree is level with it yet).
            list.extend(self, [self._in(v) for v in items])

    # -- links and the log

    def _in(self, value: Any) -> Any:
        """What to store of C{value}: wrapped and linked (under its id), or marked plain."""
        return _adopt(value, self._node, _ITEM)

    def _out(self, value: Any) -> None:
        if type(value) not in _SCALARS:
            _release(value, self._node, id(value))

    def _log(self, entry: tuple[Any, ...]) -> None:
        node = self._node
        log = node.log
        if log is not None:
            log.append(entry)
            if len(log) > len(self) + _LOG_SLACK:
                node.log = None
        if node.told != _tick:
            _tell(node)

    def _whole(self) -> None:
        """The next tick compares the list whole (and the element index is stale)."""
        node = self._node
        node.log = None
        node.index = None
        if node.told != _tick:
            _tell(node)

    def _indexed(self, value: Any, i: int) -> None:
        """C{value} now sits at C{i} (no element moved): keep the index."""
        index = self._node.index
        if index is not None and type(value) not in _SCALARS:
            key = id(value)
            if key in index:  # the same object twice: the walk will scan
                self._node.index = None
            else:
                index[key] = i

    def _unindexed(self, value: Any) -> None:
        index = self._node.index
        if index is not None and type(value) not in _SCALARS:
            index.pop(id(value), None)

    # -- the operations

    def _dropped_all(self, olds: Iterable[Any]) -> None:
        """C{olds} left the list in an operation compared whole at the next tick."""
        for old in olds:
            self._out(old)
        self._whole()

    def __setitem__(self, index: Any, value: Any) -> None:
        if isinstance(index, slice):
            olds = list.__getitem__(self, index)
            list.__setitem__(self, index, [self._in(v) for v in value])
            self._dropped_all(olds)
            return
        i = operator.index(index)
        old = list.__getitem__(self, i)
        if old is value:
            return
        if i < 0:
            i += len(self)
        value = self._in(value)
        list.__setitem__(self, i, value)
        self._out(old)
        self._unindexed(old)
        self._indexed(value, i)
        self._log((_REPLACE, i, value))

    def __delitem__(self, index: Any) -> None:
        if isinstance(index, slice):
            olds = list.__getitem__(self, index)
            list.__delitem__(self, index)
            self._dropped_all(olds)
            return
        i = operator.index(index)
        old = list.__getitem__(self, i)
        if i < 0:
            i += len(self)
        list.__delitem__(self, i)
        self._out(old)
        self._removed(old, i)

    def _removed(self, old: Any, i: int) -> None:
        if i == len(self):  # the last one: nothing moved
            self._unindexed(old)
        else:
            self._node.index = None
        self._log((_REMOVE, i))

    def append(self, value: _T) -> None:
        value = self._in(value)
        list.append(self, value)
        i = len(self) - 1
        self._indexed(value, i)
        self._log((_ADD, i, value))

    def extend(self, values: Iterable[_T]) -> None:
        for value in list(values):  # (values may be this very list)
            self.append(value)

    def insert(self, index: SupportsIndex, value: _T) -> None:
        i = operator.index(index)
        n = len(self)
        if i < 0:
            i = max(i + n, 0)
        elif i > n:
            i = n
        value = self._in(value)
        list.insert(self, i, value)
        if i == n:
            self._indexed(value, i)
        else:
            self._node.index = None
        self._log((_ADD, i, value))

    def pop(self, index: SupportsIndex = -1) -> _T:
        i = operator.index(index)
        old = list.pop(self, i)
        if i < 0:
            i += len(self) + 1
        self._out(old)
        self._removed(old, i)
        return old

    def remove(self, value: _T) -> None:
        del self[self.index(value)]

    def clear(self) -> None:
        olds = list(self)
        list.clear(self)
        self._dropped_all(olds)

    def sort(self, *args: Any, **kwargs: Any) -> None:
        list.sort(self, *args, **kwargs)
        self._whole()

    def reverse(self) -> None:
        list.reverse(self)
        self._whole()

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
    global _tick
    node = _node_of(state)
    assert node is not None
    ops: list[Operation] = []
    if not node.pending():
        return ops, base
    visited: list[_Node] = []
    if type(state) is TrackedList:
        if type(base) is list:
            _walk_list(state, node, base, "", ops, visited)  # type: ignore[arg-type]
        else:
            base = to_tree(state)
            ops.append({"op": "replace", "path": "", "value": base})
            _levelled(node, base, visited)  # type: ignore[arg-type]
    elif type(base) is dict:
        _walk(state, node, base, "", ops, visited)
    else:
        new = to_tree(state)
        _compare(base, new, "", ops)
        base = new
    for walked in visited:
        walked.changed = walked.dirty = _EMPTY
        if type(walked) is _ListNode:
            walked.log = []
            if walked.levelled:  # (not again for a list visited twice)
                walked.level = walked.levelled
                walked.levelled = []
    _tick += 1
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


def _levelled(node: _ListNode, tree: list[Any], visited: list[_Node]) -> None:
    """C{tree} was just made from the list of C{node}: its log starts over from it."""
    visited.append(node)
    node.levelled.append(tree)


def _walk(
    obj: Any, node: _Node, base: dict[str, Any], path: str, ops: list[Operation], visited: list[_Node]
) -> bool:
    """Bring C{base} (a dict) level with C{obj} (a TrackedDict or tracked attrs instance) along the marks; whether it stays sticky."""
    visited.append(node)
    changed = node.changed
    dirty = node.dirty
    sticky: Any = node.sticky  # a set of its own once it has a key
    if sticky:
        keys = changed | dirty | sticky
    elif dirty:
        keys = changed | dirty if changed else dirty
    else:
        keys = changed
    scalars = _SCALARS
    if type(obj) is TrackedDict:
        get = obj.get
        base_get = base.get
        append = ops.append
        walkers = _WALKERS
        prefix = path + "/"
        visit = visited.append
        node_get = _node_get
        for key in keys:
            cur = get(key, _MISSING)
            child = node_get(id(cur))
            if child is not None and key not in changed:
                old = base_get(key)
                if type(old) is dict and not child.dirty and not child.sticky:
                    # The common case, inline: a tracked attrs instance that
                    # stayed at its key, and whose own fields changed (an
                    # entity that moved). (A key that is not a str finds no
                    # tree here: the tree's keys are.)
                    visit(child)
                    walkers[type(cur)](
                        cur, child.changed, old,
                        prefix + (_escape(key) if "~" in key or "/" in key else key),
                        ops, visited, child,
                    )
                    if sticky and not child.sticky:
                        sticky.discard(key)
                    continue
            if type(key) is str:
                tk = key
                where = path + "/" + (_escape(key) if "~" in key or "/" in key else key)
            else:
                tk = _key(key)
                where = path + "/" + _escape(tk)
            t = type(cur)
            if t in scalars:
                old = base_get(tk, _MISSING)
                if old is not cur and (type(old) is not t or old != cur):
                    append({"op": "add" if old is _MISSING else "replace", "path": where, "value": cur})
                    base[tk] = cur
            elif _visit(obj, cur, key, changed, base, where, ops, visited, tk):
                continue
            if sticky:
                sticky.discard(key)
    else:
        suffixes = _SUFFIXES[type(obj)]
        for key in keys:
            cur = getattr(obj, key, _MISSING)
            where = path + suffixes[key]
            t = type(cur)
            if t in scalars:
                old = base.get(key, _MISSING)
                if old is not cur and (type(old) is not t or old != cur):
                    ops.append({"op": "add" if old is _MISSING else "replace", "path": where, "value": cur})
                    base[key] = cur
            elif _visit(obj, cur, key, changed, base, where, ops, visited):
                continue
            if sticky:
                sticky.discard(key)
    return bool(node.sticky)


def _visit(
    obj: Any,
    cur: Any,
    key: Any,
    changed: Any,
    base: dict[str, Any],
    where: str,
    ops: list[Operation],
    visited: list[_Node],
    tk: Any = None,
) -> bool:
    """Bring C{base}'s C{tk} (default C{key}) level with C{cur} (not a scalar), at C{obj}'s C{key}; whether it stays sticky."""
    if tk is None:
        tk = key
    old = base.get(tk, _MISSING)
    if cur is _MISSING:
        if old is not _MISSING:
            ops.append({"op": "remove", "path": where})
            del base[tk]
        return False
    t = type(cur)
    child = cur._node if t is TrackedDict or t is TrackedList else _node_get(id(cur))
    if child is not None and key not in changed:
        if t is TrackedList:
            if type(old) is list:
                return _walk_list(cur, child, old, where, ops, visited)  # type: ignore[arg-type]
        elif type(old) is dict:
            return _walk(cur, child, old, where, ops, visited)
    new = to_tree(cur)
    if old is _MISSING:
        ops.append({"op": "add", "path": where, "value": new})
    else:
        _compare(old, new, where, ops)
    base[tk] = new
    if child is None:
        return not _settled(cur)
    if t is TrackedList:
        _levelled(child, new, visited)  # type: ignore[arg-type]
    return bool(child.sticky)


def _walk_list(
    lst: list[Any], node: _ListNode, base: list[Any], path: str, ops: list[Operation], visited: list[_Node]
) -> bool:
    """Bring C{base} level with C{lst} (a TrackedList): replay its log, walk into its changed elements; whether it stays sticky."""
    visited.append(node)
    log = node.log
    sticky: Any = node.sticky
    if log is None or _PLAIN in sticky or not any(tree is base for tree in node.level):
        return _whole_list(lst, node, base, path, ops)
    try:
        for entry in log:
            kind = entry[0]
            i = entry[1]
            where = f"{path}/{i}"
            if kind == _REMOVE:
                ops.append({"op": "remove", "path": where})
                del base[i]
                continue
            value = entry[2]
            tree = value if type(value) in _SCALARS else to_tree(value)
            if kind == _ADD:
                ops.append({"op": "add", "path": where, "value": tree})
                base.insert(i, tree)
            else:
                _compare(base[i], tree, where, ops)
                base[i] = tree
    except TypeError:
        # A value that has left the list since no longer converts: go on
        # from the operations sent so far by comparing the list whole (which
        # raises if what the list holds does not convert either).
        return _whole_list(lst, node, base, path, ops)
    keys = node.dirty
    if sticky:
        keys = keys | sticky
    if keys:
        index = node.index
        if index is None:
            index = _index(lst)
            node.index = index
        if index is not None:
            prefix = path + "/"
            for key in keys:
                i = index.get(key, -1)
                if i < 0:
                    if sticky:
                        sticky.discard(key)
                    continue
                cur = lst[i]
                child = _node_get(id(cur))
                old = base[i]
                if child is not None and type(old) is dict and not child.dirty and not child.sticky:
                    # A tracked attrs instance whose own fields changed: its walk, inline.
                    visited.append(child)
                    _WALKERS[type(cur)](cur, child.changed, old, prefix + str(i), ops, visited, child)
                    if sticky and not child.sticky:
                        sticky.discard(key)
                elif not _into(cur, base, i, prefix + str(i), ops, visited):
                    if sticky:
                        sticky.discard(key)
        else:  # the same object twice: find every place of each
            for i, value in enumerate(lst):
                if id(value) in keys and type(value) not in _SCALARS:
                    _into(value, base, i, f"{path}/{i}", ops, visited)
            _resettle_list(lst, node)
    node.levelled.append(base)
    return bool(node.sticky)


def _whole_list(lst: list[Any], node: _ListNode, base: list[Any], path: str, ops: list[Operation]) -> bool:
    """Bring C{base} level with C{lst} by comparing them whole; whether the list stays sticky."""
    whole: Any = to_tree(lst)
    _diff(base, whole, path, ops)
    base[:] = whole
    node.levelled.append(base)
    return _resettle_list(lst, node)


def _into(cur: Any, base: list[Any], i: int, where: str, ops: list[Operation], visited: list[_Node]) -> bool:
    """Bring C{base[i]} level with C{cur}, a tracked element the list did not move; whether it stays sticky."""
    old = base[i]
    t = type(cur)
    child = cur._node if t is TrackedDict or t is TrackedList else _node_get(id(cur))
    if child is not None:
        walk_fields = _WALKERS.get(t)
        if walk_fields is not None and type(old) is dict and not child.dirty and not child.sticky:
            visited.append(child)  # a tracked attrs instance whose own fields changed
            walk_fields(cur, child.changed, old, where, ops, visited, child)
            return bool(child.sticky)
        if t is TrackedList:
            if type(old) is list:
                return _walk_list(cur, child, old, where, ops, visited)  # type: ignore[arg-type]
        elif type(old) is dict:
            return _walk(cur, child, old, where, ops, visited)
    new = to_tree(cur)
    _compare(old, new, where, ops)
    base[i] = new
    if child is None:
        return not _settled(cur)
    if t is TrackedList:
        _levelled(child, new, visited)  # type: ignore[arg-type]
    return bool(child.sticky)


def _index(lst: list[Any]) -> dict[int, int] | None:
    """id(element) -> index for the list's tracked elements; None if one sits there twice."""
    index: dict[int, int] = {}
    scalars = _SCALARS
    for i, value in enumerate(lst):
        if type(value) not in scalars:
            key = id(value)
            if key in index:
                return None
            index[key] = i
    return index


def _resettle_list(lst: list[Any], node: _Node) -> bool:
    """After a list was diffed whole: which of its elements it still visits each tick (plain values, sticky elements)."""
    sticky: set[Any] = set()
    for v in lst:
        if type(v) in _SCALARS:
            continue
        child = _node_of(v)
        if child is None:
            if not _settled(v):
                sticky.add(_PLAIN)
        elif child.sticky:
            sticky.add(id(v))
    node.sticky = sticky or _EMPTY
    return bool(sticky)
