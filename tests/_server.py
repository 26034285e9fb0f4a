"""Run a real gameframe server (`twistd -n gameframe`) in a subprocess for client tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import attrs
import pytest

from gameframe.tap import Options

HOST = "127.0.0.1"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port nothing listens on right now (bind port 0, read it, close)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _twistd() -> str:
    beside = Path(sys.executable).with_name("twistd")
    if beside.exists():
        return str(beside)
    found = shutil.which("twistd")
    assert found is not None, "twistd is not installed"
    return found


def _has_web_option() -> bool:
    """Whether this gameframe's twistd plugin has --web (which defaults to on)."""
    return any(spec[0] == "web" for spec in Options.optParameters)


@attrs.define
class ServerProcess:
    """A running `twistd -n gameframe` on 127.0.0.1."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _wait_until_listening(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """Retry connecting (bounded) until the server accepts, or fail with its log."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=1.0):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the server did not listen on {port} in time:\n{log.read_text()}"
            )
        try:
            # Waits a little between tries, and notices a server that died.
            process.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        raise AssertionError(
            f"the server exited with {process.returncode}:\n{log.read_text()}"
        )


def start_server(directory: Path) -> ServerProcess:
    """Start `twistd -n gameframe` with the demo rooms on a free port."""
    port = free_port()
    log = directory / "twistd.log"
    command = [
        _twistd(),
        "-n",
        "--pidfile=",
        f"--logfile={log}",
        "gameframe",
        "--port",
        f"tcp:{port}:interface={HOST}",
    ]
    if _has_web_option():
        command += ["--web", "none"]
    process = subprocess.Popen(
        command,
        cwd=directory,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_until_listening(process, port, log)
    except BaseException:
        stop_server(ServerProcess(process, port, log))
        raise
    return ServerProcess(process, port, log)


def stop_server(server: ServerProcess) -> None:
    """Stop the server: SIGTERM (twistd shuts down in order), then SIGKILL if stuck."""
    process = server.process
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real gameframe server for the tests of one module."""
    running = start_server(tmp_path_factory.mktemp("server"))
    try:
        yield running
    finally:
        stop_server(running)
