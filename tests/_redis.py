"""
A real redis-server for the tests: started on a free port of 127.0.0.1 with
no persistence, waited for with a bounded connect-retry, stopped by its PID.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import attrs
import pytest

from tests._server import HOST, free_port

START_TIMEOUT = 10.0


def redis_server_binary() -> str:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if found is None:
        pytest.fail(
            "redis-server is missing: the cluster tests need a real Redis. Install it with: "
            "apt-get update && apt-get install -y --no-install-recommends redis-server",
            pytrace=False,
        )
    return found


@attrs.define
class RunningRedis:
    """One redis-server subprocess; L{restart} plays Redis going away and coming back empty."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        log = open(self.directory / f"redis-{self.port}.log", "ab")
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port", str(self.port),
                "--bind", HOST,
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                "--dir", str(self.directory),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with socket.create_connection((HOST, self.port), timeout=1.0) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"redis-server did not start on {self.port}")
            try:
                # Pauses between tries, and notices a server that exited.
                self.process.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                continue
            self.stop()
            raise AssertionError(f"redis-server exited at start on {self.port}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    def restart(self) -> None:
        """Stop it (everything it held is lost) and start it again on the same port."""
        self.stop()
        self.start()

    def command(self, *args: str) -> bytes:
        """One raw command (inline protocol); the raw reply, for checks in tests."""
        with socket.create_connection((HOST, self.port), timeout=5.0) as sock:
            sock.sendall(" ".join(args).encode() + b"\r\n")
            return sock.recv(1 << 20)


@contextlib.contextmanager
def running_redis(directory: Path) -> Iterator[RunningRedis]:
    redis = RunningRedis(port=free_port(), directory=directory)
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()
