"""
gameframe-loadtest: its stats, plan, player loading and runner on a fake
clock, and the real command against a real server over TCP, WebSocket and
from two processes.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import pytest
from rich.console import Console
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel
from twisted.python.failure import Failure

from gameframe.client import ClientError
from gameframe.loadtest import SimulatedPlayer, main
from gameframe.loadtest.cli import _StderrLog, parse
from gameframe.loadtest.player import (
    ActionPlayer,
    ArenaWalker,
    PlayerLoadError,
    choose_player,
    load_player,
)
from gameframe.loadtest.runner import Plan, Runner, make_player
from gameframe.loadtest.session import PlayerSession, RoomDirectory
from gameframe.loadtest.display import Dashboard
from gameframe.loadtest.stats import MAX_MEASURES, MAX_VALUE, Histogram, Stats, summarize
from gameframe.loadtest.transport import Target, is_loopback
from gameframe.txclient import GameClientProtocol
from tests._server import RunningServer, free_port

RUN_TIMEOUT = 60.0  # a whole 3-second run, start-up and shutdown included
HTTP_TIMEOUT = 2.0


# -- stats ---------------------------------------------------------------------------


def test_histogram_percentiles_are_within_one_percent() -> None:
    histogram = Histogram()
    for value in range(1, 10_001):
        histogram.record(value)
    assert histogram.count == 10_000
    for percent, exact in [(50, 5000), (90, 9000), (99, 9900), (99.9, 9990)]:
        found = histogram.percentile(percent)
        assert found is not None
        assert abs(found - exact) <= exact / 100, (percent, found)
    assert histogram.percentile(100) == 10_000
    assert histogram.percentile(0) == 1
    assert (histogram.min, histogram.max) == (1, 10_000)


def test_histogram_small_values_are_exact_and_empty_has_none() -> None:
    histogram = Histogram()
    assert histogram.percentile(50) is None
    assert histogram.summary_ms()["p99"] is None
    for value in [3, 3, 3, 7]:
        histogram.record(value)
    assert histogram.percentile(50) == 3
    assert histogram.percentile(99) == 7


def test_histogram_memory_is_bounded() -> None:
    histogram = Histogram()
    value = 1
    while value < MAX_VALUE * 4:
        for step in range(200):
            histogram.record(value + step * (value // 200 + 1))
        value *= 2
    histogram.record(10**15)  # clamped
    assert histogram.max == MAX_VALUE
    assert len(histogram.counts) < 4096


def test_histograms_merge_and_travel_as_json() -> None:
    whole, low, high = Histogram(), Histogram(), Histogram()
    for value in range(1, 5001):
        whole.record(value)
        (low if value <= 2500 else high).record(value)
    merged = Histogram.from_json(json.loads(json.dumps(low.to_json())))
    merged.merge(Histogram.from_json(json.loads(json.dumps(high.to_json()))))
    assert merged.counts == whole.counts
    assert merged.percentile(99) == whole.percentile(99)
    assert (merged.count, merged.min, merged.max, merged.total) == (
        whole.count, whole.min, whole.max, whole.total,
    )


def test_stats_merge_and_summary() -> None:
    one, two = Stats(players=3), Stats(players=2)
    one.connected = one.joined = 3
    two.connected = two.joined = 2
    one.requests = one.replies = 10
    two.requests, two.replies, two.timeouts = 5, 4, 1
    one.messages_in, two.messages_in = 100, 50
    one.latency.record_seconds(0.002)
    two.latency.record_seconds(0.004)
    two.error("room_full")
    two.error("request_timeout")
    one.elapsed, two.elapsed = 2.0, 3.0
    parts = [Stats.from_json(json.loads(json.dumps(s.to_json()))) for s in (one, two)]
    total = Stats.merged(parts)
    summary = summarize(total, parts, {"room": "arena"}, complete=True)
    assert summary["room"] == "arena"
    assert summary["connections"]["players"] == 5
    assert summary["connections"]["joined"] == 5
    assert summary["requests"]["sent"] == 15
    assert summary["requests"]["answered"] == 14
    assert summary["requests"]["timeouts"] == 1
    assert summary["messages"]["in_per_second"] == 50.0
    assert summary["latency_ms"]["count"] == 2
    assert summary["latency_ms"]["max"] == 4.0
    assert summary["errors"] == {"request_timeout": 1, "room_full": 1}
    assert [p["players"] for p in summary["per_process"]] == [3, 2]
    assert summary["duration"] == 3.0


def test_players_own_measurements_merge_over_processes_and_are_summarized() -> None:
    """What players record under a name is one histogram per name, over every process."""
    one, two = Stats(players=1), Stats(players=1)
    for ms in range(1, 101):
        (one if ms % 2 else two).measure("patch_delay").record_seconds(ms / 1000)  # type: ignore[union-attr]
    two.measure("game_length").record_seconds(90)  # type: ignore[union-attr]
    one.elapsed = two.elapsed = 1.0
    parts = [Stats.from_json(json.loads(json.dumps(s.to_json()))) for s in (one, two)]
    summary = summarize(Stats.merged(parts), parts, {}, complete=True)
    delay = summary["measures_ms"]["patch_delay"]
    assert delay["count"] == 100
    assert (delay["min"], delay["max"]) == (1.0, 100.0)
    assert abs(delay["p50"] - 50) <= 0.5 and abs(delay["p99"] - 99) <= 1
    assert summary["measures_ms"]["game_length"]["max"] == 90_000.0
    assert summary["measures_dropped"] == 0
    assert [p["measures_p99_ms"].get("game_length") for p in summary["per_process"]] == [None, 90_000.0]


def test_measurement_names_are_bounded() -> None:
    stats = Stats()
    for n in range(MAX_MEASURES + 5):
        histogram = stats.measure(f"m{n}")
        if histogram is None:
            stats.measures_dropped += 1
        else:
            histogram.record(1)
    assert len(stats.measures) == MAX_MEASURES and stats.measures_dropped == 5
    other = Stats()
    other.measure("one more").record(1)  # type: ignore[union-attr]
    merged = Stats.merged([stats, other])
    assert len(merged.measures) == MAX_MEASURES and merged.measures_dropped == 6


def test_the_display_shows_the_players_measurements() -> None:
    stats = Stats(players=1)
    stats.measure("patch_delay").record_seconds(0.012)  # type: ignore[union-attr]
    console = Console(record=True, width=120, file=io.StringIO())
    console.print(Dashboard({"players": 1, "duration": 10}, console).render(stats, [stats]))
    text = console.export_text()
    assert "patch_delay" in text and "p99 12.0 ms" in text and "(1 values)" in text


def test_error_codes_are_bounded() -> None:
    stats = Stats()
    for n in range(1000):
        stats.error(f"code{n}")
    assert len(stats.errors) <= 65
    assert sum(stats.errors.values()) == 1000


# -- the plan --------------------------------------------------------------------------


def test_plan_spreads_players_evenly_and_each_room_has_one_creator() -> None:
    plan = Plan(url="tcp://127.0.0.1:7000", room="arena", players=23, rooms=3,
                duration=3, ramp=1, processes=2)
    sizes = Counter(plan.room_of(i) for i in range(23))
    assert sorted(sizes.values()) == [7, 8, 8]
    creators = [i for i in range(23) if plan.creates_room(i)]
    assert sorted(plan.room_of(i) for i in creators) == [0, 1, 2]
    assert all(plan.room_of(c) != plan.room_of(c - 1) for c in creators if c)
    shares = [list(plan.indices(k)) for k in range(2)]
    assert sorted(shares[0] + shares[1]) == list(range(23))
    assert plan.start_delay(0) == 0 and plan.start_delay(22) < plan.ramp
    assert Plan.from_json(json.loads(json.dumps(plan.to_json()))) == plan


def test_room_directory_hands_out_ids_and_failures() -> None:
    announced: list[tuple[int, str | None, str | None]] = []
    directory = RoomDirectory(announce=lambda *a: announced.append(a))
    early = directory.wait(0)
    directory.created(0, "room-a")
    assert early.result == "room-a"
    assert directory.wait(0).result == "room-a"
    directory.creation_failed(1, "creator_failed")
    failure = directory.wait(1)
    errors: list[ClientError] = []
    failure.addErrback(lambda f: errors.append(f.value))
    assert errors[0].code == "room_not_created"
    directory.learn(2, "room-c", None)  # from another process: not announced again
    assert directory.wait(2).result == "room-c"
    assert announced == [(0, "room-a", None), (1, None, "creator_failed")]


# -- the runner on a fake clock ------------------------------------------------------------


def _runner(clock: Clock, connect: Any, players: int = 4, duration: float = 10) -> Runner:
    plan = Plan(url="tcp://127.0.0.1:7000", room="arena", players=players, rooms=2,
                duration=duration, ramp=2, connect_timeout=5)
    return Runner(clock, plan, connect=connect, player_class=ArenaWalker)


def test_runner_ramps_up_and_stops_by_itself_even_if_nothing_answers() -> None:
    clock = Clock()
    attempts: list[Deferred[GameClientProtocol]] = []

    def connect() -> Deferred[GameClientProtocol]:
        attempt: Deferred[GameClientProtocol] = Deferred()
        attempts.append(attempt)
        return attempt

    runner = _runner(clock, connect, players=4, duration=3)
    done = runner.start()
    clock.advance(0)
    assert len(attempts) == 1
    clock.advance(1.5)  # players at 0, 0.5, 1 and 1.5 s
    assert len(attempts) == 4
    assert runner.stats.connecting == 4
    clock.advance(1.5)  # the duration: pending connections are abandoned
    stats = done.result
    assert stats.connecting == 0
    assert stats.failed == 0  # abandoned at the end is not a failure
    assert stats.elapsed == 3


def test_runner_ends_early_when_no_player_can_connect() -> None:
    clock = Clock()
    runner = _runner(clock, lambda: fail(ConnectionRefusedError()), players=4, duration=60)
    done = runner.start()
    clock.advance(2)  # the last player tries at 1.5 s
    clock.advance(0)
    stats = done.result
    assert stats.failed == 4
    assert stats.errors == {"connect_failed": 4}
    assert stats.elapsed == 2


class _FakeServer:
    """The far end of one GameClientProtocol on a StringTransport: read what it sent, answer."""

    def __init__(self) -> None:
        self.transport = StringTransport()
        self.client = GameClientProtocol()
        self.client.makeConnection(self.transport)
        self.say({"action": "welcome", "player_id": "p0"})

    def say(self, message: dict[str, Any]) -> None:
        self.client.dataReceived(json.dumps(message).encode() + b"\n")

    def heard(self) -> list[dict[str, Any]]:
        lines = self.transport.value().splitlines()
        self.transport.clear()
        return [json.loads(line) for line in lines]


def test_a_session_joins_acts_measures_counts_and_leaves() -> None:
    clock = Clock()
    server = _FakeServer()
    stats, directory = Stats(), RoomDirectory()
    plan = Plan(url="tcp://127.0.0.1:7000", room="arena", players=2, rooms=1,
                duration=10, ramp=0, request_timeout=5)
    session = PlayerSession(
        clock, make_player(ArenaWalker, plan, 0, clock), connect=lambda: succeed(server.client),
        directory=directory, stats=stats, room_type="arena", room_options={"hold": 0},
        creator=True, connect_timeout=5, request_timeout=5,
    )
    session.start()
    [create] = server.heard()
    assert create == {"action": "create", "id": 1, "room": "arena", "options": {"hold": 0}}
    clock.advance(0.002)
    server.say({"action": "joined", "id": 1, "room": "arena", "room_id": "r1",
                "player_id": "p0", "players": ["p0"], "token": "t"})
    assert directory.wait(0).result == "r1"
    assert (stats.connected, stats.joined, stats.in_room_now) == (1, 1, 1)
    assert stats.join_latency.max == 2000  # µs

    session.player.record("own", 0.25)
    assert stats.measures["own"].max == 250_000  # µs
    with pytest.raises(ValueError):
        session.player.record("", 1)

    clock.advance(0.1)  # the first move, somewhere in the first interval
    [move] = server.heard()
    assert move["action"] == "move" and move["id"] == 2 and 0 <= move["x"] <= 800
    clock.advance(0.003)
    server.say({"action": "result", "id": 2, "result": None})
    assert stats.replies == 1 and stats.latency.max == 3000

    clock.advance(0.1)
    [refused] = server.heard()
    server.say({"action": "error", "id": refused["id"], "code": "bad_arguments", "message": "no"})
    assert stats.request_errors == 1 and stats.errors == {"bad_arguments": 1}

    clock.advance(0.1)
    [unanswered] = server.heard()
    clock.advance(5)  # nobody answers it
    assert stats.timeouts == 1 and stats.errors["request_timeout"] == 1
    server.heard()

    closed = session.stop()
    assert server.heard() == [{"action": "leave"}]
    assert server.transport.disconnecting
    server.client.connectionLost()
    assert closed.called
    assert (stats.connected_now, stats.in_room_now, stats.disconnected) == (0, 0, 0)
    # The move sent as the clock jumped 5 s was in flight when the connection closed.
    assert (stats.requests, stats.unanswered, stats.pending) == (4, 1, 0)
    assert stats.messages_out == 1 + stats.requests + 1  # create, the requests, leave


def test_a_session_dropped_by_the_server_counts_the_code() -> None:
    clock = Clock()
    server = _FakeServer()
    stats, directory = Stats(), RoomDirectory()
    directory.created(0, "r1")
    plan = Plan(url="tcp://127.0.0.1:7000", room="arena", players=2, rooms=1,
                duration=10, ramp=0)
    codes: list[str] = []
    player = make_player(ArenaWalker, plan, 1, clock)
    player.on_disconnect = codes.append  # type: ignore[method-assign]
    session = PlayerSession(
        clock, player, connect=lambda: succeed(server.client), directory=directory,
        stats=stats, room_type="arena", room_options={}, creator=False,
        connect_timeout=5, request_timeout=5,
    )
    session.start()
    [join] = server.heard()
    assert join == {"action": "join", "id": 1, "room_id": "r1", "options": {}}
    server.say({"action": "joined", "id": 1, "room": "arena", "room_id": "r1",
                "player_id": "p0", "players": ["p0"], "token": "t"})
    server.say({"action": "disconnect", "code": "server_shutdown", "message": "bye"})
    server.client.connectionLost()
    assert stats.disconnects == {"server_shutdown": 1} and codes == ["server_shutdown"]
    assert (stats.connected_now, stats.in_room_now) == (0, 0)
    clock.advance(1)
    assert server.heard() == []  # no more moves once disconnected


# -- players -------------------------------------------------------------------------


BOT = '''
from gameframe.loadtest import SimulatedPlayer

class Walker(SimulatedPlayer):
    interval = 0.2

    def act(self):
        return self.request("move", x=1, y=2)

class NotAPlayer:
    pass
'''


@pytest.fixture
def bot_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    name = f"loadtest_bot_{os.getpid()}"
    path = tmp_path / f"{name}.py"
    path.write_text(BOT)
    monkeypatch.chdir(tmp_path)
    yield path
    sys.modules.pop(name, None)
    sys.path[:] = [p for p in sys.path if p != str(tmp_path)]


def test_load_player_from_module_and_file(bot_module: Path) -> None:
    name = bot_module.stem
    walker = load_player(f"{name}:Walker")
    assert issubclass(walker, SimulatedPlayer) and walker.interval == 0.2
    assert load_player(f"{bot_module}:Walker") is walker


def test_load_player_refuses_what_is_not_a_player(bot_module: Path) -> None:
    name = bot_module.stem
    for spec, words in [
        (f"{name}:NotAPlayer", "is not a gameframe.loadtest.SimulatedPlayer"),
        (f"{name}:Missing", "is not a gameframe.loadtest.SimulatedPlayer"),
        ("no_such_module_here:Walker", "cannot import"),
        ("Walker", "wants module:Class"),
    ]:
        with pytest.raises(PlayerLoadError, match=words):
            load_player(spec)


def test_choose_player_defaults() -> None:
    assert choose_player(None, "arena", None) is ArenaWalker
    assert choose_player(None, "chat", "say") is ActionPlayer
    with pytest.raises(PlayerLoadError, match="--action"):
        choose_player(None, "chat", None)


# -- options -----------------------------------------------------------------------------


def test_targets_and_loopback() -> None:
    assert Target.parse("tcp://127.0.0.1:7000").port == 7000
    ws = Target.parse("ws://localhost:8080/ws")
    assert (ws.scheme, ws.host, ws.port, ws.loopback) == ("ws", "localhost", 8080, True)
    assert Target.parse("wss://example.com/ws").port == 443
    assert is_loopback("::1") and is_loopback("127.3.4.5")
    assert not is_loopback("10.0.0.1") and not is_loopback("example.com")
    for bad in ["http://127.0.0.1:80", "tcp://127.0.0.1", "127.0.0.1:7000", "tcp://:7000"]:
        with pytest.raises(ValueError):
            Target.parse(bad)


def test_a_remote_host_needs_allow_remote(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(["--url", "tcp://10.1.2.3:7000"])
    assert exited.value.code == 2
    assert "--allow-remote" in capsys.readouterr().err
    _, plan, _ = parse(["--url", "tcp://10.1.2.3:7000", "--allow-remote"])
    assert plan.url == "tcp://10.1.2.3:7000"


@pytest.mark.parametrize(
    "arguments",
    [
        ["--players", "0"],
        ["--players", "100001"],
        ["--processes", "65"],
        ["--duration", "100000"],
        ["--rooms", "5", "--players", "4"],
        ["--duration", "2", "--ramp", "2"],
        ["--fields", "[1]"],
        ["--room", "chat"],  # no built-in player for chat, and no --action
        ["--json", "/no/such/directory/out.json"],
        ["--url", "tcp://127.0.0.1:7000/ws"],
        ["--player", "nosuchmodule:Walker"],
    ],
)
def test_bad_options_are_refused(arguments: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(arguments)
    assert exited.value.code == 2


def test_options_make_the_plan() -> None:
    _, plan, player = parse(
        ["--players", "20", "--rooms", "2", "--duration", "3", "--ramp", "0.5",
         "--room", "chat", "--action", "say", "--fields", '{"text": "hi"}', "--seed", "7"]
    )
    assert (plan.players, plan.rooms, plan.duration, plan.ramp) == (20, 2, 3.0, 0.5)
    assert (plan.room, plan.action, plan.fields, plan.seed) == ("chat", "say", {"text": "hi"}, 7)
    assert player is ActionPlayer
    _, default, _ = parse(["--duration", "30"])
    assert default.ramp == 3.0 and default.url == "tcp://127.0.0.1:7000"


def test_help_is_enough_to_start(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "gameframe-loadtest --room arena --players 50 --rooms 5" in text
    for option in ["--url", "--allow-remote", "--room", "--room-options", "--players",
                   "--rooms", "--duration", "--ramp", "--processes", "--player", "--action",
                   "--fields", "--interval", "--seed", "--connect-timeout",
                   "--request-timeout", "--no-display", "--json"]:
        assert f"  {option} " in text, option
    assert "class Walker(SimulatedPlayer)" in text
    assert "--worker" not in text


def test_unlooked_at_request_errors_are_not_logged(capsys: pytest.CaptureFixture[str]) -> None:
    observer = _StderrLog()

    def event(level: LogLevel, text: str, error: Exception | None = None) -> dict[str, Any]:
        made: dict[str, Any] = {"log_level": level, "log_format": text, "log_time": 0.0,
                                "log_namespace": "test", "log_system": "-"}
        if error is not None:
            try:
                raise error
            except Exception:
                made["log_failure"] = Failure()
        return made

    unhandled = "Unhandled error in Deferred:"
    observer(event(LogLevel.critical, unhandled))
    observer(event(LogLevel.critical, "", ClientError("room_full", "full")))
    observer(event(LogLevel.info, "chatter"))
    assert capsys.readouterr().err == ""
    observer(event(LogLevel.critical, unhandled))
    observer(event(LogLevel.critical, "", ValueError("a real bug")))
    observer(event(LogLevel.warn, "a warning"))
    err = capsys.readouterr().err
    assert unhandled in err and "a real bug" in err and "a warning" in err


# -- the real command against a real server ------------------------------------------------


RECORDER = '''
import os
from gameframe.loadtest import SimulatedPlayer

class Recorder(SimulatedPlayer):
    """Walks like the built-in player and notes its room and state for the test."""

    interval = 0.1

    def note(self, *words):
        with open(os.environ["LOADTEST_RECORD"], "a") as f:
            f.write(" ".join(str(word) for word in words) + "\\n")

    def on_join(self, joined):
        self.saw_state = False
        self.joined_at = self.clock.seconds()
        self.note("joined", self.index, joined["room_id"], os.getpid())

    def on_message(self, message):
        state = self.state
        if not self.saw_state and state is not None and self.player_id in state["players"]:
            self.saw_state = True
            self.record("first_state", self.clock.seconds() - self.joined_at)
            self.note("state", self.index)

    def act(self):
        return self.request("move", x=self.random.uniform(0, 800), y=10)
'''


def _arena_rooms(server: RunningServer) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{server.base_url}/rooms", timeout=HTTP_TIMEOUT) as reply:
        listing = json.load(reply)
    return [room for room in listing["rooms"] if room["room"] == "arena"]


def _run_loadtest(
    server: RunningServer,
    directory: Path,
    url: str,
    *extra: str,
    env: dict[str, str] | None = None,
) -> tuple[dict[str, Any], list[list[dict[str, Any]]]]:
    """
    Run the command (20 players, 2 arena rooms, 3 s) and watch GET /rooms
    while it runs: the JSON summary and the arena rooms seen at each look.
    """
    summary_file = directory / "out.json"
    command = [
        sys.executable, "-m", "gameframe.loadtest", "--url", url, "--players", "20",
        "--rooms", "2", "--duration", "3", "--ramp", "0.5", "--no-display",
        "--json", str(summary_file), *extra,
    ]
    process = subprocess.Popen(
        command, cwd=directory, env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    looks: list[list[dict[str, Any]]] = []
    deadline = time.monotonic() + RUN_TIMEOUT
    try:
        while process.poll() is None and time.monotonic() < deadline:
            looks.append(_arena_rooms(server))
            try:
                process.wait(timeout=0.1)  # paces the looks; returns once it ends
            except subprocess.TimeoutExpired:
                pass
        out, err = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
    assert process.returncode == 0, f"exit {process.returncode}\n{err.decode()}\n{out.decode()}"
    assert out == b"", "with --json the summary goes to the file only"
    _assert_rooms_gone(server)
    return json.loads(summary_file.read_text()), looks


def _assert_rooms_gone(server: RunningServer) -> None:
    """The players left at the end: their rooms are disposed (no held seats)."""
    deadline = time.monotonic() + 5.0
    while (rooms := _arena_rooms(server)) and time.monotonic() < deadline:
        pass  # the server may still be reading the last leaves: ask again
    assert rooms == [], rooms


def _assert_clean_run(summary: dict[str, Any], processes: int = 1) -> None:
    assert summary["complete"] is True
    assert summary["connections"] == {
        "players": 20, "connected": 20, "joined": 20, "failed": 0, "disconnected": 0,
    }
    requests = summary["requests"]
    # Each player asks to move ten times a second from ~0.5 s to 3 s.
    assert requests["sent"] >= 20 * 10
    # Requests in flight when the run ends go unanswered; none fail.
    assert requests["answered"] >= requests["sent"] - 20
    assert requests["errors"] == requests["timeouts"] == 0
    latency = summary["latency_ms"]
    assert latency["count"] == requests["answered"]
    assert 0 < latency["min"] <= latency["p50"] <= latency["p99"] <= latency["max"]
    assert latency["max"] < 10_000
    assert summary["join_latency_ms"]["count"] == 20
    assert summary["messages"]["in"] > requests["answered"]  # replies and state patches
    assert summary["messages"]["in_per_second"] > 0
    assert summary["errors"] == {} and summary["disconnects"] == {}
    assert len(summary["per_process"]) == processes
    assert sum(p["players"] for p in summary["per_process"]) == 20
    assert 2.9 <= summary["duration"] <= 4


def _assert_two_rooms_of_ten(looks: list[list[dict[str, Any]]]) -> set[str]:
    """Some look at the server saw exactly two arena rooms, ten players each."""
    full = [look for look in looks if sorted(r["players"] for r in look) == [10, 10]]
    assert full, f"never saw 2 arena rooms of 10 players: {looks[-5:]}"
    return {room["room_id"] for room in full[-1]}


def test_over_tcp(gameframe_server: RunningServer, tmp_path: Path) -> None:
    summary, looks = _run_loadtest(
        gameframe_server, tmp_path, f"tcp://127.0.0.1:{gameframe_server.port}"
    )
    _assert_clean_run(summary)
    _assert_two_rooms_of_ten(looks)
    assert summary["player"] == "gameframe.loadtest.player:ArenaWalker"


def test_over_websocket(gameframe_server: RunningServer, tmp_path: Path) -> None:
    summary, looks = _run_loadtest(gameframe_server, tmp_path, gameframe_server.ws_url)
    _assert_clean_run(summary)
    _assert_two_rooms_of_ten(looks)
    assert summary["target"] == gameframe_server.ws_url


def test_two_processes_with_a_custom_player(
    gameframe_server: RunningServer, tmp_path: Path
) -> None:
    (tmp_path / "recorder.py").write_text(RECORDER)
    record = tmp_path / "joined.txt"
    summary, looks = _run_loadtest(
        gameframe_server, tmp_path, f"tcp://127.0.0.1:{gameframe_server.port}",
        "--processes", "2", "--player", "recorder:Recorder",
        env={"LOADTEST_RECORD": str(record)},
    )
    _assert_clean_run(summary, processes=2)
    assert [p["players"] for p in summary["per_process"]] == [10, 10]
    assert summary["player"] == "recorder:Recorder"
    seen_rooms = _assert_two_rooms_of_ten(looks)
    lines = [line.split() for line in record.read_text().splitlines()]
    joined = [words[1:] for words in lines if words[0] == "joined"]
    assert sorted(int(index) for index, *_ in joined) == list(range(20))
    by_room = Counter(room_id for _, room_id, _ in joined)
    assert sorted(by_room.values()) == [10, 10]
    assert set(by_room) == seen_rooms
    # Each room's players came from both worker processes.
    pids = {room_id: {pid for _, r, pid in joined if r == room_id} for room_id in by_room}
    assert all(len(p) == 2 for p in pids.values())
    # Every player mirrored the room's state, itself in it.
    assert sorted(int(words[1]) for words in lines if words[0] == "state") == list(range(20))
    # What each player recorded of its own, merged over both processes.
    first_state = summary["measures_ms"]["first_state"]
    assert first_state["count"] == 20
    assert 0 <= first_state["min"] <= first_state["p99"] <= first_state["max"] < 10_000
    assert [sorted(p["measures_p99_ms"]) for p in summary["per_process"]] == [["first_state"]] * 2


def test_a_server_that_is_not_there(tmp_path: Path) -> None:
    process = subprocess.run(
        [sys.executable, "-m", "gameframe.loadtest", "--url",
         f"tcp://127.0.0.1:{free_port()}", "--players", "3", "--duration", "30", "--ramp", "0",
         "--no-display"],
        cwd=tmp_path, capture_output=True, timeout=RUN_TIMEOUT,
    )
    assert process.returncode == 1
    summary = json.loads(process.stdout)
    assert summary["connections"]["failed"] == 3
    assert summary["errors"] == {"connect_failed": 3}
    assert summary["duration"] < 10  # nobody to drive: it ends without waiting 30 s
