"""One load test from start to summary: runs the players here or in workers, drives the display, bounds the time."""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from gameframe.loadtest.display import Dashboard
from gameframe.loadtest.player import SimulatedPlayer
from gameframe.loadtest.runner import STOP_GRACE, Plan, Runner
from gameframe.loadtest.stats import Stats, summarize
from gameframe.loadtest.transport import Target, connector
from gameframe.loadtest.workers import WorkerPool

__all__ = ["LoadTest"]

#: Seconds between display redraws.
REDRAW_INTERVAL = 0.5
#: Slack past the longest a run can take before it is cut off, whatever happens.
OVERDUE_SLACK = 10.0


def make_runner(
    reactor: Any, plan: Plan, process: int, player_class: type[SimulatedPlayer], **kwargs: Any
) -> Runner:
    """A Runner for one process's share of C{plan}, connecting to its URL."""
    connect = connector(
        reactor, Target.parse(plan.url), plan.connect_timeout, mirror=player_class.mirror_state
    )
    return Runner(
        reactor, plan, connect=connect, player_class=player_class, process=process, **kwargs
    )


class LoadTest:
    """
    Runs C{plan}: in this process when C{plan.processes} is 1, else in
    that many worker processes whose stats it merges. Redraws the
    C{dashboard} (if any) every L{REDRAW_INTERVAL} seconds, and ends the
    run by itself: the plan's duration, a grace time for players to leave,
    and a hard cut-off past that.

    @param describe: what was asked, copied into the summary and display.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        plan: Plan,
        player_class: type[SimulatedPlayer],
        describe: dict[str, Any],
        dashboard: Dashboard | None = None,
    ) -> None:
        self._reactor = reactor
        self.plan = plan
        self._player_class = player_class
        self._describe = describe
        self._dashboard = dashboard
        self._runner: Runner | None = None
        self._pool: WorkerPool | None = None
        self._parts: Callable[[], list[Stats]] = list
        self._redraw: LoopingCall | None = None
        self._overdue: IDelayedCall | None = None
        self._result: Deferred[dict[str, Any]] = Deferred()
        self.interrupted = False

    def run(self) -> Deferred[dict[str, Any]]:
        """Start: a Deferred of the JSON summary once the run is over."""
        plan = self.plan
        if plan.processes == 1:
            runner = self._runner = make_runner(self._reactor, plan, 0, self._player_class)
            self._parts = lambda: [runner.snapshot()]
            runner.start().addCallback(lambda stats: self._finish([stats], True))
        else:
            pool = self._pool = WorkerPool(self._reactor, plan)
            self._parts = lambda: list(pool.latest)
            pool.start().addCallback(lambda parts: self._finish(parts, pool.complete))
        limit = plan.duration + plan.connect_timeout + STOP_GRACE + OVERDUE_SLACK
        self._overdue = self._reactor.callLater(limit, self._cut_off)
        if self._dashboard is not None:
            self._dashboard.start()
            redraw = self._redraw = LoopingCall(self._draw)
            redraw.clock = self._reactor
            redraw.start(REDRAW_INTERVAL, now=True)
        return self._result

    def stop(self) -> None:
        """End the run early (Ctrl-C): players leave and close, then the summary."""
        self.interrupted = True
        if self._runner is not None:
            self._runner.stop()
        if self._pool is not None:
            self._pool.stop()

    def _draw(self) -> None:
        if self._dashboard is not None:
            parts = self._parts()
            self._dashboard.update(Stats.merged(parts), parts)

    def _cut_off(self) -> None:
        """Far past the end and still not finished: give up on the stragglers."""
        self._overdue = None
        self.log.warn("the run did not end in time; cutting it off")
        if self._pool is not None:
            self._pool.kill()
        self._finish(self._parts(), False)

    def _finish(self, parts: list[Stats], complete: bool) -> None:
        if self._result.called:
            return
        if self._overdue is not None and self._overdue.active():
            self._overdue.cancel()
        if self._redraw is not None and self._redraw.running:
            self._redraw.stop()
        total = Stats.merged(parts)
        if self._dashboard is not None:
            self._dashboard.stop(total, parts)
        describe = dict(self._describe)
        describe["interrupted"] = self.interrupted
        if self._pool is not None:
            describe["lost_processes"] = self._pool.lost()
        self._result.callback(
            summarize(total, parts, describe, complete and not self.interrupted)
        )


def clean(summary: dict[str, Any]) -> bool:
    """Whether a run went without a problem: everyone connected and joined, no errors."""
    connections = summary["connections"]
    return bool(
        connections["joined"] == connections["players"]
        and not connections["failed"]
        and not connections["disconnected"]
        and not summary["errors"]
        and not summary.get("lost_processes")
    )
