"""Soak: simulated players join, play, leave, drop and reconnect for N minutes; the server's memory and object count must stay flat.

    .venv/bin/python bench/soak.py --minutes 1 [--players 24] [--json]

Starts a real `twistd -n gameframe` (the demo rooms plus bench/soakprobe.py's probe room,
127.0.0.1, a free port) and runs --players simulated players, each in a loop until the
time is up: connect, then one of

  chat       join_or_create, say a few things, then leave or drop
  tictactoe  join_or_create, play a whole game against whoever joined, then leave or drop
  arena      join_or_create (seats held 5 s), move, drop, reconnect with the token on a
             new connection, move again, then leave or drop

Every few seconds it samples the server's RSS (/proc/PID/status) and, through the probe
room's `count` action, the number of objects the server's collector tracks after a full
collection. After a warm-up it fits a line to each and reports the slope per minute.

Exit status 1 (for CI) when a slope is over its threshold (OBJECTS_SLOPE_MAX,
RSS_SLOPE_MAX_MIB below), when the object count once every player has left is more than
QUIET_GROWTH_MAX above the count before they came, when any unexpected error was seen (an `error` whose code the
protocol does not document, `internal_error`, or a connection the server ended on its
own), or when the server died. Every run stops by itself; the server is stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent))
import liveserver  # noqa: E402
from liveserver import HOST, LiveServer  # noqa: E402

from gameframe import vocabulary  # noqa: E402

# Thresholds, for CI. Measured (2026-11-30, 24 players, 1 minute, ~950 sessions): the
# object count moves by about ±100 around its mean as sessions and rooms come and go, its
# fitted slope is within ±100 a minute, RSS within ±0.1 MiB a minute, and the count once
# everyone has left is within 10 of the count before. A leak of two objects per session
# (~1,900 a minute) crosses the object thresholds; ~5 KiB per session crosses the RSS one.
OBJECTS_SLOPE_MAX = 2_000.0  # objects per minute, fitted after the warm-up
RSS_SLOPE_MAX_MIB = 5.0  # MiB per minute, fitted after the warm-up
QUIET_GROWTH_MAX = 2_000  # objects, once every player has left, against before they came

# Every code the protocol documents: the vocabulary's words and the demo rooms' own.
DOCUMENTED = {
    value for name, value in vars(vocabulary).items()
    if name.isupper() and isinstance(value, str)
} | {"not_your_turn", "cell_taken", "not_started", "game_over"}
# Codes that are documented but never expected from these well-behaved players.
ALWAYS_UNEXPECTED = {vocabulary.INTERNAL_ERROR}
ROOMS = [
    "chat=gameframe.demo.chat:ChatRoom",
    "tictactoe=gameframe.demo.tictactoe:TicTacToe",
    "arena=gameframe.demo.arena:Arena",
    "soakprobe=bench.soakprobe:Probe",
]
HOLD_S = 5


class Unexpected(Exception):
    """Something a well-behaved player should never see."""


@attrs.define
class Stats:
    sessions: Counter[str] = attrs.Factory(Counter)
    outcomes: Counter[str] = attrs.Factory(Counter)
    errors: Counter[str] = attrs.Factory(Counter)
    unexpected: list[str] = attrs.Factory(list)
    messages: int = 0

    def bad(self, what: str) -> None:
        if len(self.unexpected) < 1000:
            self.unexpected.append(what)


class Conn:
    """One JSON Lines connection; a reader task checks every message and queues it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stats: Stats,
                 who: str) -> None:
        self.reader = reader
        self.writer = writer
        self.stats = stats
        self.who = who
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.closing = False
        self.ids = 0
        self.task = asyncio.get_running_loop().create_task(self._read())
        self.player_id = ""

    @classmethod
    async def open(cls, port: int, stats: Stats, who: str) -> Conn:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 10)
        conn = cls(reader, writer, stats, who)
        welcome = await conn.expect("welcome")
        conn.player_id = welcome["player_id"]
        return conn

    async def _read(self) -> None:
        try:
            while True:
                line = await self.reader.readline()
                if not line:
                    if not self.closing:
                        self.stats.bad(f"{self.who}: the server closed the connection")
                    break
                message: dict[str, Any] = json.loads(line)
                self.stats.messages += 1
                action = message.get("action")
                if action == "error":
                    code = str(message.get("code"))
                    self.stats.errors[code] += 1
                    if code not in DOCUMENTED or code in ALWAYS_UNEXPECTED:
                        self.stats.bad(f"{self.who}: error {message}")
                elif action == "disconnect":
                    self.stats.bad(f"{self.who}: disconnected {message}")
                if action not in ("patch", "said", "player_joined", "player_left"):
                    self.queue.put_nowait(message)
        except (ConnectionError, OSError) as e:
            if not self.closing:
                self.stats.bad(f"{self.who}: {type(e).__name__} {e}")
        finally:
            self.queue.put_nowait(None)

    def send(self, action: str, **fields: Any) -> None:
        self.writer.write(json.dumps({"action": action, **fields}).encode() + b"\n")

    async def next(self, timeout: float = 10.0) -> dict[str, Any]:
        message = await asyncio.wait_for(self.queue.get(), timeout)
        if message is None:
            self.queue.put_nowait(None)
            raise Unexpected(f"{self.who}: connection ended")
        return message

    async def expect(self, action: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            message = await self.next(max(0.01, deadline - time.monotonic()))
            if message.get("action") == action:
                return message

    async def request(self, action: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        """Send with a fresh id; the reply with that id (messages in between are dropped)."""
        self.ids += 1
        request_id = self.ids
        self.send(action, id=request_id, **fields)
        deadline = time.monotonic() + timeout
        while True:
            message = await self.next(max(0.01, deadline - time.monotonic()))
            if message.get("id") == request_id:
                if message.get("action") == "error":
                    raise Unexpected(f"{self.who}: {action} refused: {message}")
                return message

    async def close(self) -> None:
        """Close our side (a drop, when the player is still in a room)."""
        self.closing = True
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 5)
        except (OSError, asyncio.TimeoutError):
            pass
        self.task.cancel()

    async def leave_and_close(self) -> None:
        reply = await self.request("leave")
        if reply.get("action") != "left":
            raise Unexpected(f"{self.who}: leave answered {reply}")
        await self.close()


async def chat(port: int, stats: Stats, rng: random.Random, who: str) -> str:
    conn = await Conn.open(port, stats, who)
    try:
        await conn.request("join_or_create", room="chat")
        for i in range(rng.randint(2, 6)):
            await conn.request("say", text=f"{who} says {i}")
            await asyncio.sleep(rng.uniform(0.05, 0.3))
        if rng.random() < 0.5:
            await conn.leave_and_close()
            return "left"
        return "dropped"
    finally:
        await conn.close()


LINES = [(0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6)]


def decided(board: list[str | None]) -> bool:
    """A line is complete or the board is full: C{game_over} is on its way, whatever C{turn} says."""
    return all(board) or any(board[a] is not None and board[a] == board[b] == board[c] for a, b, c in LINES)


async def tictactoe(port: int, stats: Stats, rng: random.Random, who: str) -> str:
    conn = await Conn.open(port, stats, who)
    try:
        await conn.request("join_or_create", room="tictactoe")
        me = conn.player_id
        board: list[str | None] = [None] * 9
        turn: str | None = None
        try:
            start = await conn.expect("start", timeout=8)
        except asyncio.TimeoutError:
            await conn.leave_and_close()
            return "no_opponent"
        turn = start["turn"]
        while True:
            if turn == me and not decided(board):
                await asyncio.sleep(rng.uniform(0.02, 0.15))
                free = [i for i, cell in enumerate(board) if cell is None]
                conn.send("place", cell=rng.choice(free))
                turn = None  # until the server says whose turn it is
            message = await conn.next(timeout=15)
            action = message.get("action")
            if action == "placed":
                board[message["cell"]] = message["mark"]
                turn = message["turn"]
            elif action == "game_over":
                outcome = f"game_{message['reason']}"
                if rng.random() < 0.5:
                    await conn.leave_and_close()
                    return outcome + "_left"
                return outcome + "_dropped"
            elif action == "error":
                if message.get("code") == "game_over":
                    continue  # the opponent left as we placed: game_over follows
                raise Unexpected(f"{who}: place refused: {message}")
    finally:
        await conn.close()


async def arena(port: int, stats: Stats, rng: random.Random, who: str) -> str:
    conn = await Conn.open(port, stats, who)
    try:
        joined = await conn.request("join_or_create", room="arena", options={"hold": HOLD_S})
        await conn.expect("state")
        for _ in range(rng.randint(5, 15)):
            conn.send("move", x=rng.uniform(0, 800), y=rng.uniform(0, 600))
            await asyncio.sleep(0.1)
    finally:
        await conn.close()  # a drop: the room holds the seat
    await asyncio.sleep(rng.uniform(0.0, 1.0))
    again = await Conn.open(port, stats, who + "'")
    try:
        back = await again.request("reconnect", token=joined["token"])
        if back.get("player_id") != joined["player_id"]:
            raise Unexpected(f"{who}: reconnected as {back.get('player_id')}, not {joined['player_id']}")
        await again.expect("state")
        for _ in range(rng.randint(3, 10)):
            again.send("move", x=rng.uniform(0, 800), y=rng.uniform(0, 600))
            await asyncio.sleep(0.1)
        if rng.random() < 0.5:
            await again.leave_and_close()
            return "reconnected_left"
        return "reconnected_dropped"
    finally:
        await again.close()


SESSIONS = {"chat": chat, "tictactoe": tictactoe, "arena": arena}


async def player(n: int, port: int, stats: Stats, until: float) -> None:
    """One simulated player: sessions one after another until the time is up."""
    rng = random.Random(n)
    kinds = list(SESSIONS)
    i = n
    while time.monotonic() < until:
        kind = kinds[i % len(kinds)]
        i += 1
        who = f"p{n}/{kind}"
        stats.sessions[kind] += 1
        try:
            outcome = await SESSIONS[kind](port, stats, rng, who)
            stats.outcomes[f"{kind}:{outcome}"] += 1
        except Unexpected as e:
            stats.bad(str(e))
        except (asyncio.TimeoutError, OSError) as e:
            stats.bad(f"{who}: {type(e).__name__} {e}")
        except Exception as e:  # a bug of this bench: shown, not hidden
            stats.bad(f"{who}: bench error {e!r}")
        await asyncio.sleep(rng.uniform(0.05, 0.5))


@attrs.frozen
class Point:
    minutes: float
    rss_mib: float
    objects: int
    gameframe_objects: int


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of ys against xs."""
    if len(xs) < 3:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else None


async def probe(server: LiveServer, stats: Stats) -> tuple[Conn, Any]:
    conn = await Conn.open(server.port, stats, "probe")
    await conn.request("create", room="soakprobe")

    async def sample(t0: float) -> tuple[Point, dict[str, int]]:
        reply = await conn.request("count", timeout=30)
        counts = reply["result"]
        rss = server.sample().rss_kib / 1024
        ours: dict[str, int] = counts["gameframe"]
        point = Point((time.monotonic() - t0) / 60, round(rss, 2), counts["objects"], sum(ours.values()))
        return point, ours

    return conn, sample


async def soak(server: LiveServer, players: int, minutes: float, every: float, warmup: float) -> dict[str, Any]:
    stats = Stats()
    conn, sample = await probe(server, stats)
    t0 = time.monotonic()
    quiet_before, types_before = await sample(t0)
    until = t0 + minutes * 60
    tasks = [asyncio.get_running_loop().create_task(player(n, server.port, stats, until))
             for n in range(players)]
    points: list[Point] = []
    types_last: dict[str, int] = {}
    while time.monotonic() < until:
        await asyncio.sleep(min(every, max(0.0, until - time.monotonic())))
        if not server.alive():
            stats.bad("the server died")
            break
        point, types_last = await sample(t0)
        points.append(point)
        print(f"# {point.minutes:5.2f} min  RSS {point.rss_mib:7.1f} MiB  objects {point.objects:8,}  "
              f"gameframe objects {point.gameframe_objects:6,}  sessions {sum(stats.sessions.values()):,}",
              file=sys.stderr)
    done, pending = await asyncio.wait(tasks, timeout=40)
    for task in pending:
        task.cancel()
        stats.bad("a player did not finish within 40 s of the end")
    await asyncio.sleep(HOLD_S + 1)  # held arena seats expire
    quiet_after = None
    types_after: dict[str, int] = {}
    if server.alive():
        quiet_after, types_after = await sample(t0)
    await conn.close()
    fitted = [p for p in points if p.minutes * 60 >= warmup]
    xs = [p.minutes for p in fitted]
    return {
        "stats": stats,
        "points": points,
        "fitted_samples": len(fitted),
        "objects_per_min": slope(xs, [float(p.objects) for p in fitted]),
        "gameframe_objects_per_min": slope(xs, [float(p.gameframe_objects) for p in fitted]),
        "rss_mib_per_min": slope(xs, [p.rss_mib for p in fitted]),
        "quiet_before": quiet_before,
        "quiet_after": quiet_after,
        "gameframe_types_before": types_before,
        "gameframe_types_after": types_after,
        "gameframe_types_last_sample": types_last,
    }


def show(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=1.0, help="how long the players play (fractions allowed)")
    ap.add_argument("--players", type=int, default=24, help="simulated players at once")
    ap.add_argument("--every", type=float, default=2.0, help="seconds between samples")
    ap.add_argument("--warmup", type=float, default=None,
                    help="seconds left out of the fit (default: a quarter of the run, at most 60)")
    ap.add_argument("--json", action="store_true", help="also print a JSON summary")
    ap.add_argument("--python", default=liveserver.default_python(), help="the venv's python (its twistd runs the server)")
    a = ap.parse_args()
    if a.minutes <= 0:
        ap.error("--minutes must be more than 0")
    warmup = a.warmup if a.warmup is not None else min(60.0, a.minutes * 60 / 4)
    liveserver.raise_fd_limit(a.players * 4 + 256)
    workdir = Path(tempfile.mkdtemp(prefix="gameframe-soak-"))
    server = liveserver.start(
        a.python, [arg for spec in ROOMS for arg in ("--room", spec)], workdir / "server.log", cpu=None,
    )
    try:
        result = asyncio.run(soak(server, a.players, a.minutes, a.every, warmup))
        alive = server.alive()
        log = server.log_since(0)
    finally:
        status = server.stop()
    stats: Stats = result["stats"]
    if not alive:
        stats.bad(f"the server exited ({status})")
    tracebacks = log.count("Traceback")
    if tracebacks:
        stats.bad(f"{tracebacks} tracebacks in the server's log")
    before: Point = result["quiet_before"]
    after: Point | None = result["quiet_after"]
    growth = after.objects - before.objects if after else None
    checks = {
        "objects per minute": (result["objects_per_min"], OBJECTS_SLOPE_MAX),
        "RSS MiB per minute": (result["rss_mib_per_min"], RSS_SLOPE_MAX_MIB),
        "objects left behind": (growth, QUIET_GROWTH_MAX),
    }
    over = [name for name, (value, limit) in checks.items() if value is None or value > limit]
    ok = not over and not stats.unexpected

    print(f"\n## Soak ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}): "
          f"`bench/soak.py {' '.join(sys.argv[1:])}`\n")
    print(f"{a.players} players for {a.minutes:g} min: {sum(stats.sessions.values()):,} sessions "
          f"({', '.join(f'{k} {v}' for k, v in sorted(stats.sessions.items()))}), "
          f"{stats.messages:,} messages received; samples every {a.every:g} s, "
          f"{result['fitted_samples']} after a {warmup:g} s warm-up fitted.\n")
    print("| measure | slope per minute | threshold | before the players → after they left | threshold |")
    print("|---|---|---|---|---|")
    print(f"| server RSS (MiB) | {show(result['rss_mib_per_min'], 2)} | {RSS_SLOPE_MAX_MIB:g} | "
          f"{before.rss_mib} → {after.rss_mib if after else '-'} | - |")
    print(f"| live objects after gc.collect() | {show(result['objects_per_min'])} | {OBJECTS_SLOPE_MAX:,.0f} | "
          f"{before.objects:,} → {show(after.objects if after else None)} | +{QUIET_GROWTH_MAX:,} |")
    print(f"| of them gameframe's own | {show(result['gameframe_objects_per_min'])} | - | "
          f"{before.gameframe_objects:,} → {show(after.gameframe_objects if after else None)} | - |")
    print(f"\nOutcomes: {', '.join(f'{k} {v}' for k, v in sorted(stats.outcomes.items()))}.")
    print(f"Errors received: {dict(stats.errors) or 'none'}. Unexpected: {len(stats.unexpected)}.")
    for line in stats.unexpected[:20]:
        print(f"  - {line}")
    if over:
        print(f"Over the threshold: {', '.join(over)}. gameframe objects after: {result['gameframe_types_after']}")
    print("PASS" if ok else "FAIL")
    if a.json:
        print(json.dumps({
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": "bench/soak.py " + " ".join(sys.argv[1:]),
            "players": a.players,
            "minutes": a.minutes,
            "sessions": dict(stats.sessions),
            "outcomes": dict(stats.outcomes),
            "errors": dict(stats.errors),
            "unexpected": stats.unexpected,
            "rss_mib_per_min": result["rss_mib_per_min"],
            "objects_per_min": result["objects_per_min"],
            "gameframe_objects_per_min": result["gameframe_objects_per_min"],
            "thresholds": {"rss_mib_per_min": RSS_SLOPE_MAX_MIB, "objects_per_min": OBJECTS_SLOPE_MAX,
                           "objects_left_behind": QUIET_GROWTH_MAX},
            "samples": [attrs.asdict(p) for p in result["points"]],
            "quiet_before": attrs.asdict(before),
            "quiet_after": attrs.asdict(after) if after else None,
            "gameframe_types_before": result["gameframe_types_before"],
            "gameframe_types_after": result["gameframe_types_after"],
            "pass": ok,
        }, indent=1))
    shutil.rmtree(workdir, ignore_errors=True) if ok else print(f"server log: {workdir / 'server.log'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
