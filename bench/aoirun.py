"""The runner of bench/aoi.py's scenario: a real server, gameframe-loadtest, a measured window, a report (see bench/aoi.py)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import attrs

from bench import liveserver
from bench.aoi import SIGHT, field_size

HTTP_TIMEOUT = 10.0
STOP_TIMEOUT = 60.0


def http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as reply:
        data: bytes = reply.read()
        return data


def metrics(web: int) -> dict[str, float]:
    """The server's own series of /metrics (node label dropped; first value per name and code)."""
    found: dict[str, float] = {}
    for line in http_get(f"http://127.0.0.1:{web}/metrics").decode().splitlines():
        if not line.startswith("gameframe_"):
            continue
        name, _, value = line.rpartition(" ")
        bare = name.split("{", 1)[0]
        if "code=" in name:
            bare += "/" + name.split('code="', 1)[1].split('"', 1)[0]
        elif 'le="' in name:
            continue
        found.setdefault(bare, float(value))
    return found


def crowd(web: int) -> dict[str, Any] | None:
    """The crowd room as GET /rooms lists it (None: not there)."""
    rooms = json.loads(http_get(f"http://127.0.0.1:{web}/rooms"))["rooms"]
    for room in rooms:
        if room["room"] == "crowd":
            found: dict[str, Any] = room
            return found
    return None


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / liveserver.CLOCK_TICKS


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return sorted(found)


def machine_busy() -> float:
    """CPU seconds every core of this machine has been busy (not idle nor iowait), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / liveserver.CLOCK_TICKS


@attrs.frozen
class Sample:
    at: float
    busy: float
    server_cpu: float
    loadgen_cpu: dict[int, float]
    metrics: dict[str, float]


def sample(server: liveserver.LiveServer, web: int, loadgen: int) -> Sample:
    pids = [loadgen, *children(loadgen)]
    cpu = {}
    for pid in pids:
        try:
            cpu[pid] = cpu_seconds(pid)
        except OSError:
            pass
    return Sample(time.monotonic(), machine_busy(), cpu_seconds(server.pid), cpu, metrics(web))


def report(a: argparse.Namespace, first: Sample, last: Sample, room: dict[str, Any],
           summary: dict[str, Any], alive: bool, log: str) -> dict[str, Any]:
    seconds = last.at - first.at

    def rate(name: str) -> float:
        return (last.metrics.get(name, 0.0) - first.metrics.get(name, 0.0)) / seconds

    players = room["players"]
    patches = rate("gameframe_patch_bytes_count")
    measures = summary.get("measures_ms", {})
    return {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python -m bench.aoi " + " ".join(sys.argv[1:]),
        "players": a.players,
        "players_in": players,
        "npcs": a.npcs,
        "rate": a.rate,
        "field": round(field_size(a.npcs + a.players, a.in_sight), 1),
        "sight": SIGHT,
        "cell": a.cell or SIGHT,
        "in_sight": room.get("metadata", {}).get("in_sight"),
        "window_s": round(seconds, 2),
        "ticks_per_s": round(rate("gameframe_tick_seconds_count"), 2),
        "tick_overruns_per_s": round(rate("gameframe_tick_overruns_total"), 2),
        "on_tick_cpu": round(rate("gameframe_tick_seconds_sum"), 3),
        "patch_rounds_per_s": round(patches / players, 2) if players else None,
        "patch_bytes_mean": round(rate("gameframe_patch_bytes_sum") / patches) if patches else None,
        "bytes_per_player_s": round(rate("gameframe_bytes_sent_total") / players) if players else None,
        "server_cpu": round((last.server_cpu - first.server_cpu) / seconds, 3),
        # CPU per tick (simulation, patches, and the moves between): what 20 a second must fit in 50 ms.
        "server_cpu_ms_per_tick": round(
            (last.server_cpu - first.server_cpu) * 1000
            / max(1.0, last.metrics.get("gameframe_tick_seconds_count", 0.0)
                  - first.metrics.get("gameframe_tick_seconds_count", 0.0)), 1),
        "loadgen_cpu": [
            round((last.loadgen_cpu[pid] - first.loadgen_cpu.get(pid, 0.0)) / seconds, 3)
            for pid in sorted(last.loadgen_cpu)
        ],
        # The other helpers' and processes' CPU on this 2-core machine meanwhile.
        "others_cpu": round(
            (last.busy - first.busy - (last.server_cpu - first.server_cpu)
             - sum(last.loadgen_cpu[p] - first.loadgen_cpu.get(p, 0.0) for p in last.loadgen_cpu))
            / seconds, 2),
        "patch_delay_ms": measures.get("patch_delay"),
        "patch_gap_ms": measures.get("patch_gap"),
        "move_rtt_ms": summary.get("latency_ms"),
        "connections": summary.get("connections"),
        "errors": summary.get("errors"),
        "disconnects": summary.get("disconnects"),
        "server_alive": alive,
        "server_tracebacks": log.count("Traceback"),
    }


def row(r: dict[str, Any]) -> str:
    def ms(measure: dict[str, Any] | None, key: str) -> str:
        value = (measure or {}).get(key)
        return "-" if value is None else f"{value:,.1f}"

    delay, gap = r["patch_delay_ms"], r["patch_gap_ms"]
    loadgen = " + ".join(f"{c:.0%}" for c in r["loadgen_cpu"])
    return (
        f"| {r['players_in']:,}/{r['players']:,} | {r['npcs']:,} | {r['in_sight']} | "
        f"{r['ticks_per_s']:.1f} | {r['patch_rounds_per_s']} | {r['server_cpu']:.0%} | "
        f"{r['server_cpu_ms_per_tick']} | {r['on_tick_cpu']:.0%} | {ms(delay, 'p50')} / {ms(delay, 'p99')} / {ms(delay, 'max')} | "
        f"{ms(gap, 'p50')} / {ms(gap, 'p99')} | {ms(r['move_rtt_ms'], 'p99')} | "
        f"{(r['bytes_per_player_s'] or 0) / 1000:,.1f} | {loadgen} |"
    )


HEADER = (
    "| players in | NPCs | in sight | ticks/s | patches/s each | server CPU | CPU ms per tick | on_tick | "
    "patch delay p50 / p99 / max (ms) | gap p50 / p99 (ms) | move RTT p99 (ms) | "
    "kB/s each | load generator CPU |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=(__import__("bench.aoi").aoi.__doc__ or ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--players", type=int, default=1000)
    ap.add_argument("--npcs", type=int, default=10_000)
    ap.add_argument("--rate", type=float, default=20.0, help="ticks and patches a second")
    ap.add_argument("--in-sight", type=float, default=75.0, help="entities in sight, on average")
    ap.add_argument("--hold", type=float, default=60.0, help="seconds measured once all are in")
    ap.add_argument("--ramp", type=float, default=None, help="seconds to connect the players "
                    "(default: players / 20, at least 2, at most 60)")
    ap.add_argument("--cell", type=float, default=None,
                    help="the interest grid's cell size (default: the sight radius, 100)")
    ap.add_argument("--processes", type=int, default=2, help="load generator processes")
    ap.add_argument("--interval", type=float, default=0.25, help="seconds between moves")
    ap.add_argument("--join-timeout", type=float, default=120.0)
    ap.add_argument("--server-cpu", default="0")
    ap.add_argument("--client-cpu", default="1")
    ap.add_argument("--profile", metavar="FILE", help="run the server under cProfile, stats to FILE")
    ap.add_argument("--py-spy", metavar="FILE", dest="py_spy",
                    help="sample the server with py-spy (next to this python) during the window, "
                    "on the load generator's CPU; collapsed stacks to FILE")
    ap.add_argument("--json", action="store_true", help="also print the whole record as JSON")
    ap.add_argument("--python", default=liveserver.default_python())
    a = ap.parse_args()
    ramp = a.ramp if a.ramp is not None else min(60.0, max(2.0, a.players / 20))
    liveserver.raise_fd_limit(a.players + 512)
    workdir = Path(tempfile.mkdtemp(prefix="gameframe-aoi-"))
    web = liveserver.free_port()
    if a.cell:
        os.environ["BENCH_AOI_CELL"] = str(a.cell)  # the server's environment
    options = ["--profile", str(Path(a.profile).resolve()), "--profiler", "cprofile",
               "--savestats"] if a.profile else []
    server = liveserver.start(
        a.python,
        ["--room", "crowd=bench.aoi:Crowd", "--web", f"tcp:{web}:interface=127.0.0.1",
         "--max-connections", str(a.players + 100)],
        workdir / "server.log", cpu=a.server_cpu, twistd_options=options,
    )
    loadtest: subprocess.Popen[bytes] | None = None
    spy: subprocess.Popen[bytes] | None = None
    summary_file = workdir / "loadtest.json"
    try:
        command = [
            str(Path(a.python).with_name("gameframe-loadtest")),
            "--url", f"tcp://127.0.0.1:{server.port}", "--room", "crowd",
            "--room-options", json.dumps({"npcs": a.npcs, "players": a.players, "rate": a.rate,
                                          "in_sight": a.in_sight}),
            "--players", str(a.players), "--rooms", "1", "--processes", str(a.processes),
            "--player", "bench.aoi:Walker",
            "--interval", str(a.interval), "--seed", "1",
            "--duration", str(ramp + a.join_timeout + a.hold + 30), "--ramp", str(ramp),
            "--connect-timeout", "60", "--request-timeout", "30", "--no-display", "--json", str(summary_file),
        ]
        if a.client_cpu and shutil.which("taskset"):
            command = ["taskset", "-c", a.client_cpu, *command]
        loadtest = subprocess.Popen(
            command, cwd=liveserver.REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=(workdir / "loadtest.log").open("wb"),
            env={**os.environ, "PYTHONPATH": str(liveserver.REPO)},
        )
        deadline = time.monotonic() + ramp + a.join_timeout
        room = None
        while time.monotonic() < deadline and loadtest.poll() is None and server.alive():
            room = crowd(web)
            if room is not None and room.get("metadata", {}).get("measuring"):
                break
            time.sleep(0.5)
        else:
            print(f"# the room did not settle: {room and room['players']} players in", file=sys.stderr)
        time.sleep(2.0)  # the last joiners' full states go out
        if a.py_spy:
            spy = subprocess.Popen(
                ["taskset", "-c", a.client_cpu, str(Path(a.python).with_name("py-spy")), "record",
                 "--pid", str(server.pid), "--rate", "100", "--duration", str(int(a.hold)),
                 "--nonblocking", "--format", "raw", "--output", str(Path(a.py_spy).resolve())],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=(workdir / "py-spy.log").open("wb"),
            )
        first = sample(server, web, loadtest.pid)
        print(f"# measuring {a.hold:g} s ({room and room['players']} players in)", file=sys.stderr)
        time.sleep(a.hold)
        last = sample(server, web, loadtest.pid)
        if spy is not None:
            try:
                spy.wait(timeout=30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait(timeout=10)
        room = crowd(web) or {"players": 0}
        loadtest.send_signal(signal.SIGINT)  # its players leave in order
        try:
            loadtest.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            loadtest.kill()
            loadtest.wait(timeout=10)
        alive = server.alive()
    finally:
        if spy is not None and spy.poll() is None:
            spy.kill()
            spy.wait(timeout=10)
        if loadtest is not None and loadtest.poll() is None:
            loadtest.kill()
            loadtest.wait(timeout=10)
        server.stop()
    log = server.log_since(0)
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    record = report(a, first, last, room, summary, alive, log)
    print(f"\n## Area of interest ({record['date_utc']}): `{record['command']}`\n")
    print(HEADER)
    print(row(record))
    print(f"\nfield {record['field']:,} x {record['field']:,}, sight {SIGHT:g}, cell {record['cell']:g}; window "
          f"{record['window_s']} s; tick overruns {record['tick_overruns_per_s']}/s; mean patch "
          f"{record['patch_bytes_mean']} B; other processes' CPU {record['others_cpu']:.0%}; errors {record['errors']}; disconnects "
          f"{record['disconnects']}; server tracebacks {record['server_tracebacks']}")
    if a.json:
        print(json.dumps(record, indent=1))
    print(f"# logs in {workdir}", file=sys.stderr)
    return 0 if alive else 1
