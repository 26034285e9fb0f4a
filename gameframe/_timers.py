"""A room's clock: the injected clock, with every call it schedules cancelled on dispose."""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer


@implementer(IReactorTime)
class RoomClock:
    """
    Wraps the server's clock for one room.

    Everything scheduled through it (directly, or by a C{LoopingCall} whose
    C{clock} it is) is cancelled by L{cancel_all} when the room is disposed,
    and an exception in a timer is logged without stopping the room.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._calls: set[IDelayedCall] = set()

    def seconds(self) -> float:
        return self._clock.seconds()

    def callLater(
        self, delay: float, callable: Callable[..., Any], *args: Any, **kw: Any
    ) -> IDelayedCall:
        def run() -> Any:
            self._calls.discard(call)
            try:
                return callable(*args, **kw)
            except Exception:
                self.log.failure("timer {timer!r} failed", timer=callable)
                return None

        call = self._clock.callLater(delay, run)
        if len(self._calls) > 64:
            self._calls = {c for c in self._calls if c.active()}
        self._calls.add(call)
        return call

    def getDelayedCalls(self) -> list[IDelayedCall]:
        return [c for c in self._calls if c.active()]

    def cancel_all(self) -> None:
        """Cancel every call still pending."""
        calls, self._calls = self._calls, set()
        for call in calls:
            if call.active():
                call.cancel()


class Metronome:
    """
    One looping call at a fixed interval, shared by every room beating at
    that interval (simulation ticks, patch clocks): a thousand rooms cost
    one timer, not a thousand. Each beat passes how many intervals elapsed
    since the last one (more than 1: beats were late).
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, interval: float) -> None:
        self.interval = interval
        self._members: dict[object, Callable[[int], None]] = {}
        self._loop = LoopingCall.withCount(self._beat)
        self._loop.clock = clock

    def add(self, key: object, beat: Callable[[int], None]) -> None:
        self._members[key] = beat
        if not self._loop.running:
            self._loop.start(self.interval, now=False)

    def remove(self, key: object) -> None:
        self._members.pop(key, None)
        if not self._members and self._loop.running:
            self._loop.stop()

    def _beat(self, count: int) -> None:
        for beat in list(self._members.values()):
            try:
                beat(count)
            except Exception:
                self.log.failure("{beat!r} failed", beat=beat)
