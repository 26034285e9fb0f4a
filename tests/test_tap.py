"""The twistd plugin: command-line options and the service tree makeService builds."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, IServiceMaker, MultiService
from twisted.plugin import getPlugins
from twisted.python import usage

from gameframe import GameFactory, RoomService
from gameframe.demo.chat import ChatRoom
from gameframe.demo.tictactoe import TicTacToe
from gameframe.tap import Options, makeService


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
