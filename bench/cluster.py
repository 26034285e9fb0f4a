"""The cluster's cost: the worst case (every player on one node, every room on another) beside one process.

    python bench/cluster.py [--levels 25x10x10,2x50x10] [--scenarios relay,state] [--repeat 1]
    python bench/cluster.py --commands [--players 200 --room-size 10 --actions 500]
    python bench/cluster.py --workers [--levels 25x10x10,50x10x10,...]

Default mode: for each scenario (the relay, bench.rooms:RelayRoom; the state sync,
bench.rooms:StateRoom) and each level, the same peerbench load (its Node load
generator with this folder's adapters) against (1) one plain gameframe process and
(2) two gameframe nodes on one redis-server of our own, every client connected to
node A while `--placement bench.rooms:elsewhere` puts every room on node B, so every
action and every delivery crosses Redis. The servers (both nodes and Redis) are
pinned to CPU 0, the load generator (and this driver) to CPU 1, as peerbench does.
peerbench measures one server PID; this driver reads utime+stime of every server
process from /proc/PID/stat itself, over the load generator's measurement window
(the window ends when the load generator prints its result, and lasts the
`window_s` it reports), and prints CPU-seconds per 1000 deliveries summed over all
of them, with the cluster/single ratios of the same run.

`--commands`: Redis commands per join and per forwarded action, counted by Redis
(`CONFIG RESETSTAT`, then `INFO commandstats`), with raw sockets: N players on node A
join rooms placed on node B one at a time, then M actions are sent one at a time
(each waits for its room's deliveries), then every player sends one action at once.
A MONITOR connection names each EVALSHA's script and counts the nodes' heartbeats,
whose commands are taken out.

`--workers`: `--workers 1` and `--workers 2` (both with `--redis`, default placement)
on the relay ladder: max sustainable deliveries/s. The servers are not pinned
(workers need both cores); the load generator stays on CPU 1, so it shares a core
with them.

Before each measured pair (or --workers level) the driver waits until no other
pytest or twistd runs (polling every 30 s, up to --quiet-wait s), and measures again
(up to --retries times) when one started meanwhile; results say if any ran.

The servers run with this checkout first on PYTHONPATH, then the caller's PYTHONPATH
(e.g. a folder with `hiredis`, which txredisapi then uses to parse replies).

Everything listens on 127.0.0.1; every run is bounded in time; only processes
started here are stopped, by PID. Results: bench/results/cluster/.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import select
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PEERBENCH = Path(os.environ.get("PEERBENCH", REPO.parent / "shared" / "peerbench"))
HOST = "127.0.0.1"
CLK = os.sysconf("SC_CLK_TCK")
SERVER_CPU = "0"
LOADGEN_CPU = "1"
SCENARIOS = {
    # name: (room type, room class, adapter)
    "relay": ("relay", "bench.rooms:RelayRoom", "adapter-tcp.js"),
    "state": ("state", "bench.rooms:StateRoom", "adapter-state.js"),
}
PLACEMENT = "bench.rooms:elsewhere"
# peerbench's pass rule and its ladders (relay) for --workers.
P99_LIMIT_MS = 100.0
MIN_RECEIVED = 0.98
WORKER_LADDERS = {
    "P10": "25x10x10,50x10x10,75x10x10,100x10x10,75x10x20,100x10x20",
    "P50": "2x50x10,4x50x10,6x50x10,10x50x10,20x50x10,20x50x20",
}
# Commands this driver sends Redis itself (never counted).
OWN_COMMANDS = {"config|resetstat", "info", "monitor", "ping", "config|get", "client|setname"}
# Commands a node sends Redis itself; every other command counted ran inside a script.
NODE_COMMANDS = {"evalsha", "eval", "publish", "subscribe", "unsubscribe", "script|load", "select", "auth"}


# -- processes ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port(port: int, timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


class Processes:
    """The processes this run started, stopped in reverse order, by PID only."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, cmd: list[str], cpu: str | None, **kwargs: Any) -> subprocess.Popen[bytes]:
        # This driver runs on the load generator's CPU: a server not pinned
        # is given every CPU back (it would inherit the driver's one).
        cpu = cpu if cpu is not None else f"0-{(os.cpu_count() or 1) - 1}"
        cmd = ["taskset", "-c", cpu, *cmd]
        log = open(self.logdir / f"{name}.log", "ab")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kwargs)
        log.close()
        self.started.append((name, proc))
        return proc

    def alive(self) -> bool:
        return all(proc.poll() is None for _, proc in self.started)

    def stop(self) -> None:
        for _, proc in reversed(self.started):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        self.started.clear()


def twistd(python: str) -> str:
    return str(Path(python).with_name("twistd"))


def gameframe_cmd(python: str, port: int, room: str, *extra: str) -> list[str]:
    return [twistd(python), "-n", "--pidfile=", "gameframe", "--web", "none",
            "--port", f"tcp:{port}:interface={HOST}", "--room", room, *extra]


def start_redis(procs: Processes, cpu: str | None) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = procs.start("redis", ["redis-server", "--port", str(port), "--bind", HOST, "--save", "",
                                 "--appendonly", "no"], cpu)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        try:
            if Redis(port).command("PING") == "PONG":
                return proc, port
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("redis-server did not answer PING")


def env() -> dict[str, str]:
    """The servers' environment: this checkout first on the path, then any PYTHONPATH given."""
    extra = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(REPO) + (os.pathsep + extra if extra else "")}


def tree(pid: int) -> list[int]:
    """The process and its descendants (--workers' parent and its workers)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return found


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of the process (all its threads), in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


# -- a minimal Redis client (RESP) for the driver's own reads -------------------------


class Redis:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=5)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, *args: str) -> None:
        out = [f"*{len(args)}\r\n".encode()]
        for a in args:
            b = a.encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(out))

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise OSError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self) -> Any:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b"-"):
            return rest.decode()
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self.buf += self.sock.recv(65536)
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data.decode()
        if kind == b"*":
            return [self.reply() for _ in range(int(rest))]
        raise OSError(f"unexpected reply {line!r}")

    def command(self, *args: str) -> Any:
        self.send(*args)
        return self.reply()

    def commandstats(self) -> dict[str, int]:
        stats = {}
        for line in self.command("INFO", "commandstats").splitlines():
            m = re.match(r"cmdstat_([^:]+):calls=(\d+)", line)
            if m:
                stats[m.group(1)] = int(m.group(2))
        return stats


# -- sampling CPU of every server process ---------------------------------------------


class Sampler:
    """Every `period` s: clock ticks of every watched process; every second, Redis' command counts."""

    def __init__(self, roots: dict[str, int], redis_port: int | None, period: float = 0.05) -> None:
        self.roots = roots  # name -> pid (a --workers parent counts with its children)
        self.period = period
        self.samples: list[tuple[float, dict[str, int]]] = []
        self.redis_port = redis_port
        self.stats: list[tuple[float, dict[str, int]]] = []
        self.foreign: set[str] = set()  # other pytest/twistd seen while sampling
        self.also_ours: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _read(self) -> dict[str, int]:
        out = {}
        for name, pid in self.roots.items():
            total = 0
            for p in tree(pid):
                t = cpu_ticks(p)
                total += t or 0
            out[name] = total
        return out

    def _run(self) -> None:
        redis = Redis(self.redis_port) if self.redis_port else None
        next_stats = 0.0
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                self.samples.append((now, self._read()))
                if now >= next_stats:
                    if redis is not None:
                        try:
                            self.stats.append((time.monotonic(), redis.commandstats()))
                        except OSError:
                            redis = None
                    ours = [p for pid in self.roots.values() for p in tree(pid)]
                    self.foreign.update(foreign(ours + self.also_ours))
                    next_stats = now + 1.0
                self._stop.wait(self.period)
        finally:
            if redis is not None:
                redis.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def cpu_between(self, t0: float, t1: float) -> dict[str, float]:
        """CPU-seconds of each process between two instants (interpolated between samples)."""
        def at(t: float, name: str) -> float:
            s = self.samples
            for (ta, a), (tb, b) in zip(s, s[1:]):
                if ta <= t <= tb:
                    f = (t - ta) / (tb - ta) if tb > ta else 0.0
                    return a[name] + f * (b[name] - a[name])
            return float((s[0] if t < s[0][0] else s[-1])[1][name])
        return {name: (at(t1, name) - at(t0, name)) / CLK for name in self.roots}

    def stats_between(self, t0: float, t1: float) -> tuple[float, dict[str, int]] | None:
        """Redis command counts between the first and last 1-s readings inside the window."""
        inside = [(t, s) for t, s in self.stats if t0 <= t <= t1]
        if len(inside) < 2:
            return None
        (ta, a), (tb, b) = inside[0], inside[-1]
        return tb - ta, {k: v - a.get(k, 0) for k, v in b.items() if v - a.get(k, 0)}


# -- the load generator ------------------------------------------------------------------


def run_loadgen(adapter: str, port: int, level: tuple[int, int, int], warmup: float, duration: float,
                pid: int) -> tuple[dict[str, Any], float | None]:
    """peerbench's loadgen on CPU 1, as its bench.py runs it; its result and when it came (monotonic)."""
    rooms, players, hz = level
    cmd = ["taskset", "-c", LOADGEN_CPU, "node", "loadgen/loadgen.js", "--adapter", str(HERE / adapter),
           "--port", str(port), "--rooms", str(rooms), "--players", str(players), "--hz", str(hz),
           "--warmup", str(warmup), "--duration", str(duration), "--server-pid", str(pid),
           "--clk-tck", str(CLK)]
    proc = subprocess.Popen(cmd, cwd=PEERBENCH, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    deadline = time.monotonic() + warmup + duration + 90
    buf, result, arrived = b"", None, None
    try:
        while result is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return {"error": "loadgen timeout"}, None
            ready, _, _ = select.select([proc.stdout], [], [], min(left, 1.0))
            if not ready:
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.startswith(b"{"):
                    arrived = time.monotonic()
                    result = json.loads(line)
                    break
        if result is None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            return {"error": "no result: " + err[-300:]}, None
        return result, arrived
    finally:
        if proc.poll() is None:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- raw gameframe clients ---------------------------------------------------------------


class Client:
    """One JSON Lines connection to a gameframe node."""

    def __init__(self, port: int) -> None:
        self.room = ""
        self.sock = socket.create_connection((HOST, port), timeout=10)
        self.buf = b""
        self.welcome = self.read()

    def send(self, message: dict[str, Any]) -> None:
        self.sock.sendall(json.dumps(message).encode() + b"\n")

    def read(self) -> dict[str, Any]:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise OSError("the server closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        return message

    def until(self, action: str) -> dict[str, Any]:
        while True:
            m = self.read()
            if m.get("action") == action:
                return m
            if m.get("action") == "error":
                raise RuntimeError(f"server error: {m}")

    def close(self) -> None:
        self.sock.close()


def listing(port: int, room_type: str) -> list[dict[str, Any]]:
    c = Client(port)
    try:
        c.send({"action": "list", "room": room_type})
        rooms: list[dict[str, Any]] = c.until("rooms")["rooms"]
        return rooms
    finally:
        c.close()


def wait_elsewhere(port: int, room_type: str, timeout: float = 20.0) -> str:
    """Until a room created from node A is placed on another node (the nodes know each other): its node."""
    end = time.monotonic() + timeout
    n = 0
    while time.monotonic() < end:
        n += 1
        c = Client(port)
        try:
            c.send({"action": "join_or_create", "room": room_type, "options": {"key": f"probe{n}"}})
            room_id = c.until("joined")["room_id"]
            c.send({"action": "list", "room": room_type})
            rooms = c.until("rooms")["rooms"]
        finally:
            c.close()
        node = next((str(r.get("node")) for r in rooms if r["room_id"] == room_id), None)
        if node and node != "A":
            return node
        time.sleep(0.5)
    raise RuntimeError("node A never placed a room on node B")


# -- default mode: cluster beside one process ---------------------------------------------


def start_single(procs: Processes, python: str, room: str, extra: list[str]) -> tuple[dict[str, int], int, None]:
    port = free_port()
    proc = procs.start("single", gameframe_cmd(python, port, room, *extra), SERVER_CPU, env=env(), cwd=REPO)
    if not wait_port(port):
        raise RuntimeError("the single server did not listen")
    time.sleep(1.0)
    return {"single": proc.pid}, port, None


def start_cluster(procs: Processes, python: str, room: str, room_type: str,
                  extra: list[str]) -> tuple[dict[str, int], int, int]:
    redis, rport = start_redis(procs, SERVER_CPU)
    url = f"redis://{HOST}:{rport}/0"
    pids, ports = {}, {}
    for name in ("A", "B"):
        ports[name] = free_port()
        cmd = gameframe_cmd(python, ports[name], room, "--redis", url, "--node", name,
                            "--placement", PLACEMENT, *extra)
        pids[name] = procs.start(f"node{name}", cmd, SERVER_CPU, env=env(), cwd=REPO).pid
    for name in ("A", "B"):
        if not wait_port(ports[name]):
            raise RuntimeError(f"node {name} did not listen")
    wait_elsewhere(ports["A"], room_type)
    time.sleep(1.0)
    pids["redis"] = redis.pid
    return pids, ports["A"], rport


def count_rooms(port: int, room_type: str, rooms: int, out: dict[str, int]) -> None:
    """Where the load generator's rooms run: list them from node A until all are there (≤ 10 tries, 1 s apart)."""
    for _ in range(10):
        time.sleep(1.0)
        try:
            found = listing(port, room_type)
        except (OSError, RuntimeError, KeyError, ValueError):
            continue
        out.clear()
        for x in found:
            out[x.get("node", "?")] = out.get(x.get("node", "?"), 0) + 1
        if len(found) >= rooms:
            return


BUSY = re.compile(r"pytest|twistd")


def foreign(ours: Iterable[int] = ()) -> list[str]:
    """pytest or twistd processes running now that this driver did not start (they share the cores)."""
    mine = set(ours) | {os.getpid()}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in mine:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if BUSY.search(cmdline):
            found.append(f"{entry} {cmdline[:100]}")
    return found


def wait_quiet(limit: float, every: float = 30.0) -> float:
    """Poll until no foreign pytest/twistd runs (every `every` s, at most `limit` s): seconds waited."""
    t0 = time.monotonic()
    while foreign():
        if time.monotonic() - t0 >= limit:
            print(f"still busy after {limit:.0f} s: measuring anyway", flush=True)
            break
        time.sleep(every)
    return time.monotonic() - t0


def load(procs: Processes, pids: dict[str, int], port: int, rport: int | None, room_type: str,
         adapter: str, level: tuple[int, int, int], a: argparse.Namespace) -> dict[str, Any]:
    """One load level against running servers: the load generator's result, with every server's CPU."""
    sampler = Sampler(pids, rport)
    sampler.also_ours = [p for _, proc in procs.started for p in tree(proc.pid)]
    placed: dict[str, int] = {}
    if rport is not None:
        threading.Thread(target=count_rooms, args=(port, room_type, level[0], placed), daemon=True).start()
    try:
        first = next(iter(pids.values()))
        r, arrived = run_loadgen(adapter, port, level, a.warmup, a.duration, first)
    finally:
        sampler.stop()
    r["servers_alive"] = procs.alive()
    r["processes"] = {name: len(tree(pid)) for name, pid in pids.items()}
    r["others_busy"] = sorted(sampler.foreign)
    if placed:
        r["rooms_per_node"] = dict(placed)
    R, P, H = level
    r.update(level=f"{R}x{P}x{H}", offered=R * P * H * P)
    if "error" in r or arrived is None:
        r["pass"] = False
        return r
    t1 = arrived
    t0 = t1 - r["window_s"]
    cpu = sampler.cpu_between(t0, t1)
    total = sum(cpu.values())
    deliveries = r["deliveries_per_s"] * r["window_s"]
    r["cpu_s"] = {k: round(v, 3) for k, v in cpu.items()}
    r["cpu_pct"] = {k: round(v / r["window_s"] * 100, 1) for k, v in cpu.items()}
    r["cpu_total_pct"] = round(total / r["window_s"] * 100, 1)
    r["cpu_s_per_1000"] = total / deliveries * 1000 if deliveries else None
    # Cross-check: the load generator measured the first process over its own window.
    r["check_first_pct_loadgen"] = r.get("server_cpu_pct")
    r["check_first_pct_driver"] = r["cpu_pct"][next(iter(pids))]
    stats = sampler.stats_between(t0, t1)
    if stats:
        span, counts = stats
        moves = r["sent_moves_per_s"] * span
        r["redis_per_s"] = {k: round(v / span, 1) for k, v in counts.items() if k not in OWN_COMMANDS}
        r["publish_per_move"] = round(counts.get("publish", 0) / moves, 4) if moves else None
    r["pass"] = passes(r)
    return r


def measure(kind: str, scenario: str, level: tuple[int, int, int], a: argparse.Namespace,
            logdir: Path) -> dict[str, Any]:
    room_type, room_class, adapter = SCENARIOS[scenario]
    room = f"{room_type}={room_class}"
    procs = Processes(logdir)
    try:
        if kind == "single":
            pids, port, rport = start_single(procs, a.python, room, a.extra)
        else:
            pids, port, rport = start_cluster(procs, a.python, room, room_type, a.extra)
        r = load(procs, pids, port, rport, room_type, adapter, level, a)
    finally:
        procs.stop()
    r.update(kind=kind, scenario=scenario)
    return r


def parse_level(spec: str) -> tuple[int, int, int]:
    """C{RxPxH}: rooms, players per room, moves per second per player."""
    rooms, players, hz = (int(x) for x in spec.split("x"))
    return rooms, players, hz


def passes(r: dict[str, Any]) -> bool:
    return ("error" not in r and r.get("p99_ms") is not None and r["p99_ms"] < P99_LIMIT_MS
            and r["received_ratio"] >= MIN_RECEIVED and r.get("servers_alive", True))


def row(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"{r['scenario']:5s} {r['level']:9s} {r['kind']:7s} ERROR {r['error'][:150]}"
    per = " ".join(f"{k}={v}%" for k, v in r["cpu_pct"].items())
    return (f"{r['scenario']:5s} {r['level']:9s} {r['kind']:7s} recv={r['deliveries_per_s']:>9,.0f}/s "
            f"({r['received_ratio'] * 100:5.1f}%) p50={r['p50_ms']}ms p99={r['p99_ms']}ms "
            f"CPU-ms/1000del={r['cpu_s_per_1000'] * 1000:.2f} [{per}] cpu0={r.get('cpu0_busy_pct')}% "
            f"lg={r.get('loadgen_cpu_pct')}% (check: loadgen saw {r['check_first_pct_loadgen']}%, "
            f"driver {r['check_first_pct_driver']}%)"
            + (f" rooms/node={r['rooms_per_node']}" if "rooms_per_node" in r else "")
            + (f" PUBLISH/move={r['publish_per_move']}" if r.get("publish_per_move") is not None else "")
            + (f" OTHERS BUSY: {len(r['others_busy'])} processes" if r.get("others_busy") else ""))


def compare(a: argparse.Namespace, outdir: Path) -> dict[str, Any]:
    levels = [parse_level(spec) for spec in a.levels.split(",")]
    runs: list[dict[str, Any]] = []
    for rep in range(a.repeat):
        for scenario in a.scenarios.split(","):
            for level in levels:
                # Alternate which goes first, so drift over a run favours neither.
                order = ("single", "cluster") if (rep + levels.index(level)) % 2 == 0 else ("cluster", "single")
                for attempt in range(1 + a.retries):
                    if a.quiet_wait:
                        waited = wait_quiet(a.quiet_wait)
                        if waited > 1:
                            print(f"(waited {waited:.0f} s for the machine to be quiet)", flush=True)
                    pair = []
                    for kind in order:
                        r = measure(kind, scenario, level, a, outdir)
                        r["repeat"] = rep
                        r["attempt"] = attempt
                        pair.append(r)
                        print(row(r), flush=True)
                    busy = any(r.get("others_busy") for r in pair)
                    for r in pair:
                        r["discarded"] = busy and attempt < a.retries
                    runs.extend(pair)
                    if not busy:
                        break
                    if attempt < a.retries:
                        print("(other tests ran during this pair: measured again)", flush=True)
    return {"runs": runs, "table": table([r for r in runs if not r.get("discarded")], levels)}


def table(runs: list[dict[str, Any]], levels: list[tuple[int, int, int]]) -> list[dict[str, Any]]:
    out = []
    order = ["x".join(map(str, level)) for level in levels]
    keys = sorted({(r["scenario"], r["level"], r["repeat"]) for r in runs},
                  key=lambda k: (list(SCENARIOS).index(k[0]), order.index(k[1]), k[2]))
    for scenario, level, rep in keys:
        pair = {r["kind"]: r for r in runs if (r["scenario"], r["level"], r["repeat"]) == (scenario, level, rep)}
        s, c = pair.get("single"), pair.get("cluster")
        line: dict[str, Any] = {"scenario": scenario, "level": level, "repeat": rep}
        for kind, r in (("single", s), ("cluster", c)):
            if r and "error" not in r:
                line[kind] = {k: r.get(k) for k in ("deliveries_per_s", "received_ratio", "p50_ms", "p99_ms",
                                                   "cpu_s_per_1000", "cpu_pct", "cpu0_busy_pct", "pass")}
        if "single" in line and "cluster" in line:
            line["cpu_ratio"] = line["cluster"]["cpu_s_per_1000"] / line["single"]["cpu_s_per_1000"]
            line["p99_diff_ms"] = line["cluster"]["p99_ms"] - line["single"]["p99_ms"]
            line["p50_diff_ms"] = line["cluster"]["p50_ms"] - line["single"]["p50_ms"]
        line["others_busy"] = any((r or {}).get("others_busy") for r in (s, c))
        out.append(line)
    return out


def print_table(lines: list[dict[str, Any]]) -> None:
    print()
    print("| scenario | R×P×H | run | received/s single / cluster | p50 ms single / cluster | p99 ms single / cluster "
          "| CPU-s per 1000 deliveries single / cluster | cluster CPU A / B / redis % | **CPU ratio** | **p99 diff** |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for l in lines:
        s, c = l.get("single"), l.get("cluster")
        if not (s and c):
            print(f"| {l['scenario']} | {l['level']} | {l['repeat'] + 1} | error | | | | | | |")
            continue
        pct = c["cpu_pct"]
        print(f"| {l['scenario']} | {l['level'].replace('x', '×')} | {l['repeat'] + 1} "
              f"| {s['deliveries_per_s']:,.0f} / {c['deliveries_per_s']:,.0f} "
              f"| {s['p50_ms']:.2f} / {c['p50_ms']:.2f} | {s['p99_ms']:.2f} / {c['p99_ms']:.2f} "
              f"| {s['cpu_s_per_1000']:.4f} / {c['cpu_s_per_1000']:.4f} "
              f"| {pct.get('A')} / {pct.get('B')} / {pct.get('redis')} "
              f"| **{l['cpu_ratio']:.2f}×** | **{l['p99_diff_ms']:+.2f} ms** |"
              + (" (other tests were running)" if l.get("others_busy") else ""))
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for l in lines:
        if "cpu_ratio" in l:
            groups.setdefault((l["scenario"], l["level"]), []).append(l)
    if any(len(g) > 1 for g in groups.values()):
        print()
        for (scenario, level), g in groups.items():
            print(f"median over {len(g)} runs, {scenario} {level}: CPU ratio "
                  f"{statistics.median(x['cpu_ratio'] for x in g):.2f}×, p99 diff "
                  f"{statistics.median(x['p99_diff_ms'] for x in g):+.2f} ms")


# -- --commands: Redis commands per join and per forwarded action ----------------------


class Monitor:
    """
    A MONITOR connection counting the top-level commands (each EVALSHA by its
    script's name). The feed is in execution order: the driver's CONFIG
    RESETSTAT starts a phase and its INFO ends it, so the counts cover
    exactly what INFO commandstats covers.
    """

    def __init__(self, port: int, names: dict[str, str]) -> None:
        self.redis = Redis(port)
        self.names = names
        self.counts: dict[str, int] = {}
        self.ended: dict[str, int] | None = None
        self.done = threading.Event()
        self.redis.send("MONITOR")
        self.redis.reply()
        self.redis.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        pattern = re.compile(r'^\+[\d.]+ \[\d+ ([^\]]+)\] "([^"]+)"(?: "([^"]*)")?')
        while not self._stop.is_set():
            try:
                line = self.redis._line().decode(errors="replace")
            except socket.timeout:
                continue
            except OSError:
                return
            m = pattern.match(line)
            if not m or m.group(1) == "lua":
                continue
            cmd, arg = m.group(2).lower(), (m.group(3) or "")
            if cmd == "config" and arg.lower() == "resetstat":
                self.counts = {}
                continue
            if cmd == "info":
                self.ended, self.counts = self.counts, {}
                self.done.set()
                continue
            if cmd == "evalsha":
                cmd = "evalsha:" + self.names.get(arg, arg[:8])
            self.counts[cmd] = self.counts.get(cmd, 0) + 1

    def take(self) -> dict[str, int]:
        """The counts up to the driver's last INFO."""
        if not self.done.wait(10):
            raise RuntimeError("MONITOR never saw the INFO that ends a phase")
        self.done.clear()
        ended, self.ended = self.ended or {}, None
        return ended

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.redis.close()


def script_names() -> dict[str, str]:
    try:
        from gameframe.cluster.redis import _SCRIPTS  # the SHA1 each EVALSHA names
    except ImportError:
        return {}
    return {script.sha: name for name, script in _SCRIPTS.items()}


def commands(a: argparse.Namespace, outdir: Path) -> dict[str, Any]:
    room_type, room_class, _ = SCENARIOS["relay"]
    procs = Processes(outdir)
    result: dict[str, Any] = {"players": a.players, "room_size": a.room_size, "actions": a.actions}
    clients: list[Client] = []
    try:
        pids, port, rport = start_cluster(procs, a.python, f"{room_type}={room_class}", room_type, a.extra)
        time.sleep(2.0)
        redis = Redis(rport)
        monitor = Monitor(rport, script_names())

        def phase(name: str, work: Callable[[], None], settle: float = 1.0) -> dict[str, Any]:
            redis.command("CONFIG", "RESETSTAT")
            t0 = time.monotonic()
            work()
            time.sleep(settle)  # what the nodes flush after the last reply
            stats = redis.commandstats()
            span = time.monotonic() - t0
            scripts = monitor.take()
            return {"name": name, "seconds": round(span, 2),
                    "commands": {k: v for k, v in stats.items() if k not in OWN_COMMANDS},
                    "top_level": scripts}

        quiet = phase("quiet", lambda: time.sleep(a.quiet), settle=0)
        beats = quiet["top_level"].get("evalsha:beat", 0)
        if not beats:
            raise RuntimeError("no heartbeat seen in the quiet phase")
        # Commands of one heartbeat (the script's own and those it runs).
        per_beat = {k: v / beats for k, v in quiet["commands"].items()}

        def connect() -> None:
            for _ in range(a.players):
                clients.append(Client(port))

        def join() -> None:
            for i, c in enumerate(clients):
                c.send({"action": "join_or_create", "room": room_type,
                        "options": {"key": f"k{i // a.room_size}"}})
                joined = c.until("joined")
                c.room = joined["room_id"]

        def rooms_of() -> list[list[Client]]:
            by: dict[str, list[Client]] = {}
            for c in clients:
                by.setdefault(c.room, []).append(c)
            return list(by.values())

        def act_one_at_a_time() -> None:
            groups = rooms_of()
            for n in range(a.actions):
                room = groups[n % len(groups)]
                sender = room[(n // len(groups)) % len(room)]
                sender.send({"action": "move", "c": f"c{n}", "x": 1, "y": 2, "t": n})
                for member in room:
                    member.until("move")

        def act_at_once() -> None:
            for n, c in enumerate(clients):
                c.send({"action": "move", "c": f"b{n}", "x": 1, "y": 2, "t": n})
            for room in rooms_of():
                for member in room:
                    for _ in range(len(room)):
                        member.until("move")

        phases = [phase("connect", connect), phase("join", join),
                  phase("act one at a time", act_one_at_a_time),
                  phase("act all at once", act_at_once)]
        rooms = listing(port, room_type)
        result["rooms_per_node"] = {n: sum(1 for x in rooms if x.get("node") == n) for n in ("A", "B")}
        monitor.close()
        redis.close()
    finally:
        for c in clients:
            c.close()
        procs.stop()
    n_rooms = -(-a.players // a.room_size)
    units = {"connect": a.players, "join": a.players, "act one at a time": a.actions,
             "act all at once": a.players}
    result["method"] = (
        f"2 nodes (A, B) on one redis-server, --placement {PLACEMENT}; {a.players} raw TCP clients "
        f"connect to A, then each sends join_or_create (room key k0..k{n_rooms - 1}, {a.room_size} "
        f"per room) and waits for 'joined' before the next; then {a.actions} moves, one at a time, each "
        f"waiting until all {a.room_size} members got it; then every player sends one move at once. "
        f"Before each phase CONFIG RESETSTAT, after it (+1 s for trailing flushes) INFO commandstats; "
        f"a MONITOR names each EVALSHA's script; the nodes' heartbeats (counted by MONITOR) are taken out "
        f"with the commands per beat measured in a {a.quiet:.0f} s quiet phase.")
    result["per_beat"] = per_beat
    result["phases"] = []
    for p in phases:
        n_beats = p["top_level"].get("evalsha:beat", 0)
        net = {k: v - n_beats * per_beat.get(k, 0) for k, v in p["commands"].items()}
        top = {k: v for k, v in p["top_level"].items() if k != "evalsha:beat"}
        unit = units[p["name"]]
        p["beats"] = n_beats
        p["per_unit"] = {k: round(v / unit, 3) for k, v in sorted(net.items()) if round(v / unit, 3)}
        p["top_level_per_unit"] = {k: round(v / unit, 3) for k, v in sorted(top.items())}
        p["unit"] = unit
        result["phases"].append(p)
    return result


def print_commands(res: dict[str, Any]) -> None:
    print(res["method"])
    print(f"rooms per node at the end: {res['rooms_per_node']}")
    for p in res["phases"]:
        node_cmds = {k: v for k, v in p["per_unit"].items() if k in NODE_COMMANDS}
        inner = {k: v for k, v in p["per_unit"].items() if k not in NODE_COMMANDS}
        print(f"\n{p['name']} ({p['unit']} units, {p['seconds']} s, {p['beats']} heartbeats taken out):")
        print(f"  sent by the nodes, per unit: {node_cmds} = {sum(node_cmds.values()):.2f}")
        print(f"  EVALSHA by script, per unit: "
              f"{ {k: v for k, v in p['top_level_per_unit'].items() if k.startswith('evalsha')} }")
        print(f"  run inside the scripts, per unit: {inner} = {sum(inner.values()):.2f}")


# -- --workers: max sustainable, 1 worker beside 2 --------------------------------------


def workers(a: argparse.Namespace, outdir: Path) -> dict[str, Any]:
    room_type, room_class, adapter = SCENARIOS["relay"]
    ladders = {"custom": a.levels} if a.levels_given else WORKER_LADDERS
    out: dict[str, Any] = {"runs": []}
    for n in (1, 2):
        for ladder, levels in ladders.items():
            for spec in levels.split(","):
                level = parse_level(spec)
                for attempt in range(1 + a.retries):
                    r = worker_level(a, outdir, n, level, spec, ladder, room_type, room_class, adapter)
                    r["attempt"] = attempt
                    if not r.get("others_busy") or attempt == a.retries:
                        break
                    r["discarded"] = True
                    out["runs"].append(r)
                    print(f"--workers {n} {spec}: other tests ran during it: measured again", flush=True)
                out["runs"].append(r)
                print(f"--workers {n} {spec:10s} " + (
                    f"ERROR {r['error'][:120]}" if "error" in r else
                    f"recv={r['deliveries_per_s']:>9,.0f}/s ({r['received_ratio'] * 100:5.1f}%) p50={r['p50_ms']}ms "
                    f"p99={r['p99_ms']}ms CPU {r.get('cpu_pct')} (of 200%) lg={r['loadgen_cpu_pct']}% "
                    f"lgLoopP99={r['loadgen_loop_delay_p99_ms']}ms cpu0={r.get('cpu0_busy_pct')}% "
                    f"cpu1={r.get('cpu1_busy_pct')}% rooms/node={r.get('rooms_per_node')} "
                    f"PUBLISH/move={r.get('publish_per_move')} "
                    f"{'PASS' if r['pass'] else 'FAIL'}"
                    + (" (other tests were running)" if r.get("others_busy") else "")), flush=True)
                if not r["pass"]:
                    break
    best: dict[str, Any] = {}
    for n in (1, 2):
        for ladder in ladders:
            ok = [r for r in out["runs"] if r["workers"] == n and r["ladder"] == ladder and r["pass"]
                  and not r.get("discarded")]
            top = max(ok, key=lambda r: r["offered"]) if ok else None
            best[f"{n}/{ladder}"] = (top["deliveries_per_s"], top["level"]) if top else None
    out["max_sustainable"] = best
    print()
    for ladder in ladders:
        one, two = best.get(f"1/{ladder}"), best.get(f"2/{ladder}")
        ratio = f"{two[0] / one[0]:.2f}×" if one and two else "-"
        print(f"max sustainable {ladder}: --workers 1 {one}, --workers 2 {two}: {ratio} "
              "(load generator on CPU 1 shares the 2 cores with the workers)")
    return out


def worker_level(a: argparse.Namespace, outdir: Path, n: int, level: tuple[int, int, int], spec: str, ladder: str,
                 room_type: str, room_class: str, adapter: str) -> dict[str, Any]:
    """One level against `--workers n` (with --redis), fresh servers."""
    if a.quiet_wait:
        wait_quiet(a.quiet_wait)
    procs = Processes(outdir)
    try:
        redis, rport = start_redis(procs, None)
        port = free_port()
        cmd = gameframe_cmd(a.python, port, f"{room_type}={room_class}", "--redis",
                            f"redis://{HOST}:{rport}/0", "--node", f"w{n}", "--workers", str(n),
                            *a.extra)
        server = procs.start(f"workers{n}", cmd, None, env=env(), cwd=REPO)
        if not wait_port(port):
            raise RuntimeError("the server did not listen")
        time.sleep(3.0)
        pids = {"server": server.pid, "redis": redis.pid}
        r = load(procs, pids, port, rport, room_type, adapter, level, a)
    finally:
        procs.stop()
    r.update(workers=n, ladder=ladder)
    return r


# -- main --------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--commands", action="store_true", help="count Redis commands per join and per action")
    ap.add_argument("--workers", action="store_true", help="--workers 2 beside --workers 1: max sustainable")
    ap.add_argument("--levels", default=None, help="RxPxH,... (default 25x10x10,2x50x10; --workers: "
                                                   "peerbench's P10 and P50 relay ladders)")
    ap.add_argument("--scenarios", default="relay,state")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--quiet-wait", type=float, default=1200,
                    help="before each measured pair, wait up to this many seconds (polling every 30 s) "
                         "until no other pytest/twistd runs; 0: do not wait")
    ap.add_argument("--retries", type=int, default=2,
                    help="measure a pair again (up to N times) when other tests ran during it")
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--players", type=int, default=200)
    ap.add_argument("--room-size", type=int, default=10)
    ap.add_argument("--actions", type=int, default=500)
    ap.add_argument("--quiet", type=float, default=5.0, help="seconds of the heartbeat-only phase")
    ap.add_argument("--python", default=str(REPO / ".venv" / "bin" / "python"))
    ap.add_argument("--outdir", default=str(HERE / "results" / "cluster"))
    ap.add_argument("extra", nargs="*", help="more twistd gameframe options for every server (after --)")
    a = ap.parse_args()
    a.levels_given = a.levels is not None
    a.levels = a.levels or "25x10x10,2x50x10"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.sched_setaffinity(0, {int(LOADGEN_CPU)})  # this driver stays off the servers' core
    outdir = Path(a.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True, cwd=REPO).stdout.strip()
    meta = {"date_utc": stamp, "commit": commit + ("+dirty" if dirty else ""),
            "machine": f"{platform.node()} nproc={os.cpu_count()}", "python": platform.python_version(),
            "argv": sys.argv[1:]}
    print(f"run {stamp} at {meta['commit']}", flush=True)
    if a.commands:
        res = commands(a, outdir)
        print_commands(res)
        name = "commands"
    elif a.workers:
        res = workers(a, outdir)
        name = "workers"
    else:
        res = compare(a, outdir)
        print_table(res["table"])
        name = "compare"
    res.update(meta)
    path = outdir / f"{name}-{stamp}.json"
    path.write_text(json.dumps(res, indent=1))
    (outdir / f"{name}-latest.json").write_text(json.dumps(res, indent=1))
    print(f"\nraw results: {path}")


if __name__ == "__main__":
    main()
