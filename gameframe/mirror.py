"""StateMirror: a client's copy of its room state, kept by applying the server's patches."""

from __future__ import annotations

import copy
from typing import Any, Mapping

from gameframe.compact import decode_ops
from gameframe.jsonpatch import JSON, PatchError, apply


class StateMirror:
    """
    Feed it every message from the server; it keeps C{state} equal to the
    server's view for this player.

    A C{state} message replaces the mirror; a C{patch} applies when its
    C{seq} is the next one. After a gap (a lost or reordered patch) the
    mirror is C{stale} until the next full state (a patch that does not
    apply makes it stale too): send
    C{{"action": "sync"}} to get one.

    It takes both encodings of patches: RFC 6902 JSON Patches (C{"patch"})
    and compact ones (C{"ops"}, see L{gameframe.compact}), whose path table
    it keeps in C{paths}.
    """

    def __init__(self) -> None:
        self.state: JSON = None
        self.seq: int | None = None
        self.stale = False
        self.paths: list[str] = []  # the compact path table of this stream

    def handle(self, message: Mapping[str, Any]) -> bool:
        """
        Apply a C{state} or C{patch} message; False for any other message.

        Returns True when the message was a state message, whatever its
        effect; check C{stale} to know whether a C{sync} is needed.
        """
        action = message.get("action")
        if action == "state":
            self.state = copy.deepcopy(message["state"])
            self.seq = message["seq"]
            self.stale = False
            self.paths = []
            return True
        if action == "patch":
            if self.stale or self.seq is None:
                return True
            if message["seq"] != self.seq + 1:
                self.stale = True
                return True
            try:
                if "ops" in message:
                    if message.get("reset"):
                        self.paths = []
                    patch = decode_ops(message["ops"], self.paths)
                else:
                    patch = message["patch"]
                self.state = apply(self.state, patch)
            except PatchError:
                self.stale = True  # our copy went wrong somehow: start over
                return True
            self.seq = message["seq"]
            return True
        return False
