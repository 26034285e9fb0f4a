"""RoomClock: the calls it tracks stay bounded, and cancel_all still cancels every one."""

from __future__ import annotations

from typing import Any

from twisted.internet.base import DelayedCall
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from gameframe._timers import RoomClock


class RoomClockTrackingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.room_clock = RoomClock(self.clock)
        self.fired: list[int] = []
        # How often the tracked calls are asked whether they are pending:
        # the work done by sweeps, counted rather than timed.
        self.checks = 0
        active = DelayedCall.active

        def counting_active(call: DelayedCall) -> bool:
            self.checks += 1
            return active(call)

        self.patch(DelayedCall, "active", counting_active)

    def tracked(self) -> int:
        return len(self.room_clock._calls)

    def test_cancelled_timers_do_not_pile_up(self) -> None:
        most = 0
        for n in range(5000):
            call = self.room_clock.callLater(1, self.fired.append, n)
            call.cancel()
            most = max(most, self.tracked())
        self.assertLessEqual(most, 65)
        self.assertLessEqual(self.checks, 2 * 5000)
        self.clock.advance(2)
        self.assertEqual(self.fired, [])

    def test_fired_timers_are_forgotten(self) -> None:
        for n in range(3000):
            self.room_clock.callLater(0.5, self.fired.append, n)
            self.clock.advance(1)
            self.assertLessEqual(self.tracked(), 1)
        self.assertEqual(self.fired, list(range(3000)))

    def test_many_pending_timers_cost_amortised_constant_work(self) -> None:
        # Thousands pending at once, every other one cancelled by its owner.
        calls = []
        for n in range(4000):
            call = self.room_clock.callLater(10, self.fired.append, n)
            calls.append(call)
            if n % 2:
                call.cancel()
            self.assertLessEqual(self.tracked(), max(64, 2 * (n // 2 + 1)) + 1)
        # Rebuilding the whole set on every call would ask millions of times.
        self.assertLessEqual(self.checks, 4 * 4000)
        pending = [call for call in calls if call.active()]
        self.assertEqual(len(pending), 2000)
        self.assertEqual(set(self.room_clock.getDelayedCalls()), set(pending))

        self.room_clock.cancel_all()
        self.assertEqual([call for call in calls if call.active()], [])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(20)
        self.assertEqual(self.fired, [])
        self.assertEqual(self.tracked(), 0)

    def test_cancel_all_cancels_timers_mixed_with_fired_and_cancelled_ones(self) -> None:
        calls: list[Any] = []
        for n in range(3000):
            calls.append(self.room_clock.callLater(n % 3, self.fired.append, n))
            if n % 5 == 0:
                calls[-1].cancel()
        self.clock.advance(1)  # the delay-0 and delay-1 ones run
        ran = set(self.fired)
        self.assertEqual(ran, {n for n in range(3000) if n % 3 < 2 and n % 5})
        self.room_clock.cancel_all()
        self.assertEqual([call for call in calls if call.active()], [])
        self.clock.advance(10)
        self.assertEqual(set(self.fired), ran)
        # The clock still works after cancel_all.
        self.room_clock.callLater(1, self.fired.append, -1)
        self.clock.advance(1)
        self.assertEqual(self.fired[-1], -1)
