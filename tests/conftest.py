"""Shared fixtures: a real `twistd -n gameframe` subprocess on 127.0.0.1 (TCP and web)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import attrs
import pytest

HOST = "127.0.0.1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port nothing listens on right now (bind port 0, read it, close)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@attrs.frozen
class RunningServer:
    """A `twistd -n gameframe` subprocess: players on C{port}, HTTP/WebSocket on C{web_port}."""

    process: subprocess.Popen[bytes]
    port: int
    web_port: int
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.web_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.web_port}/ws"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _wait_for_port(server: RunningServer, port: int, deadline: float) -> None:
    """Retry connecting until C{port} accepts (bounded); fail with the log if the server died."""
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=1.0):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the server did not listen on {port} within {START_TIMEOUT} s:\n"
                + server.log_text()
            )
        try:
            # Pauses between tries, and notices a server that exited.
            server.process.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        raise AssertionError(
            f"the server exited with {server.process.returncode}:\n{server.log_text()}"
        )


def start_server(directory: Path, *args: str) -> RunningServer:
    """Start `twistd -n gameframe` (twistd from this interpreter's venv) on free ports."""
    port, web_port = free_port(), free_port()
    log = directory / "twistd.log"
    command = [
        str(Path(sys.executable).with_name("twistd")),
        "-n",
        "--pidfile=",
        f"--logfile={log}",
        "gameframe",
        "--port",
        f"tcp:{port}:interface={HOST}",
        "--web",
        f"tcp:{web_port}:interface={HOST}",
        *args,
    ]
    process = subprocess.Popen(
        command,
        cwd=directory,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    server = RunningServer(process, port, web_port, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        _wait_for_port(server, port, deadline)
        _wait_for_port(server, web_port, deadline)
    except BaseException:
        stop_server(server)
        raise
    return server


def stop_server(server: RunningServer) -> None:
    """SIGTERM (twistd shuts down in order), then SIGKILL if it is stuck."""
    process = server.process
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)


@pytest.fixture(scope="module")
def gameframe_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A real gameframe server with the demo rooms, for the tests of one module."""
    server = start_server(tmp_path_factory.mktemp("gameframe-server"))
    try:
        yield server
    finally:
        stop_server(server)
