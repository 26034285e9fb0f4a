"""A real `twistd -n gameframe` for the abuse and soak benches: started on a free port, sampled through /proc, stopped by its PID."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import attrs

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port of 127.0.0.1 nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def twistd(python: str) -> str:
    """The twistd next to C{python} (the venv's)."""
    found = Path(python).with_name("twistd")
    if not found.exists():
        raise SystemExit(f"no twistd next to {python}")
    return str(found)


def supported_options(python: str) -> set[str]:
    """The long options `twistd gameframe --help` lists (to pass only those that exist)."""
    out = subprocess.run(
        [twistd(python), "gameframe", "--help"], capture_output=True, text=True, timeout=60,
        cwd=REPO,
    ).stdout
    found = set()
    for word in out.split():
        if word.startswith("--"):
            found.add(word.split("=", 1)[0].rstrip(","))
    return found


@attrs.frozen
class Sample:
    """One reading of the server process: CPU seconds used so far and resident memory."""

    at: float
    cpu_s: float
    rss_kib: int


@attrs.define
class LiveServer:
    """
    A `twistd -n gameframe` subprocess on C{port} of 127.0.0.1, its output
    (the log) in C{log}. Always L{stop} it (a C{finally}): it is killed by
    its PID, nothing else.
    """

    process: subprocess.Popen[bytes]
    port: int
    log: Path
    cpu: str | None
    _output: IO[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def sample(self) -> Sample:
        """CPU time (utime + stime) and VmRSS, from /proc/PID/stat and /proc/PID/status."""
        pid = self.process.pid
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu_s = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        rss = 0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
                break
        return Sample(time.monotonic(), cpu_s, rss)

    def log_size(self) -> int:
        self._output.flush()
        return self.log.stat().st_size if self.log.exists() else 0

    def log_since(self, offset: int) -> str:
        """The log written after byte C{offset}."""
        with self.log.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def stop(self) -> int | None:
        """SIGTERM (twistd shuts down in order), SIGKILL if stuck; the exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT)
        self._output.close()
        return self.process.returncode


def start(
    python: str, args: list[str], log: Path, cwd: Path = REPO, cpu: str | None = "0",
    twistd_options: list[str] | None = None,
) -> LiveServer:
    """
    Start `twistd -n [TWISTD_OPTIONS] gameframe ARGS` on a free port of
    127.0.0.1 (no web endpoint unless ARGS has one), pinned to C{cpu} with
    taskset when there is one; return once it listens.
    """
    port = free_port()
    command = [
        twistd(python), "-n", "--pidfile=", *(twistd_options or []), "gameframe",
        "--port", f"tcp:{port}:interface={HOST}", *args,
    ]  # fmt: skip
    if "--web" not in args:
        command += ["--web", "none"]
    if cpu is not None and shutil.which("taskset"):
        command = ["taskset", "-c", cpu, *command]
    else:
        cpu = None
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
    output = log.open("wb")
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=output,
        stderr=subprocess.STDOUT,
    )
    server = LiveServer(process, port, log, cpu, output)
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while True:
            try:
                with socket.create_connection((HOST, port), timeout=1.0):
                    break
            except OSError:
                pass
            if process.poll() is not None:
                raise SystemExit(f"the server exited with {process.returncode}:\n"
                                 + log.read_text(errors="replace"))
            if time.monotonic() > deadline:
                raise SystemExit(f"the server did not listen within {START_TIMEOUT} s")
            time.sleep(0.1)
    except BaseException:
        server.stop()
        raise
    return server


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's open-file limit toward C{wanted} (at most the hard limit)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def default_python() -> str:
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable
