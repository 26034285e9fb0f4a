"""One connection (a file, a Redis link) that a room store and a player storage share."""

from __future__ import annotations

from typing import Callable

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()


class SharedConnection:
    """
    Closed once every holder has let go: each of the two facets of one
    backend closes on its own, as its interface says, and the last one
    closes what they share. Letting go twice is letting go once.
    """

    def __init__(self, close: Callable[[], Deferred[None]], holders: int) -> None:
        self._close = close
        self._holders = holders
        self._gone: set[int] = set()
        self._closed: Deferred[None] | None = None

    def holds(self, holder: object) -> bool:
        """Whether C{holder} has not let go yet."""
        return id(holder) not in self._gone

    def let_go(self, holder: object) -> Deferred[None]:
        """C{holder} is done with it: a Deferred that fires once that is settled."""
        if id(holder) not in self._gone:
            self._gone.add(id(holder))
            if len(self._gone) == self._holders:
                self._closed = self._close().addErrback(self._failed)
        if self._closed is None:
            return succeed(None)
        done: Deferred[None] = Deferred()
        self._closed.addCallback(done.callback)
        return done

    @staticmethod
    def _failed(failure: Failure) -> None:
        log.failure("closing the store's connection failed", failure)
