"""Shared fixtures: a real `twistd -n gameframe` subprocess on 127.0.0.1 (TCP and web)."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests._server import RunningServer, running_server


@pytest.fixture(scope="module")
def gameframe_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A real gameframe server with the demo rooms, for the tests of one module."""
    with running_server(tmp_path_factory.mktemp("gameframe-server")) as server:
        yield server
