"""examples/pygame_arena.py runs headless against a real server; another client sees it play."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from gameframe.client import GameClient
from tests._server import RunningServer

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "pygame_arena.py"
TIMEOUT = 30.0


def test_the_pygame_example_joins_and_moves(
    gameframe_server: RunningServer, tmp_path: Path
) -> None:
    observer = GameClient.connect("127.0.0.1", gameframe_server.port, timeout=TIMEOUT)
    try:
        # The example's join_or_create finds this arena.
        room_id = observer.create("arena", timeout=TIMEOUT)["room_id"]
        seen: dict[str, set[tuple[float, float]]] = {}

        def players() -> dict[str, Any]:
            tree: Any = observer.state.state
            return tree["players"] if isinstance(tree, dict) else {}

        def moved(message: object = None) -> bool:
            for player_id, avatar in players().items():
                if player_id != observer.player_id:
                    seen.setdefault(player_id, set()).add((avatar["x"], avatar["y"]))
            return any(len(positions) > 1 for positions in seen.values())

        env = {
            **os.environ,
            "SDL_VIDEODRIVER": "dummy",
            "SDL_AUDIODRIVER": "dummy",
            "PYGAME_HIDE_SUPPORT_PROMPT": "1",
        }
        screenshot = tmp_path / "arena.png"
        command = [
            sys.executable,
            str(EXAMPLE),
            "--host", "127.0.0.1",
            "--port", str(gameframe_server.port),
            "--frames", "60",
            "--auto",
            "--screenshot", str(screenshot),
        ]  # fmt: skip
        process = subprocess.Popen(
            command,
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            # While it plays, the observer sees a new player walk.
            observer.wait_for(moved, TIMEOUT)
            out, err = process.communicate(timeout=TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate(timeout=TIMEOUT)
        assert process.returncode == 0, err.decode(errors="replace")

        found = re.search(r"^joined (\S+) as (\S+)$", out.decode(), re.MULTILINE)
        assert found, out
        assert found.group(1) == room_id
        player_id = found.group(2)
        assert len(seen[player_id]) > 1
        assert "left after" in out.decode()
        # It left at the end: the observer sees it gone.
        if player_id in players():
            observer.wait_for(lambda m: player_id not in players(), TIMEOUT)
        assert screenshot.stat().st_size > 0
    finally:
        observer.close()
