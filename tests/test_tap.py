"""The twistd plugin: command-line options and the service tree makeService builds."""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, IServiceMaker, MultiService
from twisted.plugin import getPlugins
from twisted.python import usage

from gameframe import GameFactory, RoomService
from gameframe.demo.chat import ChatRoom
from gameframe.demo.tictactoe import TicTacToe
from gameframe._limits import Limits
from gameframe.tap import Options, makeService
from tests._server import (
    HOST,
    STOP_TIMEOUT,
    free_port,
    run_twistd,
    running_server,
    start_server,
    stop_process,
    wait_for_log,
)


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


def test_defaults() -> None:
    options = parse()
    assert options["port"] == "tcp:7000"
    assert options["max-frame"] == 64 * 1024
    rooms = options["rooms"]
    assert rooms["chat"] is ChatRoom
    assert rooms["tictactoe"] is TicTacToe


def test_port() -> None:
    assert parse("--port", "tcp:7123:interface=127.0.0.1")["port"] == "tcp:7123:interface=127.0.0.1"
    assert parse("-p", "unix:/tmp/game.sock")["port"] == "unix:/tmp/game.sock"


def test_rooms_are_repeatable_and_replace_the_demos() -> None:
    options = parse(
        "--room",
        "talk=gameframe.demo.chat:ChatRoom",
        "--room",
        "ttt=gameframe.demo.tictactoe:TicTacToe",
    )
    assert options["rooms"] == {"talk": ChatRoom, "ttt": TicTacToe}


def test_a_room_name_given_twice_keeps_the_last() -> None:
    options = parse(
        "--room", "game=gameframe.demo.chat:ChatRoom",
        "--room", "game=gameframe.demo.tictactoe:TicTacToe",
    )
    assert options["rooms"] == {"game": TicTacToe}


def test_options_do_not_share_state() -> None:
    parse("--room", "talk=gameframe.demo.chat:ChatRoom")
    assert "talk" not in parse()["rooms"]


@pytest.mark.parametrize(
    "spec",
    ["chat", "chat=", "chat=gameframe.demo.chat", "=gameframe.demo.chat:ChatRoom",
     "chat=:ChatRoom", "chat=gameframe.demo.chat:", "gameframe.demo.chat:ChatRoom"],
)
def test_malformed_room_specs(spec: str) -> None:
    with pytest.raises(usage.UsageError) as caught:
        parse("--room", spec)
    assert "NAME=module:Class" in str(caught.value)
    assert repr(spec) in str(caught.value)


def test_room_module_that_does_not_import() -> None:
    with pytest.raises(usage.UsageError) as caught:
        parse("--room", "x=gameframe_no_such_module:Thing")
    message = str(caught.value)
    assert "cannot import" in message
    assert "gameframe_no_such_module" in message


@pytest.mark.parametrize(
    "target", ["gameframe.demo.chat:Nope", "gameframe.demo.chat:GameError", "gameframe.tap:parse"]
)
def test_room_class_that_is_not_a_room(target: str) -> None:
    with pytest.raises(usage.UsageError) as caught:
        parse("--room", f"x={target}")
    message = str(caught.value)
    assert "is not a gameframe Room" in message
    assert target.replace(":", ".") in message
    assert "\n" not in message


def test_max_frame() -> None:
    assert parse("--max-frame", "1024")["max-frame"] == 1024
    assert parse("--max-frame=64")["max-frame"] == 64


@pytest.mark.parametrize("value", ["abc", "1.5", "", "63", "0", "-1"])
def test_bad_max_frame(value: str) -> None:
    with pytest.raises(usage.UsageError) as caught:
        parse("--max-frame", value)
    assert "max-frame" in str(caught.value)


def test_unknown_option() -> None:
    with pytest.raises(usage.UsageError):
        parse("--nope")


def test_make_service_puts_the_room_service_before_the_port() -> None:
    options = parse(
        "--port", "tcp:0:interface=127.0.0.1",
        "--max-frame", "4096",
        "--room", "talk=gameframe.demo.chat:ChatRoom",
        "--web", "none",
    )
    top = makeService(options)
    assert isinstance(top, MultiService)
    assert IService.providedBy(top)
    children = list(top)
    assert len(children) == 2
    rooms, port = children
    # MultiService stops its children in reverse: the port stops listening first.
    assert isinstance(rooms, RoomService)
    assert rooms.room_types == {"talk": ChatRoom}
    assert isinstance(port, StreamServerEndpointService)
    assert isinstance(port.factory, GameFactory)
    assert port.factory.service is rooms
    assert port.factory.max_frame == 4096
    assert not top.running


def test_the_plugin_is_found() -> None:
    makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
    assert "gameframe" in makers
    maker = makers["gameframe"]
    assert maker.description
    assert isinstance(maker.options(), Options)
    assert maker.makeService is not None


@pytest.mark.parametrize("port", ["bogus:1", "tcp:notaport", "tcp"])
def test_bad_port_is_a_usage_error(port: str) -> None:
    with pytest.raises(usage.UsageError) as caught:
        parse("--port", port)
    assert "--port" in str(caught.value)
    assert port in str(caught.value)


def test_web_endpoint_serves_websocket_and_is_stopped_after_the_rooms() -> None:
    options = parse(
        "--port", "tcp:0:interface=127.0.0.1",
        "--web", "tcp:0:interface=127.0.0.1",
        "--allow-origin", "https://game.example",
        "--ws-ping", "5",
    )
    rooms, tcp, pinger, web = list(makeService(options))
    assert isinstance(rooms, RoomService)
    assert isinstance(tcp.factory, GameFactory)
    site = web.factory
    ws = site.resource.children[b"ws"].factory
    assert ws.service is rooms
    assert ws.allowed_origins == {"https://game.example"}
    assert b"rooms" in site.resource.children


def test_web_none_and_bad_web_endpoints() -> None:
    assert parse("--web", "none")["web"] is None
    assert parse("--web", "NONE")["web"] is None
    with pytest.raises(usage.UsageError, match="--web"):
        parse("--web", "carrier-pigeon:7")
    with pytest.raises(usage.UsageError, match="--ws-ping"):
        parse("--ws-ping", "-1")


def test_flush_interval_is_given_in_milliseconds() -> None:
    options = parse("--flush-interval", "10", "--web", "none")
    rooms, tcp = list(makeService(options))
    assert tcp.factory.scheduler._interval == 0.01
    with pytest.raises(usage.UsageError, match="--flush-interval"):
        parse("--flush-interval", "-1")


def test_services_stop_one_after_another_last_added_first() -> None:
    from twisted.application.service import Service
    from twisted.internet.defer import Deferred

    from gameframe.tap import InOrderMultiService

    events: list[str] = []
    port_stopped: Deferred[None] = Deferred()

    class Rooms(Service):
        def stopService(self) -> None:
            events.append("rooms")

    class Port(Service):
        def stopService(self) -> Deferred[None]:
            events.append("port stopping")
            return port_stopped

    top = InOrderMultiService()
    Rooms().setServiceParent(top)
    Port().setServiceParent(top)
    top.startService()
    done = top.stopService()
    assert events == ["port stopping"]
    port_stopped.callback(None)
    assert events == ["port stopping", "rooms"]
    assert done.called


def test_room_modules_are_found_in_the_current_directory(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mygame_for_tap_test.py").write_text(
        "from gameframe import Room\n\nclass Counter(Room):\n    pass\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", str(tmp_path))])
    options = parse("--room", "counter=mygame_for_tap_test:Counter")
    assert options["rooms"]["counter"].__name__ == "Counter"


# -- limits, auth and shutdown options ----------------------------------------------


def test_limit_defaults_build_the_documented_limits() -> None:
    options = parse()
    assert options.limits() == Limits()
    assert options["rate"] == 100.0
    assert options["burst"] == 200
    assert options["frame-timeout"] == 30.0
    assert options["idle-timeout"] == 120.0
    assert options["max-connections"] == 10000
    assert options["max-per-address"] == 0
    assert options["shutdown-timeout"] == 10.0
    assert options["authenticate"] is None
    assert not options["require-auth"]


def test_limit_options() -> None:
    options = parse(
        "--rate", "2.5", "--burst", "7", "--frame-timeout", "4", "--idle-timeout", "0",
        "--max-connections", "50", "--max-per-address", "3", "--shutdown-timeout", "1.5",
    )  # fmt: skip
    assert options.limits() == Limits(
        rate=2.5, burst=7, frame_timeout=4.0, idle_timeout=0.0,
        max_connections=50, max_per_address=3,
    )  # fmt: skip
    assert options["shutdown-timeout"] == 1.5


@pytest.mark.parametrize(
    "option, value",
    [
        ("rate", "fast"), ("rate", "-1"), ("rate", "nan"), ("burst", "0"), ("burst", "1.5"),
        ("frame-timeout", "-1"), ("idle-timeout", "soon"), ("max-connections", "-1"),
        ("max-connections", "many"), ("max-per-address", "-2"), ("shutdown-timeout", "0"),
        ("shutdown-timeout", "inf"),
    ],
)  # fmt: skip
def test_bad_limit_values_name_the_option(option: str, value: str) -> None:
    with pytest.raises(usage.UsageError) as caught:
        parse(f"--{option}", value)
    message = str(caught.value)
    assert f"--{option}" in message
    assert repr(value) in message
    assert "enforcement" not in message


def test_every_option_is_in_the_help() -> None:
    help_text = str(Options())
    for option in (
        "--rate", "--burst", "--frame-timeout", "--idle-timeout", "--max-connections",
        "--max-per-address", "--auth", "--require-auth", "--shutdown-timeout",
        "--port", "--web", "--room",
    ):  # fmt: skip
        assert option in help_text, option


def test_auth_resolves_a_callable() -> None:
    options = parse("--auth", "gameframe.tap:demo_rooms", "--require-auth")
    from gameframe.tap import demo_rooms

    assert options["authenticate"] is demo_rooms
    assert options["require-auth"]


@pytest.mark.parametrize(
    "spec, words",
    [
        ("gameframe_no_such_module:verify", ["cannot import", "gameframe_no_such_module"]),
        ("gameframe.tap:no_such_name", ["gameframe.tap has no no_such_name"]),
        ("gameframe.tap:DEFAULT_SHUTDOWN_TIMEOUT", ["is not callable"]),
        ("gameframe.tap", ["module:name"]),
    ],
)
def test_bad_auth(spec: str, words: list[str]) -> None:
    with pytest.raises(usage.UsageError) as caught:
        parse("--auth", spec)
    for word in words:
        assert word in str(caught.value)


def test_require_auth_needs_auth() -> None:
    with pytest.raises(usage.UsageError, match="--require-auth needs --auth"):
        parse("--require-auth")


def test_make_service_passes_auth_limits_and_shutdown_timeout() -> None:
    options = parse(
        "--port", "tcp:0:interface=127.0.0.1",
        "--web", "tcp:0:interface=127.0.0.1",
        "--auth", "gameframe.tap:demo_rooms", "--require-auth",
        "--shutdown-timeout", "3", "--rate", "5", "--max-per-address", "2",
        "--max-pending", "1048576",
    )  # fmt: skip
    rooms, tcp, pinger, web = list(makeService(options))
    assert isinstance(rooms, RoomService)
    assert rooms._authenticate is options["authenticate"]
    assert rooms._require_auth is True
    assert rooms._shutdown_timeout == 3.0
    ws = web.factory.resource.children[b"ws"].factory
    assert tcp.factory.limits == ws.limits == options.limits()
    # One gate: the connection counts add up across both endpoints.
    assert tcp.factory.gate is ws.gate
    assert tcp.factory.max_pending == ws.max_pending == 1048576


@pytest.mark.parametrize("value", ["65535", "lots", "-1"])
def test_bad_max_pending(value: str) -> None:
    with pytest.raises(usage.UsageError, match="--max-pending"):
        parse("--max-pending", value)


def test_a_bare_port_number_is_not_an_endpoint() -> None:
    with pytest.raises(usage.UsageError) as caught:
        parse("--port", "7001")
    assert "did you mean tcp:7001?" in str(caught.value)
    with pytest.raises(usage.UsageError, match="did you mean tcp:8081"):
        parse("--web", "8081")


@pytest.mark.parametrize("port", ["tcp:99999", "tcp:port=70000", "tcp6:65536"])
def test_a_port_out_of_range_is_a_usage_error(port: str) -> None:
    with pytest.raises(usage.UsageError, match="out of range"):
        parse("--port", port)


def test_the_whole_stop_is_bounded() -> None:
    from twisted.application.service import Service
    from twisted.internet.defer import Deferred
    from twisted.internet.task import Clock

    from gameframe.tap import SHUTDOWN_GRACE, GameframeService

    clock = Clock()
    top = GameframeService(clock, shutdown_timeout=3.0)

    class Stuck(Service):
        def stopService(self) -> Deferred[None]:
            return Deferred()

    Stuck().setServiceParent(top)
    top.startService()
    done = top.stopService()
    clock.advance(3.0 + SHUTDOWN_GRACE - 0.1)
    assert not done.called
    clock.advance(0.1)
    assert done.called


# -- the real twistd: start-up failures are one line, never a traceback -------------


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The failure's single line (stderr before logging starts, else the log)."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    assert "Usage:" not in output, output
    assert "gameframe players on" not in output, output
    assert "gameframe web on" not in output, output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if not lines:
        lines = [line for line in result.stdout.splitlines() if "gameframe.tap#critical" in line]
    assert len(lines) == 1, output
    return lines[0]


@pytest.fixture
def occupied() -> Iterator[int]:
    """A port on 127.0.0.1 something else listens on."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_twistd_port_in_use(tmp_path: Path, occupied: int) -> None:
    result = run_twistd(tmp_path, "--port", f"tcp:{occupied}:interface={HOST}", "--web", "none")
    line = one_line(result)
    assert f"cannot listen on --port tcp:{occupied}:interface={HOST}" in line
    assert "Address already in use" in line


def test_twistd_web_port_in_use_after_the_players_port_listens(
    tmp_path: Path, occupied: int
) -> None:
    result = run_twistd(
        tmp_path, "--port", f"tcp:{free_port()}:interface={HOST}",
        "--web", f"tcp:{occupied}:interface={HOST}",
    )  # fmt: skip
    line = one_line(result)
    assert f"cannot listen on --web tcp:{occupied}" in line
    assert "Address already in use" in line


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--port", "tcp:99999"], "--port 'tcp:99999': port 99999 is out of range"),
        (["--port", "7001"], "--port '7001' is not an endpoint string: did you mean tcp:7001?"),
        (["--web", "carrier-pigeon:7"], "--web 'carrier-pigeon:7'"),
        (["--room", "x=gameframe_no_such_module:Thing"], "cannot import gameframe_no_such_module"),
        (["--room", "x=gameframe.demo.chat:Nope"], "gameframe.demo.chat.Nope is not a gameframe Room"),
        (["--room", "x=broken_room_module:Room"], "NameError: name 'undefined_name' is not defined"),
        (["--auth", "gameframe.tap:DEFAULT_SHUTDOWN_TIMEOUT"], "is not callable"),
        (["--rate", "fast"], "--rate wants messages per second, not 'fast'"),
    ],
)  # fmt: skip
def test_twistd_bad_options_are_one_line_on_stderr(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    (tmp_path / "broken_room_module.py").write_text(
        "from gameframe import Room\n\nundefined_name.oops\n"
    )
    result = run_twistd(tmp_path, *args)
    line = one_line(result)
    assert result.returncode == 1
    assert expected in line, line
    assert line.startswith("twistd gameframe: ")
    if "broken_room_module" in " ".join(args):
        assert "broken_room_module.py, line 3" in line


def test_twistd_announces_every_endpoint_and_the_rooms_once_listening(tmp_path: Path) -> None:
    with running_server(tmp_path, "--room", "talk=gameframe.demo.chat:ChatRoom") as server:
        log = wait_for_log(server, "gameframe rooms: talk")
        assert f"gameframe players on {HOST}:{server.port} (JSON Lines)" in log
        assert f"gameframe web on {HOST}:{server.web_port}: http://{HOST}:{server.web_port}/" in log
        # Announced after listening: nothing before twistd's own start-up lines.
        assert log.index("starting up") < log.index("gameframe players on")


# -- the real twistd: SIGTERM shuts down in order, bounded ---------------------------


def test_sigterm_tells_a_connected_player_and_exits(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        player = server.connect()
        assert player.request("join_or_create", room="chat")["action"] == "joined"
        server.process.terminate()
        player.expect("left", reason="shutdown")
        disconnect = player.expect("disconnect")
        assert disconnect["code"] == "server_shutdown"
        player.assert_closed()
        player.close()
        # twistd ends by re-raising the signal it stopped for, after a clean shutdown.
        assert server.process.wait(timeout=STOP_TIMEOUT) == -signal.SIGTERM
        assert "Server Shut Down." in server.log_text()
    finally:
        stop_process(server.process)


def test_sigterm_with_a_room_stuck_in_on_shutdown_exits_after_the_timeout(
    tmp_path: Path,
) -> None:
    (tmp_path / "stuck_room.py").write_text(
        "from twisted.internet.defer import Deferred\n"
        "from gameframe import Room\n\n"
        "class Stuck(Room):\n"
        "    def on_shutdown(self):\n"
        "        return Deferred()  # never fires\n"
    )
    server = start_server(tmp_path, "--room", "stuck=stuck_room:Stuck", "--shutdown-timeout", "1")
    try:
        player = server.connect()
        assert player.request("join_or_create", room="stuck")["action"] == "joined"
        server.process.terminate()
        disconnect = player.expect("disconnect")
        assert disconnect["code"] == "server_shutdown"
        player.close()
        # Exits on its own, by the signal it stopped for (SIGKILL would be -9).
        assert server.process.wait(timeout=STOP_TIMEOUT) == -signal.SIGTERM
        assert "on_shutdown did not finish" in server.log_text()
    finally:
        stop_process(server.process)


def test_the_stop_waits_for_the_connections_to_close() -> None:
    from twisted.internet.task import Clock

    from gameframe._limits import ConnectionGate
    from gameframe.tap import CLOSE_POLL, GameframeService

    clock = Clock()
    gate = ConnectionGate(Limits())
    assert gate.admit("192.0.2.1")
    top = GameframeService(clock, shutdown_timeout=3.0, gate=gate)
    top.startService()
    done = top.stopService()
    clock.advance(CLOSE_POLL)
    assert not done.called
    gate.release("192.0.2.1")
    clock.advance(CLOSE_POLL)
    assert done.called


# -- the real twistd: socket activation, as docs/operations.md runs it under systemd --


def test_systemd_socket_activation(tmp_path: Path) -> None:
    """
    The socket a .socket unit would pass: listening already, as fd 3, with
    LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID set (the PID of twistd itself, hence set in
    the child just before it execs).
    """
    import json
    import os
    import sys

    listening = socket.socket()
    listening.bind((HOST, 0))
    listening.listen()
    port = listening.getsockname()[1]
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    environment.update(PYTHONUNBUFFERED="1", LISTEN_FDS="1", LISTEN_FDNAMES="gameframe.socket")

    def as_systemd_does() -> None:
        os.dup2(listening.fileno(), 3)
        os.environ.clear()
        os.environ.update(environment, LISTEN_PID=str(os.getpid()))

    log = tmp_path / "twistd.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("twistd")), "-n", "--pidfile=", "gameframe",
                "--port", "systemd:domain=INET:index=0", "--web", "none",
            ],  # fmt: skip
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            pass_fds=(3,),
            preexec_fn=as_systemd_does,
            close_fds=True,
        )
    listening.close()  # the server holds it now
    try:
        with socket.create_connection((HOST, port), timeout=STOP_TIMEOUT) as sock:
            reader = sock.makefile("rb")
            welcome = json.loads(reader.readline())
            assert welcome["action"] == "welcome", log.read_text()
    finally:
        stop_process(process)
    assert f"gameframe players on {HOST}:{port}" in log.read_text()



# -- cluster options: --redis, --node, --placement, --workers ------------------------


def test_cluster_option_defaults() -> None:
    import os

    options = parse()
    assert options["redis"] is None
    assert options["node"] == f"{socket.gethostname()}-{os.getpid()}"
    assert options["placement"] is None
    assert options["placement-policy"] is None
    assert options["workers"] == 1
    assert options["inherited"] == {}


@pytest.mark.parametrize(
    "url",
    ["redis://127.0.0.1:6379/0", "redis://redis.example", "redis://:secret@10.0.0.1:7000/3",
     "redis://game:secret@redis.example/2", "redis://[::1]:6379"],
)  # fmt: skip
def test_redis_urls(url: str) -> None:
    assert parse("--redis", url)["redis"] == url


@pytest.mark.parametrize(
    "url, words",
    [
        ("127.0.0.1:6379", "--redis wants a URL like redis://127.0.0.1:6379/0, not '127.0.0.1:6379'"),
        ("http://127.0.0.1:6379", "--redis wants a URL like redis://"),
        ("redis://", "--redis wants a URL like redis://"),
        ("redis://127.0.0.1:99999/0", "--redis wants a URL like redis://"),
        ("redis://127.0.0.1:port", "--redis wants a URL like redis://"),
        ("redis://127.0.0.1:0", "port 0 is not a Redis port"),
        ("redis://127.0.0.1:6379/zero", "the database after the / is a number, not 'zero'"),
        ("unix:///run/redis.sock", "--redis wants a URL like redis://"),
        ("rediss://redis.example", "--redis wants a URL like redis://"),
    ],
)  # fmt: skip
def test_bad_redis_urls(url: str, words: str) -> None:
    with pytest.raises(usage.UsageError) as caught:
        parse("--redis", url)
    assert words in str(caught.value)


@pytest.mark.parametrize("name", ["eu-1", "game.example.com", "node_7", "A"])
def test_node_names(name: str) -> None:
    assert parse("--node", name)["node"] == name


@pytest.mark.parametrize("name", ["", "two words", "-leading", "semi;colon", "x" * 65, "é"])
def test_bad_node_names(name: str) -> None:
    with pytest.raises(usage.UsageError) as caught:
        parse("--node", name)
    assert "--node wants" in str(caught.value)
    assert repr(name) in str(caught.value)


def test_placement_is_loaded_like_auth() -> None:
    from gameframe.tap import demo_rooms

    options = parse("--redis", "redis://127.0.0.1/0", "--placement", "gameframe.tap:demo_rooms")
    assert options["placement-policy"] is demo_rooms


@pytest.mark.parametrize(
    "spec, words",
    [
        ("gameframe_no_such_module:place", "--placement gameframe_no_such_module:place: cannot import"),
        ("gameframe.tap:no_such_name", "--placement gameframe.tap:no_such_name: gameframe.tap has no no_such_name"),
        ("gameframe.tap:DEFAULT_SHUTDOWN_TIMEOUT", "gameframe.tap.DEFAULT_SHUTDOWN_TIMEOUT is not callable"),
        ("gameframe.tap", "--placement wants module:name"),
    ],
)  # fmt: skip
def test_bad_placement(spec: str, words: str) -> None:
    with pytest.raises(usage.UsageError) as caught:
        parse("--redis", "redis://127.0.0.1/0", "--placement", spec)
    assert words in str(caught.value)


def test_placement_needs_redis() -> None:
    with pytest.raises(usage.UsageError, match="--placement needs --redis"):
        parse("--placement", "gameframe.tap:demo_rooms")


def test_workers() -> None:
    assert parse("--redis", "redis://127.0.0.1/0", "--workers", "4")["workers"] == 4
    assert parse("--workers", "1")["workers"] == 1


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", ""])
def test_bad_workers(value: str) -> None:
    with pytest.raises(usage.UsageError) as caught:
        parse("--redis", "redis://127.0.0.1/0", "--workers", value)
    assert "--workers" in str(caught.value)
    assert repr(value) in str(caught.value)


def test_workers_need_redis() -> None:
    with pytest.raises(usage.UsageError) as caught:
        parse("--workers", "2")
    assert str(caught.value) == "--workers needs --redis: workers share rooms through it"


@pytest.mark.parametrize(
    "option, endpoint",
    [("--port", "unix:/tmp/game.sock"), ("--web", "unix:/tmp/web.sock"),
     ("--port", "systemd:domain=INET:index=0")],
)  # fmt: skip
def test_workers_share_tcp_endpoints_only(option: str, endpoint: str) -> None:
    with pytest.raises(usage.UsageError) as caught:
        parse("--redis", "redis://127.0.0.1/0", "--workers", "2", option, endpoint)
    assert f"--workers shares tcp:, tcp6: and ssl: endpoints, not {option} {endpoint!r}" == str(
        caught.value
    )


def test_workers_share_tcp_and_tcp6_endpoints() -> None:
    options = parse(
        "--redis", "redis://127.0.0.1/0", "--workers", "2",
        "--port", "tcp6:0:interface=\\:\\:1", "--web", "tcp:0",
    )  # fmt: skip
    assert options["workers"] == 2


def test_the_worker_option_is_hidden_and_checked() -> None:
    assert "inherited-fds" not in str(Options())
    assert "--workers" in str(Options())
    options = parse("--inherited-fds", "port=3,web=4")
    assert options["inherited"] == {"port": 3, "web": 4}
    for bad in ("port=1", "port=three", "ports=3", "port"):
        with pytest.raises(usage.UsageError, match="--inherited-fds wants port=FD,web=FD"):
            parse("--inherited-fds", bad)
    with pytest.raises(usage.UsageError, match="--web is none"):
        parse("--web", "none", "--inherited-fds", "port=3,web=4")


def test_every_cluster_option_is_in_the_help() -> None:
    help_text = str(Options())
    for option in ("--redis", "--node", "--placement", "--workers"):
        assert option in help_text, option


def test_make_service_without_redis_names_the_node_and_has_no_cluster() -> None:
    options = parse("--port", "tcp:0:interface=127.0.0.1", "--web", "none", "--node", "solo")
    rooms, port = list(makeService(options))
    assert isinstance(rooms, RoomService)
    assert rooms.cluster is None


def test_make_service_with_workers_builds_a_supervisor() -> None:
    from gameframe.workers import Supervisor, WorkerMonitor

    options = parse(
        "--redis", "redis://127.0.0.1/0", "--workers", "3",
        "--port", "tcp:0:interface=127.0.0.1", "--web", "tcp:0:interface=127.0.0.1",
    )  # fmt: skip
    top = makeService(options)
    assert isinstance(top, Supervisor)
    *listeners, monitor = list(top)
    assert [listener.option for listener in listeners] == ["port", "web"]
    assert isinstance(monitor, WorkerMonitor)
    assert sorted(monitor._processes) == ["worker-1", "worker-2", "worker-3"]
    assert not top.running


@pytest.mark.parametrize(
    "args",
    [
        ["--workers", "2"],
        ["--redis", "redis://127.0.0.1/0", "--workers", "2", "--port", "unix:/tmp/x.sock"],
        ["--redis", "ftp://x"],
        ["--node", "two words"],
        ["--redis", "redis://127.0.0.1/0", "--placement", "gameframe.tap:nope"],
    ],
)
def test_twistd_bad_cluster_options_are_one_line_on_stderr(tmp_path: Path, args: list[str]) -> None:
    result = run_twistd(tmp_path, *args)
    line = one_line(result)
    assert result.returncode == 1
    assert line.startswith("twistd gameframe: --")


def test_log_format_json_makes_every_line_of_the_log_one_json_object(tmp_path: Path) -> None:
    import json

    with running_server(tmp_path, "--log-format", "json") as server:
        player = server.connect()
        player.request("join_or_create", room="chat")
        player.close()
        text = wait_for_log(server, "gameframe rooms:")
    lines = [line for line in text.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    messages = [r["message"] for r in records]
    assert any(m.startswith("twistd ") and "starting up" in m for m in messages)  # twistd's own
    assert any(m.startswith("gameframe players on ") for m in messages)
    assert all({"time", "level", "namespace", "message"} <= set(r) for r in records)


def test_log_format_must_be_text_or_json() -> None:
    options = Options()
    with pytest.raises(usage.UsageError, match="--log-format is one of text, json"):
        options.parseOptions(["--log-format", "xml"])
