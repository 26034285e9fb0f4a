"""Several processes: the parent spawns workers and talks JSON lines with them over pipes; a worker runs its share."""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

import orjson
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHalfCloseableProtocol, IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from gameframe.loadtest.runner import Plan, Runner
from gameframe.loadtest.session import RoomDirectory
from gameframe.loadtest.stats import Stats

__all__ = ["WorkerPool", "Worker"]

#: Seconds between a worker's stats reports.
REPORT_INTERVAL = 0.5
# A report carries a histogram; lines stay far below this.
_MAX_LINE = 16 * 1024 * 1024

log = Logger()


def _line(message: dict[str, Any]) -> bytes:
    return orjson.dumps(message) + b"\n"


def _write_stderr(data: bytes) -> None:
    # Looked up at each write: the live display swaps sys.stderr while it runs.
    sys.stderr.write(data.decode(errors="replace"))
    sys.stderr.flush()


# -- the parent's side ------------------------------------------------------------------


class _WorkerProcess(ProcessProtocol):
    """The parent's end of one worker: sends it the plan, reads its reports."""

    def __init__(self, pool: WorkerPool, number: int) -> None:
        self._pool = pool
        self.number = number
        self._partial = b""
        self.done = False
        self.ended: Deferred[None] = Deferred()
        self.exit_code: int | None = None

    def connectionMade(self) -> None:
        self.send({"plan": self._pool.plan.to_json(), "process": self.number})

    def send(self, message: dict[str, Any]) -> None:
        if self.transport is not None and self.exit_code is None:
            self.transport.write(_line(message))

    def outReceived(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > _MAX_LINE:
            log.error("worker {number} sent a line too long; stopping it", number=self.number)
            self.kill()
            return
        for line in lines:
            if line:
                self._pool._received(self, orjson.loads(line))

    def errReceived(self, data: bytes) -> None:
        _write_stderr(data)

    def kill(self) -> None:
        if self.exit_code is None and self.transport is not None:
            try:
                self.transport.signalProcess("KILL")
            except Exception:
                pass  # it has exited already

    def processEnded(self, reason: Failure) -> None:
        code = getattr(reason.value, "exitCode", None)
        self.exit_code = -1 if code is None else code
        self.ended.callback(None)


class WorkerPool:
    """
    Runs a plan over C{plan.processes} worker processes (this same program
    with C{--worker}): each gets the plan and its number on stdin, reports
    its stats as JSON lines on stdout, and announces the rooms it created,
    which this pool passes on to the others (their players join them).

    @ivar latest: each worker's latest stats.
    """

    def __init__(
        self,
        reactor: IReactorProcess,
        plan: Plan,
        command: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self._reactor = reactor
        self.plan = plan
        self._command = command or [sys.executable, "-m", "gameframe.loadtest", "--worker"]
        self._env = dict(os.environ if env is None else env)
        self.latest = [Stats(players=len(plan.indices(n))) for n in range(plan.processes)]
        self._workers: list[_WorkerProcess] = []

    def start(self) -> Deferred[list[Stats]]:
        """Spawn the workers: a Deferred of their final stats, once all have exited."""
        for number in range(self.plan.processes):
            worker = _WorkerProcess(self, number)
            self._workers.append(worker)
            self._reactor.spawnProcess(
                worker,
                self._command[0],
                self._command,
                env=self._env,
                path=os.getcwd(),
                childFDs={0: "w", 1: "r", 2: "r"},
            )
        ended = [worker.ended for worker in self._workers]
        all_ended: Deferred[list[Stats]] = Deferred()

        def check(_: object) -> None:
            if all(d.called for d in ended) and not all_ended.called:
                all_ended.callback(self.latest)

        for d in ended:
            d.addCallback(check)
        return all_ended

    @property
    def complete(self) -> bool:
        """Every worker finished its run and reported."""
        return all(worker.done for worker in self._workers)

    def lost(self) -> list[int]:
        """The workers that exited without finishing."""
        return [w.number for w in self._workers if w.exit_code is not None and not w.done]

    def stop(self) -> None:
        """Ask every worker to end its run now (each then stops its players in order)."""
        for worker in self._workers:
            worker.send({"stop": True})

    def kill(self) -> None:
        for worker in self._workers:
            worker.kill()

    def _received(self, worker: _WorkerProcess, message: dict[str, Any]) -> None:
        if "stats" in message:
            self.latest[worker.number] = Stats.from_json(message["stats"])
        if "room" in message:
            for other in self._workers:
                if other is not worker:
                    other.send(message)
        if message.get("done"):
            worker.done = True


# -- a worker's side --------------------------------------------------------------------


@implementer(IHalfCloseableProtocol)
class Worker(LineOnlyReceiver):
    """
    A worker process's end of the pipes (on stdin/stdout): waits for the
    plan, runs its share with a L{Runner} made by C{make_runner}, reports
    stats every L{REPORT_INTERVAL} seconds, passes room ids both ways, and
    stops its run when told to or when the parent goes away.

    @ivar finished: fires once the run is over and the final report sent.
    """

    delimiter = b"\n"
    MAX_LENGTH = _MAX_LINE

    def __init__(
        self,
        reactor: IReactorTime,
        make_runner: Callable[[Plan, int, RoomDirectory], Runner],
    ) -> None:
        self._reactor = reactor
        self._make_runner = make_runner
        self._runner: Runner | None = None
        self._reporter: LoopingCall | None = None
        self.finished: Deferred[None] = Deferred()

    def lineReceived(self, line: bytes) -> None:
        message = orjson.loads(line)
        if "plan" in message:
            self._start(Plan.from_json(message["plan"]), int(message["process"]))
        elif "room" in message and self._runner is not None:
            self._runner.directory.learn(
                message["room"], message.get("room_id"), message.get("code")
            )
        elif message.get("stop") and self._runner is not None:
            self._runner.stop()

    def _start(self, plan: Plan, process: int) -> None:
        directory = RoomDirectory(announce=self._announce)
        runner = self._runner = self._make_runner(plan, process, directory)
        reporter = self._reporter = LoopingCall(self._report)
        reporter.clock = self._reactor
        runner.start().addBoth(self._done)
        reporter.start(REPORT_INTERVAL, now=False)

    def _announce(self, number: int, room_id: str | None, code: str | None) -> None:
        self._send({"room": number, "room_id": room_id, "code": code})

    def _report(self) -> None:
        if self._runner is not None:
            self._send({"stats": self._runner.snapshot().to_json()})

    def _send(self, message: dict[str, Any]) -> None:
        if self.transport is not None:
            self.transport.write(_line(message))

    def _done(self, result: Stats | Failure) -> None:
        if self._reporter is not None and self._reporter.running:
            self._reporter.stop()
        if isinstance(result, Failure):
            log.failure("the run failed", result)
        elif self._runner is not None:
            self._send({"stats": result.to_json(), "done": True})
        if self.transport is not None:
            self.transport.loseConnection()  # flushes the report first

    def readConnectionLost(self) -> None:
        """The parent closed our stdin (it went away): end the run."""
        if self._runner is not None:
            self._runner.stop()
        elif self.transport is not None:
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        if self._runner is not None:
            self._runner.stop()

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        self._finish()

    def _finish(self) -> None:
        if not self.finished.called:
            self.finished.callback(None)
