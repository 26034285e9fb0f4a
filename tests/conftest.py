"""Shared fixtures: a real `twistd -n gameframe` subprocess on 127.0.0.1 (TCP and web), a real browser."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Iterator

import pytest

from tests._redis import RunningRedis, running_redis
from tests._server import RunningServer, running_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser

# Debian's Chromium, driven by Playwright (never `playwright install`).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


@pytest.fixture(scope="module")
def gameframe_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A real gameframe server with the demo rooms, for the tests of one module."""
    with running_server(tmp_path_factory.mktemp("gameframe-server")) as server:
        yield server


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRedis]:
    """A real redis-server on a free port of 127.0.0.1, for one test."""
    with running_redis(tmp_path_factory.mktemp("redis")) as redis:
        yield redis


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's Chromium. "
            "Install it with: apt-get update && "
            "apt-get install -y --no-install-recommends chromium",
            pytrace=False,
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "Playwright for Python is missing: pip install playwright "
            "(do not run `playwright install`; the tests use /usr/bin/chromium)",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()
