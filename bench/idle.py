"""Idle connections: memory per connection and CPU of an idle server, gameframe beside asyncio-seed.

    python bench/idle.py [--clients 10000] [--settle 5] [--window 10]

Starts each server pinned to CPU 0 on 127.0.0.1, opens the connections from this
process (CPU 1), joins them into rooms of 10, waits, then reads the server's RSS and
CPU time from /proc. Prints both servers and the ratio. Every run stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PEERBENCH = Path(os.environ.get("PEERBENCH", REPO.parent / "shared" / "peerbench"))


def servers(python: str) -> dict[str, tuple[list[str], str]]:
    twistd = str(Path(python).with_name("twistd"))
    return {
        "gameframe": (
            [twistd, "-n", "--pidfile=", "--logfile=/dev/null", "gameframe", "--web", "none",
             "--port", "tcp:{port}:interface=127.0.0.1", "--room", "relay=bench.rooms:RelayRoom"],
            '{{"action":"join_or_create","room":"relay","options":{{"key":"r{room}"}}}}\n',
        ),
        "asyncio-seed": (
            [sys.executable, str(PEERBENCH / "servers" / "asyncio_seed.py"), "{port}"],
            '{{"action":"join","room":"r{room}"}}\n',
        ),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_stat(pid: int) -> tuple[int, int]:
    """(utime + stime in clock ticks, RSS in KiB)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    rss = next(
        int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    return ticks, rss


def wait_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def measure(name: str, command: list[str], join: str, clients: int, settle: float,
            window: float) -> dict[str, object]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        ["taskset", "-c", "0", *[c.format(port=port) for c in command]],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    sockets: list[socket.socket] = []
    try:
        wait_port(port, time.monotonic() + 20)
        time.sleep(1)
        _, rss_before = proc_stat(proc.pid)
        selector = selectors.DefaultSelector()
        for i in range(clients):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(join.format(room=i // 10).encode())
            s.setblocking(False)
            selector.register(s, selectors.EVENT_READ)
            sockets.append(s)
        # Drain the welcome/joined replies so nothing waits in the server's buffers.
        joined: set[int] = set()
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.2):
                try:
                    if b'"joined"' in key.fileobj.recv(65536):  # type: ignore[union-attr]
                        joined.add(key.fd)
                except BlockingIOError:
                    pass
        ticks0, rss_after = proc_stat(proc.pid)
        t0 = time.monotonic()
        time.sleep(window)
        ticks1, _ = proc_stat(proc.pid)
        elapsed = time.monotonic() - t0
        cpu_pct = (ticks1 - ticks0) / os.sysconf("SC_CLK_TCK") / elapsed * 100
        return {
            "server": name,
            "clients": clients,
            "alive": proc.poll() is None,
            "joined_replies": len(joined),
            "rss_before_mb": round(rss_before / 1024, 1),
            "rss_after_mb": round(rss_after / 1024, 1),
            "kib_per_conn": round((rss_after - rss_before) / clients, 2),
            "idle_cpu_pct": round(cpu_pct, 2),
        }
    finally:
        for s in sockets:
            s.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=10_000)
    ap.add_argument("--settle", type=float, default=5.0, help="seconds to let the joins finish")
    ap.add_argument("--window", type=float, default=10.0, help="seconds of idle CPU measured")
    ap.add_argument("--python", default=str(REPO / ".venv" / "bin" / "python"),
                    help="the venv's python whose twistd runs gameframe")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, a.clients + 1000), hard))
    results = [
        measure(name, command, join, a.clients, a.settle, a.window)
        for name, (command, join) in servers(a.python).items()
    ]
    for r in results:
        print(json.dumps(r))
    mine, seed = results
    print(f"gameframe {mine['kib_per_conn']} KiB/conn vs asyncio-seed {seed['kib_per_conn']} "
          f"({float(mine['kib_per_conn']) / max(float(seed['kib_per_conn']), 0.01):.2f}x); "
          f"idle CPU {mine['idle_cpu_pct']}% vs {seed['idle_cpu_pct']}% at {a.clients} connections")


if __name__ == "__main__":
    main()
