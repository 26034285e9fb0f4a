"""Compact patches: JSON Patch operations with short forms and numbered paths, still JSON.

A client that joins with ``"encoding": "compact"`` gets, instead of each
``patch`` message's RFC 6902 array, an ``ops`` array of short operations,
in order (docs/protocol.md, "Compact patches", is the contract):

- ``p, value`` (two elements of ``ops``) replaces the value at ``p``
  (``""``: the whole state): the common case costs no brackets;
- ``[p, value, 1]`` (one element, an array) adds (a new member of an
  object, or an insertion into an array);
- ``[p]`` removes.

An element of ``ops`` that is an array is one whole operation; any other
is the ``p`` of a replace whose value is the next element.

``p`` is a path: the first time a stream uses one it is written out as its
RFC 6901 pointer (a string) and gets the next number (0, 1, 2...); after
that it is written as that number.  Both sides keep the same *path table*:
a full ``state`` empties it, and so does a ``patch`` with ``"reset": true``
(before its operations apply).

The server side is :func:`encode_ops` (it takes the operations
:func:`gameframe.jsonpatch.diff` produces, so any producer of JSON Patch
operations combines with it); the client side is :func:`decode_ops`, which
turns compact operations back into JSON Patch operations for
:func:`gameframe.jsonpatch.apply`.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from gameframe.codec import encode
from gameframe.jsonpatch import Operation, PatchError

__all__ = ["MAX_PATHS", "PathTable", "decode_ops", "encode_ops"]

#: A stream's path table is emptied (``"reset": true``) before it grows past this.
MAX_PATHS = 1 << 16

_ADD = 1
_END: Any = object()


def encode_ops(ops: Iterable[Mapping[str, Any]], paths: dict[str, int]) -> list[Any]:
    """
    The compact form of JSON Patch C{ops} (add, remove and replace).

    C{paths} is the stream's path table (pointer -> number), updated in
    place: a pointer not in it is written out and numbered C{len(paths)}.
    The values are shared with C{ops}, not copied.
    """
    out: list[Any] = []
    append = out.append
    for op in ops:
        path = op["path"]
        ref = paths.get(path)
        if ref is None:
            paths[path] = len(paths)
            ref = path
        kind = op["op"]
        if kind == "replace":
            append(ref)
            append(op["value"])
        elif kind == "add":
            append([ref, op["value"], _ADD])
        elif kind == "remove":
            append([ref])
        else:
            raise ValueError(f"compact patches carry add, remove and replace, not {kind!r}")
    return out


class PathTable:
    """
    The server's side of one stream's path table: numbers the paths of its
    compact patches, and empties itself when a member's table was emptied.
    """

    __slots__ = ("paths", "reset")

    def __init__(self) -> None:
        self.paths: dict[str, int] = {}
        # Whether the next patch must empty the clients' tables: a member
        # got a full state (which empties its table) since the last one.
        self.reset = False

    def patch(self, seq: int, ops: Iterable[Mapping[str, Any]]) -> bytes:
        """The encoded compact C{patch} message of C{ops}."""
        message: dict[str, Any] = {"action": "patch", "seq": seq}
        if self.reset or len(self.paths) >= MAX_PATHS:
            self.paths.clear()
            self.reset = False
            message["reset"] = True
        message["ops"] = encode_ops(ops, self.paths)
        return encode(message)


def decode_ops(ops: Any, paths: list[str]) -> list[Operation]:
    """
    The JSON Patch operations that compact C{ops} stand for.

    C{paths} is the client's path table (number -> pointer), extended in
    place by the pointers C{ops} write out. Raises L{PatchError} for a
    malformed operation or a number the table does not hold.
    """
    if not isinstance(ops, list):
        raise PatchError(f"compact ops must be an array, not {ops!r}")
    out: list[Operation] = []
    elements = iter(ops)
    for op in elements:
        if not isinstance(op, list):
            value = next(elements, _END)
            if value is _END:
                raise PatchError(f"the replace of {op!r} has no value")
            op = [op, value]
        elif not 1 <= len(op) <= 3:
            raise PatchError(f"bad compact operation {op!r}")
        ref = op[0]
        if isinstance(ref, str):
            paths.append(ref)
            path = ref
        elif type(ref) is int and 0 <= ref < len(paths):
            path = paths[ref]
        else:
            raise PatchError(f"unknown path reference {ref!r}")
        if len(op) == 1:
            out.append({"op": "remove", "path": path})
        elif len(op) == 2:
            out.append({"op": "replace", "path": path, "value": op[1]})
        elif op[2] == _ADD:
            out.append({"op": "add", "path": path, "value": op[1]})
        else:
            raise PatchError(f"bad compact operation {op!r}")
    return out
