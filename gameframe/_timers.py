"""A room's clock: the injected clock, with every call it schedules cancelled on dispose."""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

# The fewest tracked calls that trigger a sweep of the inactive ones.
_MIN_SWEEP = 64


@implementer(IReactorTime)
class RoomClock:
    """
    Wraps the server's clock for one room.

    Everything scheduled through it (directly, or by a C{LoopingCall} whose
    C{clock} it is) is cancelled by L{cancel_all} when the room is disposed,
    and an exception in a timer is logged without stopping the room.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, owner: object = None) -> None:
        self._clock = clock
        self._owner = owner  # named in the log when a timer fails (the room)
        self._calls: set[IDelayedCall] = set()
        # A call cancelled by its owner stays in _calls until a sweep (a call
        # that runs removes itself). A sweep runs when the set has doubled
        # since the last one: each callLater costs amortised O(1), and the set
        # never holds more than twice the most calls pending at once (or 64).
        self._sweep_at = _MIN_SWEEP

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
                self.log.failure(
                    "{room}: timer {timer!r} failed", room=self._owner, timer=callable
                )
                return None

        call = self._clock.callLater(delay, run)
        if len(self._calls) >= self._sweep_at:
            self._calls = {c for c in self._calls if c.active()}
            self._sweep_at = max(_MIN_SWEEP, 2 * len(self._calls))
        self._calls.add(call)
        return call

    def getDelayedCalls(self) -> list[IDelayedCall]:
        return [c for c in self._calls if c.active()]

    def cancel_all(self) -> None:
        """Cancel every call still pending."""
        calls, self._calls = self._calls, set()
        self._sweep_at = _MIN_SWEEP
        for call in calls:
            if call.active():
                call.cancel()


class Metronome:
    """
    One timer at a fixed interval, shared by every room beating at that
    interval (simulation ticks, patch clocks): a thousand rooms cost one
    timer, not a thousand. Beats are counted in whole intervals from the
    start, so late beats are never lost to float rounding: each beat passes
    how many intervals elapsed since the last one (more than 1: it was late).
    Members of a lower C{phase} beat first (ticks before patches).
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, interval: float) -> None:
        self.interval = interval
        self._clock = clock
        self._members: dict[object, tuple[int, Callable[[int], None]]] = {}
        self._order: list[Callable[[int], None]] = []
        self._call: IDelayedCall | None = None
        self._start = 0.0
        self._beats = 0

    def add(self, key: object, beat: Callable[[int], None], phase: int = 0) -> None:
        self._members[key] = (phase, beat)
        self._reorder()
        if self._call is None:
            self._start = self._clock.seconds()
            self._beats = 0
            self._schedule()

    def remove(self, key: object) -> None:
        if self._members.pop(key, None) is not None:
            self._reorder()
        if not self._members and self._call is not None:
            self._call.cancel()
            self._call = None

    def _reorder(self) -> None:
        members = sorted(self._members.values(), key=lambda member: member[0])
        self._order = [beat for _, beat in members]

    def _schedule(self) -> None:
        due = self._start + (self._beats + 1) * self.interval
        self._call = self._clock.callLater(max(0.0, due - self._clock.seconds()), self._beat)

    def _beat(self) -> None:
        self._call = None
        elapsed = int((self._clock.seconds() - self._start) / self.interval + 1e-6)
        count = max(1, elapsed - self._beats)
        self._beats += count
        for beat in self._order:
            try:
                beat(count)
            except Exception:
                self.log.failure("{beat!r} failed", beat=beat)
        if self._members and self._call is None:
            self._schedule()


class PerTurn:
    """
    Calls C{func} on the items handed to it, at most C{per_turn} of them a
    reactor turn, the rest on the turns after: work that arrives in bursts
    (a thousand timeouts at once, two hundred slow clients overflowing
    together) is spread between other players' messages instead of
    stalling them.
    """

    def __init__(self, clock: IReactorTime, per_turn: int, func: Callable[[Any], None]) -> None:
        self._clock = clock
        self._per_turn = per_turn
        self._func = func
        self._waiting: deque[Any] = deque()
        self._call: IDelayedCall | None = None

    def add(self, item: Any) -> None:
        self._waiting.append(item)
        if self._call is None:
            self._call = self._clock.callLater(0, self.run_turn)

    def run_turn(self) -> None:
        """One turn's share of the work (the next turn's is scheduled)."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        waiting = self._waiting
        for _ in range(min(self._per_turn, len(waiting))):
            self._func(waiting.popleft())
        if waiting:
            self._call = self._clock.callLater(0, self.run_turn)
