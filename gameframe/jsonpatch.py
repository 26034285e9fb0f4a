"""JSON Patch (RFC 6902): diff two JSON trees on the server, apply patches on clients.

The server snapshots each room's authoritative state with :func:`to_tree` every
tick and sends ``diff(previous_tree, current_tree)`` to clients; a client keeps a
mirror of the state with ``mirror = apply(mirror, patch)``.  The patches use only
standard RFC 6902 operations and RFC 6901 pointers, so any JSON Patch library
(in any language) can apply them too.

Equality is type-strict, as JSON sees it: ``True`` differs from ``1`` and ``1``
differs from ``1.0`` (they encode differently), so such changes are never lost.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping, TypeAlias, Union

import attrs

__all__ = ["JSON", "Operation", "PatchError", "apply", "diff", "to_tree"]

JSON: TypeAlias = Union[None, bool, int, float, str, list["JSON"], dict[str, "JSON"]]
Operation: TypeAlias = dict[str, Any]


class PatchError(ValueError):
    """A patch could not be applied: bad operation, bad path or failed "test"."""


# --------------------------------------------------------------------------
# to_tree

_SCALARS = frozenset({str, int, float, bool, type(None)})
# The mapping and sequence types converted on the fast path; gameframe.tracking
# adds its tracked containers (dict and list subclasses) here.
_DICTS: set[type] = {dict}
_LISTS: set[type] = {list, tuple}
_FIELDS: dict[type, tuple[str, ...]] = {}  # attrs class -> public field names


class _Unconvertible(TypeError):
    """Raised inside the converter; collects the path while unwinding."""

    def __init__(self, problem: str, bad_key: bool = False) -> None:
        super().__init__(problem)
        self.problem = problem
        self.bad_key = bad_key  # the dict's own key is bad: not part of the path
        self.path: list[str] = []  # innermost segment first


def to_tree(obj: object) -> JSON:
    """Convert game state (attrs instances, dicts, lists, tuples, scalars) to a
    fresh plain JSON tree that shares no container with ``obj``.

    attrs fields whose name starts with ``_`` are skipped; int dict keys become
    str; subclasses (IntEnum, StrEnum, OrderedDict, namedtuple) become their
    plain base type.  Anything else raises :class:`TypeError` naming the type
    and the path.
    """
    try:
        tree: JSON = _tree(obj)
    except _Unconvertible as e:
        where = "".join("/" + _escape(s) for s in reversed(e.path))
        raise TypeError(f"{e.problem} at {where or 'the root'!r}") from None
    return tree


def _tree(obj: Any) -> Any:
    # Hot path: exact-type checks first; scalar children are inlined to save calls.
    t = type(obj)
    if t in _SCALARS:
        return obj
    if t in _DICTS:
        out = {}
        k: Any = None
        try:
            for k, v in obj.items():
                if type(k) is not str:
                    k = _key(k)
                out[k] = v if type(v) in _SCALARS else _tree(v)
        except _Unconvertible as e:
            if e.bad_key:
                e.bad_key = False
            else:
                e.path.append(k)
            raise
        return out
    if t in _LISTS:
        lst = []
        i = 0
        try:
            for i, v in enumerate(obj):
                lst.append(v if type(v) in _SCALARS else _tree(v))
        except _Unconvertible as e:
            e.path.append(str(i))
            raise
        return lst
    names = _FIELDS.get(t)
    if names is None:
        if not attrs.has(t):
            return _tree_other(obj)
        names = _FIELDS[t] = tuple(
            f.name for f in attrs.fields(t) if not f.name.startswith("_")
        )
    out = {}
    name = ""
    try:
        for name in names:
            v = getattr(obj, name)
            out[name] = v if type(v) in _SCALARS else _tree(v)
    except _Unconvertible as e:
        e.path.append(name)
        raise
    return out


def _tree_other(obj: object) -> Any:
    """Slow path: subclasses of the supported types (IntEnum, OrderedDict...)."""
    if isinstance(obj, int):  # bool cannot be subclassed: handled by _tree
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, str):
        return str.__str__(obj)
    if isinstance(obj, dict):
        return _tree(dict(obj))
    if isinstance(obj, (list, tuple)):
        return _tree(list(obj))
    raise _Unconvertible(f"cannot convert {type(obj).__qualname__} to JSON")


def _key(k: object) -> str:
    if isinstance(k, str):
        return str.__str__(k)
    if isinstance(k, int) and not isinstance(k, bool):
        return str(int(k))
    raise _Unconvertible(
        f"dict keys must be str or int, not {type(k).__qualname__} ({k!r})", bad_key=True
    )


# --------------------------------------------------------------------------
# diff

_MISSING: Any = object()
_CONTAINERS = (dict, list)
_NUMBERS = frozenset({int, float})


def diff(old: JSON, new: JSON) -> list[Operation]:
    """Return the add/remove/replace operations turning ``old`` into ``new``.

    The operations apply in order.  Their values are shared with ``new``
    (not copied): serialize them or treat them as read-only.
    """
    ops: list[Operation] = []
    if old is not new:
        if type(old) is type(new) and type(old) in _CONTAINERS:
            _diff(old, new, "", ops)
        elif not _equal(old, new):
            ops.append({"op": "replace", "path": "", "value": new})
    return ops


def _diff(old: Any, new: Any, path: str, ops: list[Operation]) -> None:
    # old and new are both dicts or both lists.  Children that are identical
    # scalars are skipped without building their path.
    if type(old) is dict:
        kept = 0
        for k, ov in old.items():
            nv = new.get(k, _MISSING)
            if nv is _MISSING:
                ops.append({"op": "remove", "path": path + "/" + _escape(k)})
                continue
            kept += 1
            if ov is nv:
                continue
            t = type(ov)
            if t is type(nv):
                if t in _CONTAINERS:
                    _diff(ov, nv, path + "/" + _escape(k), ops)
                    continue
                if ov == nv:
                    continue
            ops.append({"op": "replace", "path": path + "/" + _escape(k), "value": nv})
        if kept != len(new):
            for k, nv in new.items():
                if k not in old:
                    ops.append({"op": "add", "path": path + "/" + _escape(k), "value": nv})
        return

    n, m = len(old), len(new)
    start, end_old, end_new = 0, n, m
    if n != m:  # trim the common prefix and suffix around the insertion/removal
        limit = min(n, m)
        while start < limit and _equal(old[start], new[start]):
            start += 1
        while end_old > start and end_new > start and _equal(old[end_old - 1], new[end_new - 1]):
            end_old -= 1
            end_new -= 1
    for i in range(start, min(end_old, end_new)):
        ov, nv = old[i], new[i]
        if ov is nv:
            continue
        t = type(ov)
        if t is type(nv):
            if t in _CONTAINERS:
                _diff(ov, nv, f"{path}/{i}", ops)
                continue
            if ov == nv:
                continue
        ops.append({"op": "replace", "path": f"{path}/{i}", "value": nv})
    for i in range(end_old - 1, end_new - 1, -1):
        ops.append({"op": "remove", "path": f"{path}/{i}"})
    for i in range(end_old, end_new):
        ops.append({"op": "add", "path": f"{path}/{i}", "value": new[i]})


def _equal(a: Any, b: Any, numeric: bool = False) -> bool:
    """Deep equality that tells ``True`` from ``1``, and ``1`` from ``1.0``
    unless ``numeric`` (RFC 6902 "test" compares numbers by value)."""
    if a is b:
        return True
    t = type(a)
    if t is not type(b) and not (numeric and t in _NUMBERS and type(b) in _NUMBERS):
        return False
    if a != b:  # loose C-speed check rejects most differences
        return False
    if t is dict:  # same keys, guaranteed by a == b
        return all(_equal(v, b[k], numeric) for k, v in a.items())
    if t is list:
        return all(_equal(x, y, numeric) for x, y in zip(a, b))
    return True


# --------------------------------------------------------------------------
# apply


def apply(doc: JSON, patch: Iterable[Mapping[str, Any]]) -> JSON:
    """Apply ``patch`` to ``doc`` and return the result.

    Containers are modified in place (use the return value: a patch on the
    root path ``""`` replaces the whole document).  Values are copied out of
    the patch, so the document never aliases it.  On :class:`PatchError` the
    document may be partly patched: resynchronize from a full snapshot.
    """
    for op in patch:
        doc = _apply_op(doc, op)
    return doc


def _apply_op(doc: JSON, op: Mapping[str, Any]) -> JSON:
    if not isinstance(op, Mapping):
        raise PatchError(f"an operation must be an object, not {op!r}")
    kind = op.get("op")
    path = _pointer(op, "path")
    if kind == "add":
        return _add(doc, path, _value(op))
    if kind == "remove":
        _remove(doc, path)
        return doc
    if kind == "replace":
        value = _value(op)
        if path == "":
            return value
        _remove(doc, path)
        return _add(doc, path, value)
    if kind == "move":
        source = _pointer(op, "from")
        if source == path:
            _get(doc, source)
            return doc
        if path.startswith(source + "/"):
            raise PatchError(f"cannot move {source!r} into its own child {path!r}")
        return _add(doc, path, _remove(doc, source))
    if kind == "copy":
        return _add(doc, path, _copy(_get(doc, _pointer(op, "from"))))
    if kind == "test":
        if not _equal(_get(doc, path), _value(op), numeric=True):
            raise PatchError(f"test failed at {path!r}")
        return doc
    raise PatchError(f"unknown operation {kind!r} in {dict(op)!r}")


def _pointer(op: Mapping[str, Any], name: str) -> str:
    pointer = op.get(name)
    if not isinstance(pointer, str):
        raise PatchError(f"operation {dict(op)!r} needs a string {name!r}")
    return pointer


def _value(op: Mapping[str, Any]) -> JSON:
    """The operation's "value", deep-copied so the document never aliases the patch."""
    if "value" not in op:
        raise PatchError(f"operation {dict(op)!r} has no 'value'")
    value: JSON = _copy(op["value"])
    return value


def _add(doc: JSON, path: str, value: JSON) -> JSON:
    if path == "":
        return value
    parent, token = _parent(doc, path)
    if isinstance(parent, dict):
        parent[token] = value
    else:
        parent.insert(_index(parent, token, path, append=True), value)
    return doc


def _remove(doc: JSON, path: str) -> JSON:
    if path == "":
        raise PatchError("cannot remove the whole document")
    parent, token = _parent(doc, path)
    if isinstance(parent, dict):
        try:
            return parent.pop(token)
        except KeyError:
            raise PatchError(f"no member at {path!r}") from None
    return parent.pop(_index(parent, token, path))


def _get(doc: JSON, path: str) -> JSON:
    for token in _tokens(path):
        doc = _child(doc, token, path)
    return doc


def _parent(doc: JSON, path: str) -> tuple[dict[str, JSON] | list[JSON], str]:
    tokens = _tokens(path)
    for token in tokens[:-1]:
        doc = _child(doc, token, path)
    if not isinstance(doc, (dict, list)):
        raise PatchError(f"parent of {path!r} is not an object or array")
    return doc, tokens[-1]


def _child(doc: JSON, token: str, path: str) -> JSON:
    if isinstance(doc, dict):
        try:
            return doc[token]
        except KeyError:
            raise PatchError(f"no member {token!r} in path {path!r}") from None
    if isinstance(doc, list):
        return doc[_index(doc, token, path)]
    raise PatchError(f"cannot descend into a scalar in path {path!r}")


def _index(array: list[JSON], token: str, path: str, append: bool = False) -> int:
    """Parse an array index; ``append`` allows "-" and len(array) (for add)."""
    size = len(array)
    if token == "-" and append:
        return size
    if not (token.isascii() and token.isdigit()) or (token[0] == "0" and token != "0"):
        raise PatchError(f"bad array index {token!r} in path {path!r}")
    i = int(token)
    if i > size or (i == size and not append):
        raise PatchError(f"array index {i} out of range in path {path!r}")
    return i


_BAD_ESCAPE = re.compile("~(?![01])")


def _tokens(path: str) -> list[str]:
    """Split an RFC 6901 pointer ("" is the root) into unescaped tokens."""
    if path == "":
        return []
    if path[0] != "/":
        raise PatchError(f"JSON pointer must start with '/': {path!r}")
    tokens = path[1:].split("/")
    if "~" in path:
        for i, t in enumerate(tokens):
            if "~" in t:
                if _BAD_ESCAPE.search(t):
                    raise PatchError(f"bad '~' escape in JSON pointer {path!r}")
                tokens[i] = _unescape(t)
    return tokens


def _unescape(token: str) -> str:
    """RFC 6901: "~1" -> "/", "~0" -> "~" (the reverse of L{_escape})."""
    return token.replace("~1", "/").replace("~0", "~") if "~" in token else token


def _escape(key: str) -> str:
    """RFC 6901: "~" -> "~0", "/" -> "~1"."""
    if "~" in key or "/" in key:
        return key.replace("~", "~0").replace("/", "~1")
    return key


def _copy(value: Any) -> Any:
    """Deep copy a JSON tree (much faster than copy.deepcopy)."""
    t = type(value)
    if t is dict:
        return {k: _copy(v) for k, v in value.items()}
    if t is list:
        return [_copy(v) for v in value]
    return value
