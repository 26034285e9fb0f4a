"""
The /monitor page in a real browser (Debian's Chromium driven by Playwright),
against a real `twistd -n gameframe --admin-token ...`, with a plain TCP
player in an arena room: the page shows the room, its state as the player
moves, and kicks the player.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Iterator

import pytest

from tests._server import RunningServer, running_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

TOKEN = "monitor-test-token"
WAIT_MS = 10_000  # every browser wait
WALK_MS = 15_000  # an avatar crossing the arena (200 units a second)


@pytest.fixture(scope="module")
def admin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("monitor"), "--admin-token", TOKEN) as server:
        yield server


@pytest.fixture
def page(browser: Browser, admin_server: RunningServer) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_MS)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.on(
        "console",
        lambda message: message.type == "error"
        and "status of 401" not in message.text  # the wrong token, on purpose
        and errors.append(message.text),
    )
    try:
        yield opened
    finally:
        context.close()
    assert errors == [], "the monitor reported errors"


def sign_in(page: Page, server: RunningServer) -> None:
    page.goto(server.base_url + "/monitor/")
    page.fill("#token", TOKEN)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#overview:not([hidden])")


def shown_state(page: Page) -> Any:
    return json.loads(page.text_content("#state") or "null")


def test_the_monitor_shows_a_room_its_live_state_and_kicks(page: Page, admin_server: RunningServer) -> None:
    from playwright.sync_api import expect

    player = admin_server.connect()
    try:
        joined = player.request("join_or_create", room="arena")
        room_id, player_id = joined["room_id"], player.player_id

        sign_in(page, admin_server)
        row = page.locator(f'#rooms tr[data-room-id="{room_id}"]')
        expect(row).to_contain_text("arena")
        row.locator("button.watch").click()
        expect(page.locator("#live-mode")).to_have_text("(live stream)")
        seat = page.locator(f'#players tr[data-player-id="{player_id}"]')
        expect(seat).to_contain_text("connected")
        expect(seat).to_contain_text("tcp")

        # The player walks to a corner: the page's state follows, patch by patch.
        page.wait_for_function(
            "(id) => JSON.parse(document.querySelector('#state').textContent).players[id] !== undefined",
            arg=player_id,
        )
        player.send(action="move", x=0, y=0)
        page.wait_for_function(
            "(id) => { const a = JSON.parse(document.querySelector('#state').textContent).players[id];"
            " return a.x === 0 && a.y === 0; }",
            arg=player_id,
            timeout=WALK_MS,
        )
        assert int(page.get_attribute("#state", "data-seq") or 0) > 0

        seat.locator("button.kick").click()
        assert player.expect("left")["reason"] == "kicked"
        expect(seat).to_have_count(0)
        # Its last player gone, the arena ends; the page says so.
        expect(page.locator("#notice")).to_contain_text("has ended")
        expect(row).to_have_count(0)
    finally:
        player.close()


def test_the_token_is_asked_once_per_tab_and_a_wrong_one_is_refused(page: Page, admin_server: RunningServer) -> None:
    from playwright.sync_api import expect

    page.goto(admin_server.base_url + "/monitor/")
    page.fill("#token", "wrong")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#status")).to_have_text("the token was refused")
    expect(page.locator("#login")).to_be_visible()

    sign_in(page, admin_server)
    page.reload()
    expect(page.locator("#overview")).to_be_visible()
    expect(page.locator("#login")).to_be_hidden()
