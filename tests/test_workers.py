"""--workers N: one parent holds the ports, N worker processes (nodes of one cluster) serve them."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import Clock
from twisted.python import usage

from gameframe.tap import SHUTDOWN_GRACE, Options
from gameframe.workers import (
    FIRST_INHERITED_FD,
    KILL_MARGIN,
    TWISTD,
    WorkerMonitor,
    _Spawner,
    worker_arguments,
)
from tests._redis import RunningRedis
from tests._server import (
    poll,
    HOST,
    START_TIMEOUT,
    STOP_TIMEOUT,
    LineClient,
    RunningServer,
    TlsLineClient,
    free_port,
    start_server_at,
    stop_process,
    twistd_command,
    twistd_env,
    wait_for_log,
)
from tests.test_tls import certificate, client_context  # noqa: F401  (fixtures)


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


# -- the workers' command lines -------------------------------------------------------


REDIS = "redis://127.0.0.1:6379/0"


def test_a_worker_gets_the_options_minus_workers_plus_its_sockets() -> None:
    options = parse(
        "--redis", REDIS, "--workers", "2", "-p", "tcp:7001", "--web=tcp:8081",
        "--room", "talk=gameframe.demo.chat:ChatRoom", "--allow-origin", "https://a.example",
        "--allow-origin", "https://b.example", "--rate", "5",
    )  # fmt: skip
    command = worker_arguments(options, 2, ["port", "web"])
    assert command[:4] == [sys.executable, "-P", "-c", TWISTD]
    split = command.index("gameframe")
    twistd, gameframe = command[4:split], command[split + 1 :]
    assert twistd == ["--nodaemon", "--pidfile=", "--logger=gameframe.workers.worker_log"]
    assert gameframe == [
        f"--redis={REDIS}", "-p", "tcp:7001", "--web=tcp:8081",
        "--room=talk=gameframe.demo.chat:ChatRoom", "--allow-origin=https://a.example",
        "--allow-origin=https://b.example", "--rate=5", "--inherited-fds=port=3,web=4",
    ]  # fmt: skip
    # What the worker parses is the parent's configuration, minus --workers, plus its sockets.
    worker = parse(*gameframe)
    for key in ("redis", "port", "web", "rooms", "allowed-origins", "rate"):
        assert worker[key] == options[key], key
    assert worker["workers"] == 1
    assert worker["inherited"] == {"port": 3, "web": 4}


def test_abbreviations_flags_and_the_node_name_per_worker() -> None:
    options = parse(
        "--red", REDIS, "--work=3", "--node", "eu", "--require-auth",
        "--auth", "gameframe.tap:demo_rooms",
    )  # fmt: skip
    for number in (1, 3):
        gameframe = worker_arguments(options, number, ["port"])
        gameframe = gameframe[gameframe.index("gameframe") + 1 :]
        assert gameframe == [
            f"--redis={REDIS}", "--require-auth", "--auth=gameframe.tap:demo_rooms",
            f"--node=eu-w{number}", "--inherited-fds=port=3",
        ]  # fmt: skip


def test_without_node_each_worker_takes_the_default_name() -> None:
    options = parse("--redis", REDIS, "--workers", "2", "--web", "none")
    command = worker_arguments(options, 1, ["port"])
    assert not any(argument.startswith("--node") for argument in command)
    assert command[-1] == "--inherited-fds=port=3"


def test_a_worker_option_line_cannot_ask_for_more_workers() -> None:
    with pytest.raises(usage.UsageError, match="--inherited-fds is for the workers"):
        parse("--redis", REDIS, "--workers", "2", "--inherited-fds", "port=3")


# -- the monitor: sockets handed down, a stop that waits for the workers -------------


class FakeProcess:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.signals: list[str] = []

    def signalProcess(self, name: str) -> None:
        self.signals.append(name)


class FakeReactor(Clock):
    """A clock that records spawnProcess calls."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[tuple[ProcessProtocol, list[str], Mapping[int, Any]]] = []

    def spawnProcess(
        self, protocol: ProcessProtocol, executable: str, args: list[str], env: Any = None,
        path: Any = None, uid: Any = None, gid: Any = None, usePTY: bool = False,
        childFDs: Mapping[int, Any] | None = None,
    ) -> FakeProcess:  # fmt: skip
        assert childFDs is not None
        process = FakeProcess(100 + len(self.spawned))
        protocol.makeConnection(process)
        self.spawned.append((protocol, args, childFDs))
        return process


def test_each_worker_inherits_the_listening_sockets() -> None:
    reactor = FakeReactor()
    monitor = WorkerMonitor(reactor, lambda: {3: 17, 4: 18}, kill_time=5.0)
    monitor.addProcess("worker-1", ["twistd", "one"])
    monitor.addProcess("worker-2", ["twistd", "two"])
    monitor.startService()
    assert [(args, dict(fds)) for _, args, fds in reactor.spawned] == [
        (["twistd", "one"], {0: "w", 1: "r", 2: "r", 3: 17, 4: 18}),
        (["twistd", "two"], {0: "w", 1: "r", 2: "r", 3: 17, 4: 18}),
    ]
    assert monitor.pids() == {"worker-1": 100, "worker-2": 101}


def test_the_spawner_keeps_the_monitor_on_the_reactors_clock() -> None:
    reactor = FakeReactor()
    spawner = _Spawner(reactor, lambda: {})
    calls: list[int] = []
    spawner.callLater(2, calls.append, 1)
    reactor.advance(2)
    assert calls == [1]
    assert spawner.seconds() == reactor.seconds() == 2
    assert spawner.getDelayedCalls() == []


def test_a_worker_that_dies_is_started_again_with_the_same_sockets() -> None:
    from twisted.internet.error import ProcessTerminated
    from twisted.python.failure import Failure

    reactor = FakeReactor()
    monitor = WorkerMonitor(reactor, lambda: {3: 17}, kill_time=5.0)
    monitor.addProcess("worker-1", ["twistd"])
    monitor.startService()
    reactor.advance(60)
    first, _, _ = reactor.spawned[0]
    first.processEnded(Failure(ProcessTerminated(signal=signal.SIGKILL)))
    reactor.advance(0)
    assert len(reactor.spawned) == 2
    assert dict(reactor.spawned[1][2])[3] == 17


def test_the_stop_signals_every_worker_and_waits_until_they_have_exited() -> None:
    from twisted.internet.error import ProcessTerminated
    from twisted.python.failure import Failure

    reactor = FakeReactor()
    monitor = WorkerMonitor(reactor, lambda: {3: 17}, kill_time=5.0)
    monitor.addProcess("worker-1", ["twistd"])
    monitor.addProcess("worker-2", ["twistd"])
    monitor.startService()
    (one, _, _), (two, _, _) = reactor.spawned
    stopped: Deferred[None] = monitor.stopService()
    signals = [one.transport.signals, two.transport.signals]  # type: ignore[union-attr]
    assert signals == [["TERM"], ["TERM"]]
    one.processEnded(Failure(ProcessTerminated(signal=signal.SIGTERM)))
    reactor.advance(1)
    assert not stopped.called
    # One does not stop: SIGKILL after kill_time, then the stop is over, and nothing restarts.
    reactor.advance(4)
    assert two.transport.signals == ["TERM", "KILL"]  # type: ignore[union-attr]
    two.processEnded(Failure(ProcessTerminated(signal=signal.SIGKILL)))
    reactor.advance(1)
    assert stopped.called
    assert len(reactor.spawned) == 2


def test_the_kill_time_is_the_workers_own_bounded_stop_and_a_margin() -> None:
    from gameframe.tap import makeService

    options = parse(
        "--redis", REDIS, "--workers", "2", "--shutdown-timeout", "4",
        "--port", "tcp:0:interface=127.0.0.1", "--web", "none",
    )  # fmt: skip
    *_, monitor = list(makeService(options))  # type: ignore[call-overload]
    assert monitor.killTime == 4 + SHUTDOWN_GRACE + KILL_MARGIN


# -- a worker on its own: it adopts the socket it inherits ---------------------------


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    """A listening socket on a free port of 127.0.0.1, as the parent opens it."""
    sock = socket.socket()
    sock.bind((HOST, 0))
    sock.listen()
    try:
        yield sock
    finally:
        sock.close()


def start_worker(
    directory: Path, sock: socket.socket, endpoint: str
) -> tuple[subprocess.Popen[bytes], Path]:
    """A worker as --workers starts one: the socket inherited, its standard input a pipe from us."""
    log = directory / "worker.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            twistd_command(
                "--port", endpoint, "--web", "none", "--inherited-fds", f"port={sock.fileno()}"
            ),
            cwd=directory,
            env=twistd_env(),
            stdin=subprocess.PIPE,
            stdout=output,
            stderr=subprocess.STDOUT,
            pass_fds=(sock.fileno(),),
        )
    return process, log


def test_a_worker_serves_the_socket_it_inherits_and_stops_when_its_parent_is_gone(
    tmp_path: Path, listening: socket.socket
) -> None:
    port = listening.getsockname()[1]
    # The endpoint names another port: the worker adopts the socket it is given.
    process, log = start_worker(tmp_path, listening, f"tcp:{free_port()}:interface={HOST}")
    try:
        player = LineClient(port)
        assert player.request("join_or_create", room="chat")["action"] == "joined"
        assert f"gameframe players on {HOST}:{port} (JSON Lines)" in log.read_text()
        # Its parent is gone (its standard input ends): it stops as on SIGTERM.
        assert process.stdin is not None
        process.stdin.close()
        player.expect("left", reason="shutdown")
        assert player.expect("disconnect")["code"] == "server_shutdown"
        player.close()
        assert process.wait(timeout=STOP_TIMEOUT) == 0
        text = log.read_text()
        assert "the supervising process is gone; stopping" in text
        assert "Server Shut Down." in text
    finally:
        stop_process(process)


def test_a_worker_wraps_an_inherited_socket_in_tls_for_an_ssl_endpoint(
    tmp_path: Path,
    listening: socket.socket,
    certificate: tuple[Path, Path],  # noqa: F811
    client_context: ssl.SSLContext,  # noqa: F811
) -> None:
    key, cert = certificate
    port = listening.getsockname()[1]
    endpoint = f"ssl:{port}:interface={HOST}:privateKey={key}:certKey={cert}"
    process, log = start_worker(tmp_path, listening, endpoint)
    try:
        player = TlsLineClient(port, client_context)
        assert isinstance(player.sock, ssl.SSLSocket)
        assert player.request("join_or_create", room="chat")["action"] == "joined"
        player.close()
        assert f"gameframe players on {HOST}:{port} (TLS) (JSON Lines)" in log.read_text()
    finally:
        stop_process(process)


def test_a_worker_refuses_a_descriptor_that_is_not_a_listening_socket(tmp_path: Path) -> None:
    with socket.socket() as unbound:
        process, log = start_worker(tmp_path, unbound, f"tcp:{free_port()}:interface={HOST}")
        try:
            assert process.wait(timeout=START_TIMEOUT) != 0
        finally:
            stop_process(process)
    text = log.read_text()
    assert "Traceback" not in text
    assert "is not a listening TCP socket" in text
    assert "gameframe cannot listen on --port tcp:" in text


# -- the real thing: twistd -n gameframe --redis URL --workers 2 ---------------------


def children(pid: int) -> set[int]:
    """The live (not zombie) child processes of C{pid}."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        state, parent = stat.rsplit(")", 1)[1].split()[:2]
        if int(parent) == pid and state != "Z":
            found.add(int(entry))
    return found


def serving(client: LineClient, port: int, pids: set[int]) -> int | None:
    """Which of C{pids} holds the server side of C{client}'s connection to C{port}."""
    client_port = client.sock.getsockname()[1]
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[2].endswith(f":{client_port:04X}"):
            inode = fields[9]
    if inode is None:
        return None
    for pid in pids:
        try:
            descriptors = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in descriptors:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    return None


def start_workers(directory: Path, redis: RunningRedis, *args: str) -> RunningServer:
    port, web_port = free_port(), free_port()
    return start_server_at(
        directory, f"tcp:{port}:interface={HOST}", port,
        f"tcp:{web_port}:interface={HOST}", web_port,
        "--redis", redis.url, "--workers", "2", *args,
    )  # fmt: skip


def announced(server: RunningServer) -> int:
    """How many times a worker has said it serves (each start of a worker, once)."""
    line = r"\[worker-\d+\] \[gameframe\.tap#info\] gameframe rooms:"
    return len(re.findall(line, server.log_text()))


def workers_up(server: RunningServer, count: int = 2) -> set[int]:
    """Wait until C{count} workers run and each has announced its ports; their PIDs."""
    poll(server, f"{count} workers announce", lambda: announced(server) >= count)

    def running() -> set[int] | None:
        pids = children(server.process.pid)
        return pids if len(pids) == count else None

    pids: set[int] = poll(server, f"{count} workers run", running)
    return pids


def one_player_on_each(server: RunningServer, pids: set[int]) -> dict[int, LineClient]:
    """Connect players until one is served by each worker in C{pids} (the others hang up)."""
    players: dict[int, LineClient] = {}
    for _ in range(60):
        player = server.connect()
        pid = serving(player, server.port, pids)
        if pid is not None and pid not in players:
            players[pid] = player
            if len(players) == len(pids):
                return players
        else:
            player.close()
    raise AssertionError(
        f"60 players, all served by {set(players)} of {pids}:\n{server.log_text()}"
    )


def join_from_another_worker(
    player: LineClient, room_id: str, server: RunningServer
) -> dict[str, Any]:
    """Join by id; until both workers are in the cluster the room may not be found yet (bounded)."""
    joined: dict[str, Any] = {}

    def join() -> bool:
        nonlocal joined
        joined = player.request("join", room_id=room_id)
        if joined["action"] == "error":
            assert joined["code"] in ("room_not_found", "unavailable"), joined
            return False
        return True

    poll(server, f"joining {room_id} from another worker", join)
    return joined


def test_two_workers_serve_one_port_as_one_server(
    tmp_path: Path, redis_server: RunningRedis
) -> None:
    server = start_workers(tmp_path, redis_server, "--node", "box")
    try:
        log = wait_for_log(
            server, "gameframe workers: 2 processes serve these ports (worker-1, worker-2)"
        )
        # The parent announces the ports it holds, as a single server does.
        assert f"gameframe players on {HOST}:{server.port} (JSON Lines)" in log
        assert f"gameframe web on {HOST}:{server.web_port}" in log
        pids = workers_up(server)
        log = server.log_text()
        for number in (1, 2):
            announce = f"[gameframe.tap#info] gameframe players on {HOST}:{server.port}"
            assert f"[worker-{number}] {announce}" in log
        players = one_player_on_each(server, pids)
        alice, bob = players.values()

        # Chat, the players on different workers.
        room = alice.request("create", room="chat")
        assert room["action"] == "joined", room
        joined = join_from_another_worker(bob, room["room_id"], server)
        assert set(joined["players"]) == {alice.player_id, bob.player_id}
        alice.expect("player_joined", player_id=bob.player_id)
        alice.send(action="say", text="hi from one worker")
        bob.send(action="say", text="hi from the other")
        for player in (alice, bob):
            assert player.expect("said", text="hi from one worker")["player_id"] == alice.player_id
            assert player.expect("said", text="hi from the other")["player_id"] == bob.player_id
        listed = bob.request("list")["rooms"]
        nodes = [entry["node"] for entry in listed if entry["room_id"] == room["room_id"]]
        assert nodes in (["box-w1"], ["box-w2"])
        bob.request("leave")
        alice.expect("player_left", player_id=bob.player_id)
        alice.request("leave")

        # A whole game of tic-tac-toe across the workers.
        room = bob.request("create", room="tictactoe")
        join_from_another_worker(alice, room["room_id"], server)
        turn = alice.expect("start")["turn"]
        assert bob.expect("start")["turn"] == turn
        x, o = (alice, bob) if turn == alice.player_id else (bob, alice)
        for player, cell in [(x, 0), (o, 3), (x, 1), (o, 4), (x, 2)]:
            assert player.request("place", cell=cell)["action"] == "result"
        for player in (x, o):
            assert [player.expect("placed", cell=cell)["cell"] for cell in (0, 3, 1, 4, 2)]
            assert player.expect("game_over")["winner"] == x.player_id
        for player in (alice, bob):
            player.close()
    finally:
        stop_process(server.process)


def test_a_worker_killed_is_replaced_and_the_port_keeps_serving(
    tmp_path: Path, redis_server: RunningRedis
) -> None:
    server = start_workers(tmp_path, redis_server)
    try:
        pids = workers_up(server)
        players = one_player_on_each(server, pids)
        victim, survivor = players
        doomed = players[victim]
        assert doomed.request("join_or_create", room="chat")["action"] == "joined"

        os.kill(victim, signal.SIGKILL)  # a worker this test's server started
        doomed.assert_closed()
        doomed.close()

        # The port keeps serving while the monitor starts a replacement.
        for _ in range(3):
            player = server.connect()
            assert player.request("join_or_create", room="chat")["action"] == "joined"
            player.close()
        poll(server, "the replacement announces its ports", lambda: announced(server) >= 3)
        replaced = workers_up(server, 2)
        assert survivor in replaced and victim not in replaced and len(replaced) == 2
        (replacement,) = replaced - {survivor}
        # The replacement serves the same port.
        players[survivor].close()
        served = one_player_on_each(server, replaced)
        newcomer = served[replacement]
        assert newcomer.request("join_or_create", room="chat")["action"] == "joined"
        newcomer.send(action="say", text="back")
        assert newcomer.expect("said", text="back")["player_id"] == newcomer.player_id
        for player in served.values():
            player.close()
    finally:
        stop_process(server.process)


def test_sigterm_stops_the_workers_each_as_a_single_server_then_the_parent(
    tmp_path: Path, redis_server: RunningRedis
) -> None:
    server = start_workers(tmp_path, redis_server)
    try:
        pids = workers_up(server)
        players = one_player_on_each(server, pids)
        for player in players.values():
            assert player.request("join_or_create", room="chat")["action"] == "joined"
        server.process.terminate()
        for player in players.values():
            player.expect("left", reason="shutdown")
            assert player.expect("disconnect")["code"] == "server_shutdown"
            player.assert_closed()
            player.close()
        assert server.process.wait(timeout=STOP_TIMEOUT) == -signal.SIGTERM
        # The parent exits after its workers.
        assert all(exited(pid, 0) for pid in pids)
        log = server.log_text()
        for number in (1, 2):
            shut_down = "[twisted.scripts._twistd_unix.UnixAppLogger#info] Server Shut Down."
            assert f"[worker-{number}] {shut_down}" in log
        assert log.rstrip().endswith("Server Shut Down.")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((HOST, server.port), timeout=STOP_TIMEOUT).close()
    finally:
        stop_process(server.process)


def exited(pid: int, timeout: float) -> bool:
    """Whether process C{pid} has ended, or ends within C{timeout} seconds (waited on a pidfd)."""
    try:
        with_fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([with_fd], [], [], timeout)
        return bool(ready)
    finally:
        os.close(with_fd)


def test_workers_stop_when_the_parent_is_killed(tmp_path: Path, redis_server: RunningRedis) -> None:
    server = start_workers(tmp_path, redis_server)
    pids: set[int] = set()
    try:
        pids = workers_up(server)
        server.process.kill()  # no SIGTERM for the workers: they notice their parent is gone
        server.process.wait(timeout=STOP_TIMEOUT)
        for pid in pids:
            assert exited(pid, STOP_TIMEOUT), "a worker outlived its parent"
        pids = set()
    finally:
        stop_process(server.process)
        for pid in pids:  # orphans of the server this test started, if they stayed
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_workers_over_tls(
    tmp_path: Path,
    redis_server: RunningRedis,
    certificate: tuple[Path, Path],  # noqa: F811
    client_context: ssl.SSLContext,  # noqa: F811
) -> None:
    key, cert = certificate
    port = free_port()
    tls = f"interface={HOST}:privateKey={key}:certKey={cert}"
    server = start_server_at(
        tmp_path, f"ssl:{port}:{tls}", port, "none", None,
        "--redis", redis_server.url, "--workers", "2",
    )  # fmt: skip
    try:
        workers_up(server)
        assert f"gameframe players on {HOST}:{port} (TLS) (JSON Lines)" in server.log_text()
        player = TlsLineClient(port, client_context)
        assert player.request("join_or_create", room="chat")["action"] == "joined"
        player.close()
    finally:
        stop_process(server.process)
