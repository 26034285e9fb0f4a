"""Start the real `twistd gameframe` on 127.0.0.1 for integration tests, and stop it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import attrs

TWISTD = str(Path(sys.executable).with_name("twistd"))
START_TIMEOUT = 20.0


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], deadline: float) -> None:
    """Retry connecting until the server listens (bounded; fails if it died)."""
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"twistd exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing listens on port {port}") from None
            # Wait for the child to change state rather than sleeping blindly.
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.05)


@attrs.frozen
class Server:
    port: int
    web_port: int
    process: subprocess.Popen[bytes]
    log: Path


@contextlib.contextmanager
def running_server(*args: str, web: bool = True) -> Iterator[Server]:
    """
    `twistd -n gameframe` on free ports of 127.0.0.1 (TCP, and the web
    endpoint unless C{web} is false), run from an empty directory so the
    plugin is found the way a user's install finds it.
    """
    port, web_port = free_port(), free_port()
    workdir = tempfile.mkdtemp(prefix="gameframe-test-")
    log = Path(workdir, "twistd.log")
    command = [
        TWISTD, "-n", "--pidfile=", "--logfile", str(log), "gameframe",
        "--port", f"tcp:{port}:interface=127.0.0.1",
        "--web", f"tcp:{web_port}:interface=127.0.0.1" if web else "none",
        *args,
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        wait_for_port(port, proc, deadline)
        if web:
            wait_for_port(web_port, proc, deadline)
        yield Server(port, web_port, proc, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
