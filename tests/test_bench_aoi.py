"""bench/aoi.py's load scenario: the Crowd room sends each player the clock stamp and the moves near it; the Walker measures patch delay from them."""

from __future__ import annotations

import math
from typing import Any

import orjson
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from bench.aoi import SETTLED, SIGHT, Crowd, Walker
from gameframe.jsonpatch import to_tree
from gameframe.loadtest.runner import Plan, make_player
from gameframe.loadtest.session import PlayerSession, RoomDirectory
from gameframe.loadtest.stats import Stats
from gameframe.testing import FakeClient, Harness
from gameframe.txclient import GameClientProtocol


def crowd_of_two(npcs: int = 400) -> tuple[Harness, FakeClient, FakeClient, Crowd]:
    kit = Harness({"crowd": Crowd})
    alice, bob = kit.connect(), kit.connect()
    joined = alice.create("crowd", npcs=npcs, players=2)
    bob.join(joined["room_id"])
    room = kit.room_of(alice)
    assert isinstance(room, Crowd)
    return kit, alice, bob, room


def near(room: Crowd, player_id: str) -> dict[str, Any]:
    """The entities within sight of a player's avatar, as the state has them."""
    entities = to_tree(room.state)["entities"]
    me = entities[player_id]
    return {
        key: value for key, value in entities.items()
        if math.hypot(value["x"] - me["x"], value["y"] - me["y"]) <= SIGHT
    }


def test_each_patch_carries_the_stamp_and_the_npcs_moving_near_the_player() -> None:
    kit, alice, bob, room = crowd_of_two()
    before = dict(alice.state["entities"])
    kit.advance_ticks(3)
    patch = alice.last("patch")["patch"]
    assert patch[0]["path"] == "/t"  # first: outside the entities, to every player
    assert any(op["path"].startswith("/entities/n") for op in patch)  # the NPCs move
    assert alice.state["entities"] != before
    for client in (alice, bob):
        assert client.state["entities"] == near(room, client.player_id)
        assert client.state["players"] == 2 and client.state["you"] == client.player_id


def test_a_player_steers_its_avatar() -> None:
    kit, alice, _, room = crowd_of_two(npcs=10)
    start = dict(alice.state["entities"][alice.player_id])
    alice.request("move", dx=3, dy=0)  # any length: a direction
    kit.advance_ticks(20)  # a second at 20 ticks a second
    now = alice.state["entities"][alice.player_id]
    walked = now["x"] - start["x"]
    assert now["y"] == start["y"]
    assert 99 <= walked <= 101 or now["x"] == room.size  # 100 units a second, up to the edge


def test_the_room_measures_once_no_one_has_joined_for_a_while() -> None:
    kit = Harness({"crowd": Crowd})
    alice = kit.connect()
    alice.create("crowd", npcs=10, players=1000)  # 999 never come
    room = kit.room_of(alice)
    kit.advance(SETTLED / 2)
    assert not room.metadata.get("measuring")
    kit.advance(SETTLED)
    assert room.metadata["measuring"] is True and alice.state["measuring"] is True


def test_the_walker_records_patch_delay_and_gap_while_the_room_measures() -> None:
    kit, alice, bob, room = crowd_of_two()
    kit.advance_ticks(3)
    state, *patches = alice.received("state") + alice.received("patch")
    clock = Clock()
    transport = StringTransport()
    client = GameClientProtocol(mirror=False)
    client.makeConnection(transport)

    def say(message: dict[str, Any]) -> None:
        client.dataReceived(orjson.dumps(message) + b"\n")

    say({"action": "welcome", "player_id": alice.player_id})
    stats = Stats()
    plan = Plan(url="tcp://127.0.0.1:7000", room="crowd", players=2, rooms=1, duration=10,
                ramp=0, fields={"players": 2})
    session = PlayerSession(
        clock, make_player(Walker, plan, 0, clock), connect=lambda: succeed(client),
        directory=RoomDirectory(), stats=stats, room_type="crowd", room_options={},
        creator=True, connect_timeout=5, request_timeout=5,
    )
    session.start()
    say({"action": "joined", "id": 1, "room": "crowd", "room_id": "r1",
         "player_id": alice.player_id, "players": [alice.player_id], "token": "t"})
    say(state)  # alice's full state: only she was in (1 of 2 players): not measuring yet
    assert state["state"]["measuring"] is False
    assert "patch_delay" not in stats.measures
    for patch in patches:  # bob's arrival (measuring from then on), then three ticks
        say(patch)
    assert stats.measures["patch_delay"].count == len(patches)
    assert stats.measures["patch_gap"].count == len(patches) - 1
    bob.leave()  # the first leave ends the window
    kit.advance_ticks(2)
    for patch in alice.received("patch")[len(patches):]:
        say(patch)
    assert stats.measures["patch_delay"].count == len(patches)
    transport.clear()
    clock.advance(Walker.interval)  # it steers: a move request, a unit direction
    move = orjson.loads(transport.value().splitlines()[-1])
    assert move["action"] == "move"
    assert math.isclose(math.hypot(move["dx"], move["dy"]), 1.0)
