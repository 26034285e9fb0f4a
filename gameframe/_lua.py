"""A Lua script for Redis, named by its SHA1 for EVALSHA (the cluster's and the store's)."""

from __future__ import annotations

import hashlib

import attrs


@attrs.frozen
class Script:
    """One Lua script: its source (a shared library of functions, then its body) and the SHA1 EVALSHA names it by."""

    source: bytes
    sha: str

    @classmethod
    def of(cls, library: str, body: str) -> Script:
        source = (library + body).encode()
        return cls(source, hashlib.sha1(source).hexdigest())
