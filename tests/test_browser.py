"""
The browser demo in a real browser: headless Chromium (Debian's package)
driven by Playwright, against the real server, with a plain TCP player in
the same rooms.

Needs: ``apt-get install -y --no-install-recommends chromium`` and
``pip install playwright`` (never ``playwright install``: the browser is
Debian's, at /usr/bin/chromium).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import pytest

from gameframe.mirror import StateMirror

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

    from tests._server import RunningServer

PYGAME_EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "pygame_arena.py"
WAIT_MS = 10_000  # every browser wait
WALK_MS = 15_000  # an avatar crossing the arena (200 units a second)
TCP_WAIT = 10.0


# -- the browser ------------------------------------------------------------------




class Pages:
    """Opens pages in one fresh browser context; collects their script errors."""

    def __init__(self, browser: Browser, base_url: str) -> None:
        self._context = browser.new_context(viewport={"width": 1280, "height": 900})
        self._context.set_default_timeout(WAIT_MS)
        self._base_url = base_url
        self.errors: list[str] = []

    def open(self) -> Page:
        page = self._context.new_page()
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: {error}"))
        page.on(
            "console",
            lambda message: message.type == "error"
            and self.errors.append(f"{page.url}: console: {message.text}"),
        )
        page.goto(self._base_url + "/")
        page.wait_for_function("() => window.gameframeClient && window.gameframeClient.connected")
        return page

    def close(self) -> None:
        self._context.close()


@pytest.fixture
def pages(browser: Browser, gameframe_server: RunningServer) -> Iterator[Pages]:
    opened = Pages(browser, gameframe_server.base_url)
    try:
        yield opened
    finally:
        opened.close()
    assert opened.errors == [], "the pages reported errors"


def client_value(page: Page, expression: str) -> Any:
    """Evaluate C{expression} with C{client} bound to the page's gameframe Client."""
    return page.evaluate(f"() => {{ const client = window.gameframeClient; return {expression}; }}")


def wait_for_client(page: Page, condition: str, arg: Any = None, timeout: float = WAIT_MS) -> None:
    """Wait until C{condition} (JS, with C{client} and C{arg}) holds in the page."""
    page.wait_for_function(
        f"(arg) => {{ const client = window.gameframeClient; return {condition}; }}",
        arg=arg,
        timeout=timeout,
    )


# -- a plain TCP player -----------------------------------------------------------


class TcpPlayer:
    """A player over TCP, JSON Lines, with a state mirror; every wait is bounded."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TCP_WAIT)
        self.mirror = StateMirror()
        self.received: list[dict[str, Any]] = []
        self._buffer = b""
        self.player_id = self.wait_for(lambda m: m["action"] == "welcome")["player_id"]

    def send(self, message: dict[str, Any]) -> None:
        self.sock.sendall(json.dumps(message).encode() + b"\n")

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError from None
            if not data:
                raise ConnectionError("the server closed the connection")
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        self.received.append(message)
        if self.mirror.handle(message) and self.mirror.stale:
            self.send({"action": "sync"})
        return message

    def wait_for(
        self, check: Callable[[dict[str, Any]], bool], timeout: float = TCP_WAIT
    ) -> dict[str, Any]:
        """Read messages until one passes C{check}; that message."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                message = self._read(deadline)
            except TimeoutError:
                raise AssertionError(
                    f"no matching message in {timeout} s; the last ones: {self.received[-5:]}"
                ) from None
            if message["action"] == "error":
                raise AssertionError(f"the server refused: {message}")
            if check(message):
                return message

    def wait_for_state(
        self, check: Callable[[Any], bool], timeout: float = TCP_WAIT
    ) -> Any:
        """Read messages until the mirrored state passes C{check}; the state."""
        if self.mirror.state is not None and check(self.mirror.state):
            return self.mirror.state
        self.wait_for(
            lambda m: m["action"] in ("state", "patch")
            and self.mirror.state is not None
            and check(self.mirror.state),
            timeout,
        )
        return self.mirror.state

    def join(self, room_id: str) -> dict[str, Any]:
        self.send({"action": "join", "room_id": room_id, "id": "join"})
        joined = self.wait_for(lambda m: m.get("id") == "join")
        assert joined["action"] == "joined", joined
        self.player_id = joined["player_id"]
        return joined

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def tcp_player(gameframe_server: RunningServer) -> Iterator[TcpPlayer]:
    player = TcpPlayer(gameframe_server.port)
    try:
        yield player
    finally:
        player.close()


def near(avatar: dict[str, Any], x: float, y: float) -> bool:
    return abs(avatar["x"] - x) <= 0.01 and abs(avatar["y"] - y) <= 0.01


# -- the tests ----------------------------------------------------------------------


def test_arena_two_pages_a_tcp_player_and_pygame(
    pages: Pages, tcp_player: TcpPlayer, gameframe_server: RunningServer
) -> None:
    # Page 1 starts an arena from the lobby.
    first = pages.open()
    first.click("#play-arena")
    wait_for_client(first, "client.roomId !== null && client.state !== null")
    room_id = first.get_attribute("#room-id", "data-room-id")
    assert room_id == client_value(first, "client.roomId")
    first_id = client_value(first, "client.playerId")
    first.wait_for_selector(f'#arena-players li[data-player-id="{first_id}"][data-self="true"]')

    # Page 2 finds it in the live room list and joins it.
    second = pages.open()
    second.click(f'#rooms button.join[data-room-id="{room_id}"]')
    wait_for_client(second, "client.roomId === arg", room_id)
    second_id = client_value(second, "client.playerId")
    assert second_id != first_id
    wait_for_client(first, "client.state.players[arg] !== undefined", second_id)

    # The TCP player joins the same room by id and mirrors both browser players.
    joined = tcp_player.join(room_id)
    assert {first_id, second_id} <= set(joined["players"])
    tcp_player.wait_for_state(lambda s: {first_id, second_id, tcp_player.player_id} <= set(s["players"]))

    # Page 1 clicks the canvas: page 2's mirror shows page 1 arriving there.
    canvas = first.locator("#arena canvas")
    box = canvas.bounding_box()
    assert box is not None
    canvas.click(position={"x": 600 * box["width"] / 800, "y": 150 * box["height"] / 600})
    sent = canvas.get_attribute("data-target")
    assert sent is not None
    x, y = (int(v) for v in sent.split(","))
    assert abs(x - 600) <= 2 and abs(y - 150) <= 2, sent
    wait_for_client(
        second,
        "(p => p && Math.abs(p.x - arg.x) < 0.01 && Math.abs(p.y - arg.y) < 0.01)"
        "(client.state.players[arg.id])",
        {"id": first_id, "x": x, "y": y},
        timeout=WALK_MS,
    )
    # ...and so does the TCP player's.
    tcp_player.wait_for_state(lambda s: near(s["players"][first_id], x, y), timeout=WALK_MS / 1000)

    # The TCP player's own move reaches page 2, mirror and player list.
    tcp_id = tcp_player.player_id
    tcp_player.send({"action": "move", "x": 100, "y": 500})
    wait_for_client(
        second,
        "(p => p && p.x === 100 && p.y === 500)(client.state.players[arg])",
        tcp_id,
        timeout=WALK_MS,
    )
    second.wait_for_selector(
        f'#arena-players li[data-player-id="{tcp_id}"][data-x="100"][data-y="500"]'
    )

    # A pygame client (the example, headless) joins the same room and walks:
    # both pages see it.
    def walks(pid: str) -> None:
        wait_for_client(second, "client.state.players[arg] !== undefined", pid)
        start = client_value(second, f"client.state.players[{json.dumps(pid)}]")
        wait_for_client(
            second,
            "(p => p && (p.x !== arg.x || p.y !== arg.y))(client.state.players[arg.id])",
            {"id": pid, "x": start["x"], "y": start["y"]},
            timeout=WALK_MS,
        )
        wait_for_client(first, "client.state.players[arg] !== undefined", pid)

    pygame_id = run_pygame_example(gameframe_server, room_id, walks)
    assert pygame_id not in (first_id, second_id, tcp_player.player_id)

    # Its connection drops: the seat is held and the pages grey it out.
    tcp_player.close()
    second.wait_for_selector(f'#arena-players li[data-player-id="{tcp_id}"][data-connected="false"]')
    assert client_value(first, f"client.state.players[{json.dumps(tcp_id)}].connected") is False


def run_pygame_example(server: RunningServer, room_id: str, seen: Any) -> str:
    """
    Run examples/pygame_arena.py headless in C{room_id}; once it says it
    joined, call C{seen(player_id)} (which waits for the pages to see it),
    then let it finish. Its player id.
    """
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy",
           "PYGAME_HIDE_SUPPORT_PROMPT": "1"}
    command = [sys.executable, str(PYGAME_EXAMPLE), "--port", str(server.port),
               "--room-id", room_id, "--frames", "180", "--auto"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()  # "joined ROOM as PLAYER"
        assert line.startswith(f"joined {room_id} as "), line + process.stderr.read().decode()
        player_id = line.split()[-1]
        seen(player_id)
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err.decode()
        return player_id
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_arena_page_takes_its_seat_back(pages: Pages) -> None:
    page = pages.open()
    page.click("#play-arena")
    wait_for_client(page, "client.state !== null")
    room_id = client_value(page, "client.roomId")
    player_id = client_value(page, "client.playerId")
    token = client_value(page, "client.token")
    seats = client_value(page, "Object.keys(client.state.players).length")

    # The socket drops: the client reconnects on its own with the token.
    page.evaluate(
        "() => { window.reconnected = false;"
        " window.gameframeClient.once('reconnected', () => { window.reconnected = true; });"
        " window.gameframeClient.socket.close(); }"
    )
    wait_for_client(page, "window.reconnected && client.connected")
    assert client_value(page, "[client.roomId, client.playerId]") == [room_id, player_id]
    assert client_value(page, "client.token") != token
    wait_for_client(
        page,
        "Object.keys(client.state.players).length === arg.seats"
        " && client.state.players[arg.id].connected",
        {"seats": seats, "id": player_id},
    )

    # A reload keeps the room in the address bar and the token in sessionStorage.
    assert page.url.endswith(f"#join={room_id}")
    page.reload()
    wait_for_client(page, "client.roomId === arg && client.state !== null", room_id)
    assert client_value(page, "client.playerId") == player_id
    page.wait_for_selector(f'#arena-players li[data-player-id="{player_id}"][data-connected="true"]')


def test_chat_between_a_page_and_a_tcp_player(pages: Pages, tcp_player: TcpPlayer) -> None:
    page = pages.open()
    page.click("#play-chat")
    wait_for_client(page, "client.room === 'chat'")
    room_id = page.get_attribute("#room-id", "data-room-id")
    page_id = client_value(page, "client.playerId")

    tcp_player.join(room_id)
    page.wait_for_selector(f'#chat-log li.system[data-player-id="{tcp_player.player_id}"]')

    tcp_player.send({"action": "say", "text": "hello from TCP"})
    said = page.locator(f'#chat-log li.said[data-player-id="{tcp_player.player_id}"]')
    said.wait_for()
    assert said.inner_text().endswith("hello from TCP")

    page.fill("#chat-input", "hello from the browser")
    page.press("#chat-input", "Enter")
    heard = tcp_player.wait_for(lambda m: m["action"] == "said" and m["player_id"] == page_id)
    assert heard["text"] == "hello from the browser"
    page.locator('#chat-log li.said[data-player-id="%s"]' % page_id).wait_for()


def test_world_page_draws_only_what_is_near_and_walks(pages: Pages) -> None:
    page = pages.open()
    page.click("#play-world")
    wait_for_client(page, "client.state !== null && client.state.you === client.playerId")
    seen = client_value(page, "Object.keys(client.state.entities).length")
    assert 1 <= seen < 2000  # its own avatar and what is near: never the whole world
    page.wait_for_selector("#world canvas[data-entities]")
    start = client_value(page, "client.state.entities[client.playerId]")
    # A click walks there: the avatar's position changes in the mirrored state.
    page.click("#world canvas", position={"x": 700, "y": 500})
    wait_for_client(
        page,
        "(() => { const me = client.state.entities[client.playerId];"
        " return me.x !== arg.x || me.y !== arg.y; })()",
        start,
    )
