"""The gameframe-loadtest command: options, checks, logging; run under Twisted's react(), which picks the reactor."""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import time
from typing import Any, Sequence

import orjson
from twisted.internet.defer import Deferred
from twisted.internet.task import react
from twisted.logger import ILogObserver, LogLevel, formatEventAsClassicLogText, globalLogBeginner
from twisted.python.failure import Failure
from zope.interface import implementer

from gameframe.client import ClientError
from gameframe.loadtest.player import PlayerLoadError, SimulatedPlayer, choose_player
from gameframe.loadtest.runner import Plan
from gameframe.loadtest.transport import Target

__all__ = ["main", "parse"]

#: Hard caps: a load tester should never surprise anyone.
MAX_PLAYERS = 100_000
MAX_PROCESSES = 64
MAX_DURATION = 24 * 3600.0

#: Exit statuses.
EXIT_CLEAN = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2

DESCRIPTION = """\
Load-test a gameframe server: connect N simulated players, spread evenly
over R rooms of one room type (the first player of each room creates it, the
others join it by id), let each act on a timer for a bounded time, and measure
what happens: connections, messages in and out per second, request round-trip
latency (p50/p99/max), and errors by code. A live display shows the run on
the terminal; a JSON summary is printed on stdout at the end.

Players connect over TCP (tcp://HOST:PORT, JSON Lines) or WebSocket
(ws://HOST:PORT/ws, the server's --web endpoint). Only this machine is a target
unless you pass --allow-remote: point it at a server you run.
"""

EPILOG = """\
examples:
  start a server with the demo rooms in another terminal:
    twistd -n gameframe

  50 players in 5 arena rooms for 30 s, each asking to move 10 times a second:
    gameframe-loadtest --room arena --players 50 --rooms 5 --duration 30

  the same over WebSocket, from 2 processes, summary to a file:
    gameframe-loadtest --url ws://127.0.0.1:8080/ws --players 200 --rooms 4 \\
        --processes 2 --json summary.json

  any room type: send an action of your choice as a request every second:
    gameframe-loadtest --room chat --action say --fields '{"text": "hi"}'

  your own player (a SimulatedPlayer subclass in mybots.py, in this directory):
    gameframe-loadtest --room mygame --player mybots:Walker

writing a player (see docs/loadtest.md):
    from gameframe.loadtest import SimulatedPlayer

    class Walker(SimulatedPlayer):
        interval = 0.1                      # seconds between act() calls
        def on_join(self, joined): ...      # seated: the server's joined reply
        def on_message(self, message): ...  # every message from the server
        def act(self):                      # the periodic action
            return self.request("move", x=self.random.uniform(0, 800),
                                y=self.random.uniform(0, 600))

  self.request() returns a Deferred of the reply and its round trip is
  measured; self.send() is fire-and-forget. self.state is the room state.
  self.record(name, seconds) keeps a measurement of your own (the summary's
  measures_ms: p50/p99/max per name).

exit status: 0 when every player connected and joined and nothing failed,
1 when something did (the summary says what), 2 for bad options.
"""


def _positive_int(limit: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if not 1 <= value <= limit:
            raise argparse.ArgumentTypeError(f"must be from 1 to {limit:,}")
        return value

    return parse


def _seconds(minimum: float, maximum: float = MAX_DURATION) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be from {minimum:g} to {maximum:g} seconds")
        return value

    return parse


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON: {e}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, like '{\"text\": \"hi\"}'")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gameframe-loadtest",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = p.add_argument_group("where")
    target.add_argument(
        "--url", default="tcp://127.0.0.1:7000", metavar="URL",
        help="the server: tcp://HOST:PORT (the server's --port) or ws://HOST:PORT/ws "
        "(its --web endpoint; wss:// for TLS). Default: %(default)s.",
    )
    target.add_argument(
        "--allow-remote", action="store_true",
        help="allow a host other than this machine (localhost, 127.x.x.x, ::1). "
        "Only load servers you are responsible for.",
    )
    load = p.add_argument_group("how much")
    load.add_argument(
        "--room", default="arena", metavar="TYPE",
        help="the room type to load, as the server names it. Default: %(default)s.",
    )
    load.add_argument(
        "--room-options", type=_json_object, default={}, metavar="JSON",
        help="options for creating each room, a JSON object. Default: {}.",
    )
    load.add_argument(
        "--players", type=_positive_int(MAX_PLAYERS), default=10, metavar="N",
        help=f"simulated players, one connection each (at most {MAX_PLAYERS:,}). "
        "Default: %(default)s.",
    )
    load.add_argument(
        "--rooms", type=_positive_int(MAX_PLAYERS), default=1, metavar="R",
        help="rooms to spread the players over, evenly (at most --players). Default: %(default)s.",
    )
    load.add_argument(
        "--duration", type=_seconds(0.1), default=30.0, metavar="SECONDS",
        help="length of the run, ramp included; then players leave and disconnect "
        "(at most 24 h). Default: %(default)g.",
    )
    load.add_argument(
        "--ramp", type=_seconds(0.0), default=None, metavar="SECONDS",
        help="connect the players evenly over this many seconds from the start "
        "(0: all at once). Default: a tenth of --duration, at most 10.",
    )
    load.add_argument(
        "--processes", type=_positive_int(MAX_PROCESSES), default=1, metavar="K",
        help="spread the players over K worker processes when one process cannot keep "
        f"up (watch its CPU); at most {MAX_PROCESSES}. Default: %(default)s.",
    )
    player = p.add_argument_group("what players do")
    player.add_argument(
        "--player", metavar="MODULE:CLASS",
        help="your SimulatedPlayer subclass: a module importable from here (mybots:Walker) "
        "or a file (path/to/bots.py:Walker). Default: the built-in player: for arena "
        "rooms it requests a move to a random point 10 times a second; for other room "
        "types it needs --action.",
    )
    player.add_argument(
        "--action", metavar="NAME",
        help="with no --player: send this room action as a request every --interval "
        "seconds (default 1 s), e.g. --room chat --action say.",
    )
    player.add_argument(
        "--fields", type=_json_object, default={}, metavar="JSON",
        help="the fields sent with --action, a JSON object, e.g. '{\"text\": \"hi\"}' "
        "(your player sees them as self.fields). Default: {}.",
    )
    player.add_argument(
        "--interval", type=_seconds(0.001), default=None, metavar="SECONDS",
        help="seconds between a player's actions, overriding the player class's "
        "interval (built-in: 0.1 for arena, 1 for --action).",
    )
    player.add_argument(
        "--seed", type=int, default=None, metavar="N",
        help="seed for the players' random numbers (self.random), to repeat a run. "
        "Default: a new one each run (it is in the summary).",
    )
    limits = p.add_argument_group("limits")
    limits.add_argument(
        "--connect-timeout", type=_seconds(0.1, 300), default=10.0, metavar="SECONDS",
        help="a player that is not connected and welcomed by then counts as failed. "
        "Default: %(default)g.",
    )
    limits.add_argument(
        "--request-timeout", type=_seconds(0.1, 300), default=10.0, metavar="SECONDS",
        help="a request not answered by then counts as a request_timeout error. "
        "Default: %(default)g.",
    )
    output = p.add_argument_group("output")
    output.add_argument(
        "--no-display", action="store_true",
        help="no live display (for CI and scripts). The display is also off when "
        "stderr is not a terminal.",
    )
    output.add_argument(
        "--json", metavar="FILE",
        help="write the JSON summary to FILE instead of stdout.",
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return p


def parse(
    argv: Sequence[str] | None = None,
) -> tuple[argparse.Namespace, Plan, type[SimulatedPlayer]]:
    """
    The options, the run's plan and the player class.

    @raise SystemExit: bad options (argparse's usage message, status 2).
    """
    p = parser()
    options = p.parse_args(argv)
    try:
        target = Target.parse(options.url)
    except ValueError as e:
        p.error(str(e))
    if not target.loopback and not options.allow_remote:
        p.error(
            f"--url targets {target.host}, not this machine: pass --allow-remote if "
            "you mean to load a remote server (only load servers you are responsible for)"
        )
    if options.rooms > options.players:
        p.error(f"--rooms {options.rooms} is more than --players {options.players}")
    if options.processes > options.players:
        p.error(f"--processes {options.processes} is more than --players {options.players}")
    if options.json and not os.path.isdir(os.path.dirname(os.path.abspath(options.json))):
        p.error(f"--json {options.json}: no such directory")
    ramp = options.ramp if options.ramp is not None else min(options.duration / 10, 10.0)
    if ramp >= options.duration:
        p.error(f"--ramp {ramp:g} must be shorter than --duration {options.duration:g}")
    try:
        player_class = choose_player(options.player, options.room, options.action)
    except PlayerLoadError as e:
        p.error(str(e))
    plan = Plan(
        url=options.url,
        room=options.room,
        players=options.players,
        rooms=options.rooms,
        duration=options.duration,
        ramp=ramp,
        room_options=options.room_options,
        player=options.player,
        action=options.action,
        fields=options.fields,
        interval=options.interval,
        connect_timeout=options.connect_timeout,
        request_timeout=options.request_timeout,
        seed=options.seed if options.seed is not None else secrets.randbelow(2**31),
        processes=options.processes,
    )
    return options, plan, player_class


def describe(plan: Plan, player_class: type[SimulatedPlayer]) -> dict[str, Any]:
    """What was asked, as the summary and the display show it."""
    return {
        "target": plan.url,
        "room": plan.room,
        "player": plan.player or f"{player_class.__module__}:{player_class.__qualname__}",
        "players": plan.players,
        "rooms": plan.rooms,
        "processes": plan.processes,
        "planned_duration": plan.duration,
        "ramp": plan.ramp,
        "interval": plan.interval,
        "seed": plan.seed,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# -- process set-up -------------------------------------------------------------------


@implementer(ILogObserver)
class _StderrLog:
    """
    Warnings and errors to stderr (looked up at each write: the live
    display swaps it), less the "Unhandled error in Deferred" of a request
    whose error reply the player did not look at: it is counted already.
    Twisted logs those as two events in a row, held here to see both.
    """

    def __init__(self) -> None:
        self._held: dict[str, Any] | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        held, self._held = self._held, None
        if held is not None:
            failure = event.get("log_failure")
            if failure is not None and failure.check(ClientError):
                return
            self._write(held)
        if event.get("log_level", LogLevel.info) < LogLevel.warn:
            return
        if str(event.get("log_format", "")).startswith("Unhandled error in Deferred"):
            self._held = event
            return
        self._write(event)

    @staticmethod
    def _write(event: dict[str, Any]) -> None:
        text = formatEventAsClassicLogText(event)
        if text:
            sys.stderr.write(text)
            sys.stderr.flush()


def _raise_file_limit(connections: int) -> None:
    """One file descriptor per player: raise the soft limit toward the hard one if needed."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        except (ValueError, OSError):
            pass


def _run_worker(reactor: Any) -> Deferred[None]:
    """A worker: the plan comes on stdin, reports go to stdout (JSON lines)."""
    from twisted.internet.stdio import StandardIO

    from gameframe.loadtest.control import make_runner
    from gameframe.loadtest.player import choose_player as choose
    from gameframe.loadtest.workers import Worker

    # The pipe to the parent is a copy of stdout; whatever player code
    # prints goes to stderr instead of into the pipe.
    pipe = os.dup(1)
    os.dup2(2, 1)

    def runner(plan: Plan, process: int, directory: Any) -> Any:
        player_class = choose(plan.player, plan.room, plan.action)
        _raise_file_limit(len(plan.indices(process)))
        return make_runner(reactor, plan, process, player_class, directory=directory)

    worker = Worker(reactor, runner)

    def started() -> None:
        # Ctrl-C reaches the whole process group: the parent decides.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        StandardIO(worker, stdin=0, stdout=pipe, reactor=reactor)  # type: ignore[call-arg]

    reactor.callWhenRunning(started)
    return worker.finished.addBoth(lambda _: None)  # exit status 0


def main(argv: Sequence[str] | None = None) -> None:
    """The C{gameframe-loadtest} command (also C{python -m gameframe.loadtest})."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    worker = arguments == ["--worker"]
    if not worker:
        options, plan, player_class = parse(arguments)
    globalLogBeginner.beginLoggingTo([_StderrLog()], redirectStandardIO=False)
    # react() picks the reactor, runs it, and exits with the status the
    # Deferred ends with (a SystemExit carries ours).
    if worker:
        react(_run_worker)
    react(lambda reactor: _run(reactor, options, plan, player_class))


def _run(
    reactor: Any, options: Any, plan: Plan, player_class: type[SimulatedPlayer]
) -> Deferred[None]:
    from gameframe.loadtest.control import LoadTest
    from gameframe.loadtest.display import Dashboard

    if plan.processes == 1:
        _raise_file_limit(plan.players)
    run = describe(plan, player_class)
    display = None
    if not options.no_display and sys.stderr.isatty():
        display = Dashboard({**run, "target": plan.url, "duration": plan.duration})
    test = LoadTest(reactor, plan, player_class, run, display)
    done: Deferred[None] = Deferred()

    def end(status: int) -> None:
        if not done.called:
            done.errback(Failure(SystemExit(status)))

    def finished(summary: dict[str, Any]) -> None:
        end(_report(options, summary))

    def failed(failure: Failure) -> None:
        failure.printTraceback(file=sys.stderr)
        end(EXIT_PROBLEMS)

    def interrupt(signum: int, frame: Any) -> None:
        if test.interrupted:
            reactor.callFromThread(end, EXIT_PROBLEMS)  # a second Ctrl-C: now
        else:
            reactor.callFromThread(test.stop)

    def started() -> None:
        signal.signal(signal.SIGINT, interrupt)
        test.run().addCallbacks(finished, failed)

    reactor.callWhenRunning(started)
    return done


def _report(options: Any, summary: dict[str, Any]) -> int:
    """Write the JSON summary; the exit status it calls for."""
    from gameframe.loadtest.control import clean

    text = orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n"
    if options.json:
        with open(options.json, "wb") as f:
            f.write(text)
    else:
        sys.stdout.buffer.write(text)
        sys.stdout.flush()
    return EXIT_CLEAN if clean(summary) else EXIT_PROBLEMS
