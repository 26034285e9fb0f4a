"""
The one way the tests run a real gameframe server: `twistd -n gameframe` in
a subprocess, on free ports of 127.0.0.1, waited for with a bounded
connect-retry and stopped with SIGTERM (SIGKILL if it is stuck); and a raw
JSON Lines player to speak to it.

The fixtures built on it are in tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import attrs

HOST = "127.0.0.1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
CLIENT_TIMEOUT = 10.0


# Every port free_port has handed out in this test run: the kernel may give the
# same free port to two binds in a row (a server's --port and --web, say).
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """
    A TCP port nothing listens on right now (bind port 0, read it, close),
    and one this test run has not handed out before.
    """
    while True:
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            port: int = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def twistd() -> str:
    """The twistd of the Python running the tests (the venv's)."""
    found = Path(sys.executable).with_name("twistd")
    assert found.exists(), f"no twistd next to {sys.executable}"
    return str(found)


def twistd_env() -> dict[str, str]:
    """
    The environment for twistd: without PYTHONPATH, so the plugin is found
    the way a user's install finds it, and with unbuffered output.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)
    return env


@attrs.frozen
class RunningServer:
    """
    A `twistd -n gameframe` subprocess: players on C{port}, HTTP/WebSocket
    on C{web_port} (L{None} when started without the web endpoint); its
    output, log included, in C{log}.
    """

    process: subprocess.Popen[bytes]
    port: int
    web_port: int | None
    log: Path

    @property
    def base_url(self) -> str:
        assert self.web_port is not None, "the server has no web endpoint"
        return f"http://{HOST}:{self.web_port}"

    @property
    def ws_url(self) -> str:
        assert self.web_port is not None, "the server has no web endpoint"
        return f"ws://{HOST}:{self.web_port}/ws"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def connect(self) -> LineClient:
        """A raw JSON Lines player connected to C{port}, its C{welcome} read."""
        return LineClient(self.port)


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


def start_server(directory: Path, *args: str, web: bool = True) -> RunningServer:
    """
    Start `twistd -n gameframe` (the demo rooms, plus C{args}) in C{directory}
    on free ports, the web endpoint unless C{web} is false; return once it
    listens.
    """
    port = free_port()
    web_port = free_port() if web else None
    web_endpoint = "none" if web_port is None else f"tcp:{web_port}:interface={HOST}"
    return start_server_at(
        directory, f"tcp:{port}:interface={HOST}", port, web_endpoint, web_port, *args
    )


def stop_process(process: subprocess.Popen[bytes]) -> int:
    """
    SIGTERM (twistd shuts down in order), then SIGKILL if it is stuck;
    the exit status. Does nothing to a process that has already exited.
    """
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)
    return process.returncode


@contextlib.contextmanager
def running_server(directory: Path, *args: str, web: bool = True) -> Iterator[RunningServer]:
    """L{start_server}, stopped at the end of the block."""
    server = start_server(directory, *args, web=web)
    try:
        yield server
    finally:
        stop_process(server.process)


class LineClient:
    """
    A raw TCP client speaking JSON Lines, as a player in any language would;
    a read that waits more than C{CLIENT_TIMEOUT} raises C{socket.timeout}.
    """

    def __init__(self, port: int) -> None:
        self.sock = self._connect(port)
        self.buffer = b""
        self.unread: list[dict[str, Any]] = []
        self.welcome = self.expect("welcome")
        self.player_id: str = self.welcome["player_id"]
        self._ids = 0

    def _connect(self, port: int) -> socket.socket:
        return socket.create_connection((HOST, port), timeout=CLIENT_TIMEOUT)

    def close(self) -> None:
        self.sock.close()

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, **message: Any) -> None:
        self.write(json.dumps(message).encode() + b"\n")

    def _line(self) -> bytes | None:
        """The next line, or None at EOF; socket.timeout if nothing comes."""
        while b"\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line

    def receive(self) -> dict[str, Any]:
        if self.unread:
            return self.unread.pop(0)
        line = self._line()
        assert line is not None, "the server closed the connection"
        message = json.loads(line)
        assert isinstance(message, dict)
        return message

    def expect(self, action: str, **fields: Any) -> dict[str, Any]:
        """Read until a message with this action (and these fields); keep the others."""
        skipped: list[dict[str, Any]] = []
        try:
            while True:
                message = self.receive()
                if message["action"] == action and all(
                    message.get(k) == v for k, v in fields.items()
                ):
                    return message
                skipped.append(message)
        finally:
            self.unread = skipped + self.unread

    def request(self, action: str, **fields: Any) -> dict[str, Any]:
        """Send with a fresh id; the reply echoing it."""
        self._ids += 1
        request_id = f"r{self._ids}"
        self.send(action=action, id=request_id, **fields)
        skipped: list[dict[str, Any]] = []
        while True:
            message = self.receive()
            if message.get("id") == request_id:
                self.unread = skipped + self.unread
                return message
            skipped.append(message)

    def assert_closed(self) -> None:
        """The server closes the connection (EOF) after anything already sent."""
        while True:
            line = self._line()
            if line is None:
                return


class TlsLineClient(LineClient):
    """A L{LineClient} over TLS, verifying the server with C{context}."""

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__(port)

    def _connect(self, port: int) -> socket.socket:
        raw = socket.create_connection((HOST, port), timeout=CLIENT_TIMEOUT)
        try:
            return self._context.wrap_socket(raw, server_hostname=HOST)
        except BaseException:
            raw.close()
            raise


def twistd_command(*args: str) -> list[str]:
    """`twistd -n gameframe ARGS` (no PID file)."""
    return [twistd(), "-n", "--pidfile=", "gameframe", *args]


def run_twistd(directory: Path, *args: str, timeout: float = START_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """
    Run `twistd -n gameframe ARGS` in C{directory} to its end (it is expected
    to fail to start): its exit status, stdout (the log) and stderr. Killed
    if it is still running after C{timeout}.
    """
    process = subprocess.Popen(
        twistd_command(*args),
        cwd=directory,
        env=twistd_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate(timeout=STOP_TIMEOUT)
        raise AssertionError(f"twistd {args} was still running after {timeout} s:\n{out}{err}")
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def start_server_at(
    directory: Path, port_endpoint: str, port: int, web_endpoint: str, web_port: int | None, *args: str
) -> RunningServer:
    """
    Like L{start_server}, with the endpoint strings given (TLS, say):
    C{port} and C{web_port} are the TCP ports they listen on, waited for.
    """
    log = directory / f"twistd-{port}.log"
    command = twistd_command("--port", port_endpoint, "--web", web_endpoint, *args)
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=directory,
            env=twistd_env(),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = RunningServer(process, port, web_port, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        for listening in (port, web_port):
            if listening is not None:
                _wait_for_port(server, listening, deadline)
    except BaseException:
        stop_process(process)
        raise
    return server


def poll(
    server: RunningServer, what: str, condition: Callable[[], Any], timeout: float = START_TIMEOUT
) -> Any:
    """Check C{condition} until it is true (bounded), failing with the server's log; its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s:\n{server.log_text()}")
        try:
            # Pauses between checks, and notices a server that exited.
            server.process.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        value = condition()
        if value:
            return value
        raise AssertionError(
            f"the server exited with {server.process.returncode}:\n{server.log_text()}"
        )


def wait_for_log(server: RunningServer, text: str, timeout: float = START_TIMEOUT) -> str:
    """Poll the server's log (bounded) until it contains C{text}; the log."""
    log: str = poll(
        server, f"{text!r} in the log", lambda: text in (log := server.log_text()) and log, timeout
    )
    return log
