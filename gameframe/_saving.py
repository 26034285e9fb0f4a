"""Saving one room to the room store: soon after its seats change, every interval, at a graceful stop; forgotten on dispose."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from gameframe.codec import encode
from gameframe.store.base import IRoomStore, SavedRoom

if TYPE_CHECKING:
    from gameframe._host import RoomHost

# What a saved room's bytes look like (the engine's layout, not the author's).
SAVE_FORMAT = 1

SnapshotObserver = Callable[[float, int], None]


class RoomSaver:
    """
    Keeps one room's saved copy up to date in the room store.

    One write is in flight at a time: a save asked for meanwhile waits, and
    then writes the room as it is by then (so saves coalesce). Every write
    carries the next version; bytes equal to the last written are not
    written again. The encoding runs on the reactor (it reads the room);
    the write itself is the store's, off the reactor.

    @param version: the version the room was restored at (0: a new room).
    @param observe: told each written snapshot's duration (seconds, from
        encoding to the store's answer) and size (bytes): metrics.
    """

    log = Logger()

    def __init__(
        self,
        host: RoomHost,
        store: IRoomStore,
        node: str,
        clock: IReactorTime,
        interval: float,
        version: int = 0,
        observe: SnapshotObserver | None = None,
        stopwatch: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._host = host
        self._store = store
        self._node = node
        self._clock = clock
        self._version = version
        self._observe = observe
        self._stopwatch = stopwatch
        self._last = b""
        self._writing = False
        self._waiting: list[Deferred[None]] = []
        self._soon: IDelayedCall | None = None
        self._closed = False
        self._forget = False
        self._failing = False  # the store refused or failed the last write (logged once)
        self._loop: LoopingCall | None = None
        if interval > 0:
            self._loop = LoopingCall(self.save)
            self._loop.clock = clock
            self._loop.start(interval, now=False)

    @property
    def version(self) -> int:
        """The version of the newest write asked for."""
        return self._version

    def soon(self) -> None:
        """Save at the end of this reactor turn (the seats changed: a token, a join, a leave)."""
        if self._soon is None and not self._closed:
            self._soon = self._clock.callLater(0, self._save_soon)

    def _save_soon(self) -> None:
        self._soon = None
        self.save()

    def save(self) -> Deferred[None]:
        """Write the room as it is now (or as it is once the write in flight is done)."""
        done: Deferred[None] = Deferred()
        if self._closed:
            done.callback(None)
            return done
        self._waiting.append(done)
        if not self._writing:
            self._write()
        return done

    def final(self) -> Deferred[None]:
        """
        A graceful stop: write the room one last time, then release it (no
        node owns it until one claims it: this one's next run, or another).
        """
        saved = self.save()
        self._close()

        def release(_: object) -> Any:
            return maybeDeferred(self._store.release, self._host.room_id, self._node)

        return saved.addCallback(release).addErrback(self._failed, "release")

    def forget(self) -> None:
        """The room is disposed: delete its saved copy (after a write in flight)."""
        self._close()
        self._forget = True
        if not self._writing:
            self._delete()

    def abandon(self) -> None:
        """Another node owns the room now: stop saving it, and delete nothing."""
        self._close()

    def _close(self) -> None:
        self._closed = True
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._soon is not None and self._soon.active():
            self._soon.cancel()
        self._soon = None

    def _delete(self) -> None:
        self._forget = False
        maybeDeferred(self._store.delete, self._host.room_id, self._node).addErrback(
            self._failed, "delete"
        )

    def _write(self) -> None:
        waiting, self._waiting = self._waiting, []
        started = self._stopwatch()
        try:
            data = encode(self._host.saved())
        except Exception:
            self.log.failure("{room}: its snapshot cannot be saved", room=self._host)
            self._settle(waiting)
            return
        if data == self._last:
            self._settle(waiting)
            return
        self._version += 1
        self._writing = True
        record = SavedRoom(
            room_id=self._host.room_id,
            room_type=self._host.room_type,
            node=self._node,
            version=self._version,
            data=data,
        )

        def written(stored: bool) -> None:
            if stored:
                self._last = data
                self._failing = False
                if self._observe is not None:
                    self._observe(self._stopwatch() - started, len(data))
            elif not self._failing:
                self._failing = True
                self.log.warn(
                    "{room}: the room store refused its snapshot (version {version}): "
                    "another node owns the room now",
                    room=self._host,
                    version=self._version,
                )

        def failed(failure: Failure) -> None:
            if not self._failing:
                self._failing = True
                self.log.warn(
                    "{room}: saving its snapshot failed ({why}); retrying at the next save",
                    room=self._host,
                    why=_why(failure),
                )

        def finished(_: object) -> None:
            self._writing = False
            self._settle(waiting)
            if self._forget:
                self._delete()
            elif self._waiting:  # saves asked for while this one was in flight
                self._write()

        maybeDeferred(self._store.save, record).addCallbacks(written, failed).addBoth(finished)

    @staticmethod
    def _settle(waiting: list[Deferred[None]]) -> None:
        for done in waiting:
            done.callback(None)

    def _failed(self, failure: Failure, what: str) -> None:
        self.log.warn(
            "{room}: the room store failed to {what} it ({why})",
            room=self._host,
            what=what,
            why=_why(failure),
        )


def _why(failure: Failure) -> str:
    return failure.getErrorMessage() or getattr(failure.type, "__name__", "failed")
