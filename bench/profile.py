"""Profile gameframe's hot path under a peerbench load level with py-spy.

    python bench/profile.py [relay|state|state-compact|ws] [--level 50x10x10] [--seconds 8] [-- extra twistd options]

Starts the bench server pinned to CPU 0 and one peerbench load level on CPU 1,
samples the server with py-spy (`pip install py-spy`), and prints where the busy time
goes (time the reactor spends waiting in epoll is left out). Stops by itself.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PEERBENCH = Path(os.environ.get("PEERBENCH", REPO.parent / "shared" / "peerbench"))
SCENARIOS = {
    "relay": ("relay=bench.rooms:RelayRoom", "adapter-tcp.js"),
    "state": ("state=bench.rooms:StateRoom", "adapter-state.js"),
    "state-compact": ("state=bench.rooms:StateRoom", "adapter-state-compact.js"),
    "ws": ("relay=bench.rooms:RelayRoom", "adapter-ws.js"),
}
IDLE = "EPollReactor.doPoll (twisted/internet/epollreactor.py:227)"  # waiting, not working


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", nargs="?", default="relay", choices=SCENARIOS)
    ap.add_argument("--level", default="50x10x10", help="RxPxH")
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--port", type=int, default=9197)
    ap.add_argument("--python", default=str(REPO / ".venv" / "bin" / "python"))
    ap.add_argument("extra", nargs="*", help="more twistd gameframe options")
    a = ap.parse_args()
    room, adapter = SCENARIOS[a.scenario]
    rooms, players, hz = a.level.split("x")
    bindir = Path(a.python).parent
    listen = f"tcp:{a.port}:interface=127.0.0.1"
    if a.scenario == "ws":
        endpoints = ["--port", "tcp:0:interface=127.0.0.1", "--web", listen]
    else:
        endpoints = ["--web", "none", "--port", listen]
    server = subprocess.Popen(
        ["taskset", "-c", "0", str(bindir / "twistd"), "-n", "--pidfile=", "--logfile=/dev/null",
         "gameframe", *endpoints, "--room", room, *a.extra],
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    raw = Path(tempfile.mkdtemp()) / "profile.txt"
    try:
        time.sleep(2)
        load = subprocess.Popen(
            ["taskset", "-c", "1", "node", "loadgen/loadgen.js", "--adapter", str(HERE / adapter),
             "--port", str(a.port), "--rooms", rooms, "--players", players, "--hz", hz,
             "--warmup", "3", "--duration", str(a.seconds + 4), "--server-pid", str(server.pid)],
            cwd=PEERBENCH, stdout=subprocess.DEVNULL,
        )
        time.sleep(5)
        subprocess.run(
            [str(bindir / "py-spy"), "record", "-p", str(server.pid), "-d", str(int(a.seconds)),
             "-r", "200", "-f", "raw", "-o", str(raw), "--nonblocking"],
            check=True, capture_output=True,
        )
        load.wait(timeout=60)
    finally:
        server.terminate()
        server.wait(timeout=10)
    report(raw)


def report(raw: Path) -> None:
    own: collections.Counter[str] = collections.Counter()
    within: collections.Counter[str] = collections.Counter()
    busy = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if frames[-1] == IDLE:
            continue
        n = int(count)
        busy += n
        own[frames[-1]] += n
        for frame in set(frames):
            within[frame] += n
    print(f"{busy} busy samples")
    print("\nself time (where the CPU is):")
    for frame, n in own.most_common(15):
        print(f"  {n / busy * 100:5.1f}%  {frame}")
    print("\ninclusive, gameframe frames:")
    for frame, n in within.most_common():
        if "gameframe/" in frame and n / busy >= 0.02:
            print(f"  {n / busy * 100:5.1f}%  {frame}")


if __name__ == "__main__":
    sys.exit(main())
