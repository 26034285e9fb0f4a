"""The admin API of a real 2-node cluster on a real redis-server: one node's API lists and steers the other node's room."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests._redis import RunningRedis
from tests._server import RunningServer, poll, running_server

TOKEN = "cluster-admin-token"


def call(server: RunningServer, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        server.base_url + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.load(error)


def test_one_nodes_api_lists_and_kicks_in_another_nodes_room(redis_server: RunningRedis, tmp_path: Path) -> None:
    common = ("--redis", redis_server.url, "--admin-token", TOKEN)
    (tmp_path / "n1").mkdir()
    (tmp_path / "n2").mkdir()
    with running_server(tmp_path / "n1", "--node", "n1", *common) as n1, running_server(
        tmp_path / "n2", "--node", "n2", *common
    ) as n2:
        player = n2.connect()
        try:
            room_id = player.request("create", room="chat")["room_id"]

            def listed() -> Any:
                status, listing = call(n1, "GET", "/admin/rooms")
                return status == 200 and {r["room_id"]: r["node"] for r in listing["rooms"]}.get(room_id)

            assert poll(n1, "n2's room in n1's admin listing", listed) == "n2"
            status, room = call(n1, "GET", f"/admin/rooms/{room_id}")
            assert (status, room["node"], [s["player_id"] for s in room["seats"]]) == (
                200, "n2", [player.player_id]
            )
            status, answer = call(n1, "POST", f"/admin/rooms/{room_id}/kick", {"player_id": player.player_id})
            assert (status, answer["kicked"]) == (200, True)
            assert player.expect("left")["reason"] == "kicked"
            status, error = call(n1, "GET", f"/admin/rooms/{room_id}")
            assert (status, error["error"]) == (404, "room_not_found")  # its last player gone, it ended
        finally:
            player.close()
