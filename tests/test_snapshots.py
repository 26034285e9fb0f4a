"""Rooms that outlive their server: saved while they run, kept through a graceful stop, restored on start (in memory, on a fake clock)."""

from __future__ import annotations

from typing import Any

import orjson
from prometheus_client import generate_latest
from twisted.trial.unittest import SynchronousTestCase

from gameframe import Player, Room, action
from gameframe.demo.arena import Arena
from gameframe.demo.tictactoe import TicTacToe
from gameframe.metrics import metrics_registry
from gameframe.service import RoomService
from gameframe.store.memory import MemoryPlayerStorage, MemoryRoomStore
from gameframe.testing import FakeClient, Harness

ROOMS: dict[str, type[Room]] = {"tictactoe": TicTacToe, "arena": Arena}


class Counter(Room):
    """Counts; its snapshot is its own shape (version 2: the count is under 'n')."""

    snapshot_version = 2
    snapshot_interval = 0  # only at shutdown (and on seat changes)
    reconnect_timeout = 10
    migrated: list[int] = []

    def on_create(self, options: dict[str, Any]) -> None:
        self.count = 0

    @action
    def add(self, player: Player) -> int:
        self.count += 1
        return self.count

    def snapshot(self) -> Any:
        return {"n": self.count}

    def restore(self, snapshot: Any) -> None:
        self.count = snapshot["n"]

    def migrate(self, snapshot: Any, version: int) -> Any:
        self.migrated.append(version)
        return {"n": snapshot["count"]}


class Broken(Room):
    def restore(self, snapshot: Any) -> None:
        raise RuntimeError("cannot come back")


class Server:
    """One run of a server on a store: a Harness started, and stopped gracefully or killed."""

    def __init__(self, store: MemoryRoomStore, **options: Any) -> None:
        self.kit = Harness({**ROOMS, "counter": Counter, "broken": Broken}, store=store, **options)
        self.kit.service.startService()

    def stop(self) -> None:
        self.kit.service.stopService()
        self.kit.advance(1)


class SnapshotTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = MemoryRoomStore()
        self.storage = MemoryPlayerStorage()
        self.server = Server(self.store, storage=self.storage)
        self.kit = self.server.kit

    def restart(self, **options: Any) -> Harness:
        """Stop gracefully, then a new server on the same store (and player storage)."""
        self.server.stop()
        return self.start_again(**options)

    def start_again(self, **options: Any) -> Harness:
        self.server = Server(self.store, storage=self.storage, **options)
        self.kit = self.server.kit
        return self.kit

    def half_played_tictactoe(self) -> tuple[FakeClient, FakeClient, str]:
        alice, bob = self.kit.connect(), self.kit.connect()
        room_id = alice.join_or_create("tictactoe")["room_id"]
        bob.join_or_create("tictactoe")
        start = alice.last("start")
        x, o = (alice, bob) if start["turn"] == alice.player_id else (bob, alice)
        for client, cell in [(x, 0), (o, 3), (x, 1)]:
            self.assertEqual(client.request("place", cell=cell)["action"], "result")
        return x, o, room_id

    def back(self, client: FakeClient) -> FakeClient:
        """The client reconnects to the current server with its latest token."""
        again = self.kit.connect()
        reply = again.request("reconnect", token=client.token)
        self.assertEqual(reply["action"], "joined", reply)
        return again

    def test_a_tictactoe_game_goes_on_after_a_graceful_restart(self) -> None:
        x, o, room_id = self.half_played_tictactoe()
        self.server.stop()
        for client in (x, o):
            self.assertEqual(client.received("left"), [])
            last = client.last()
            self.assertEqual(last["action"], "disconnect")
            self.assertEqual(last["code"], "server_shutdown")
            self.assertIs(last["retry"], True)
        self.start_again()
        x2, o2 = self.back(x), self.back(o)
        for client in (x2, o2):
            joined = client.last("joined")
            self.assertEqual(joined["room_id"], room_id)
            self.assertEqual(sorted(joined["players"]), sorted([x.player_id, o.player_id]))
            self.assertEqual(client.state["board"], ["X", "X", None, "O"] + [None] * 5)
            self.assertEqual(client.state["turn"], o.player_id)  # whose turn it is, too
        self.assertEqual(x2.player_id, x.player_id)
        self.assertEqual(o2.request("place", cell=4)["action"], "result")
        self.assertEqual(x2.request("place", cell=2)["action"], "result")
        for client in (x2, o2):
            self.assertEqual(client.last("game_over")["winner"], x.player_id)

    def test_an_arena_comes_back_with_its_avatars(self) -> None:
        alice = self.kit.connect()
        alice.join_or_create("arena")
        alice.send("move", x=10, y=20)
        self.kit.advance(10)  # walks there, and the periodic snapshot sees it
        self.server.stop()
        self.start_again()
        again = self.back(alice)
        self.assertEqual(again.state["players"][alice.player_id]["x"], 10)
        self.assertEqual(again.state["players"][alice.player_id]["y"], 20)
        again.send("move", x=15, y=20)
        self.kit.advance(1)
        self.assertEqual(again.state["players"][alice.player_id]["x"], 15)

    def test_a_killed_server_comes_back_at_its_last_periodic_snapshot(self) -> None:
        alice = self.kit.connect()
        room_id = alice.join_or_create("arena")["room_id"]
        alice.send("move", x=30, y=40)
        self.kit.advance(Arena.snapshot_interval + 1)  # saved walking there
        alice.send("move", x=700, y=500)
        self.kit.advance(0.5)  # moved, not saved yet
        # kill -9: no stop; the next process finds what the store has.
        self.start_again()
        again = self.back(alice)
        self.assertEqual(again.last("joined")["room_id"], room_id)
        self.assertEqual(again.state["players"][alice.player_id]["x"], 30)

    def test_a_new_token_is_saved_before_the_next_periodic_snapshot(self) -> None:
        alice = self.kit.connect()
        alice.join_or_create("counter")
        alice.disconnect()
        first = alice.reconnect()  # a new token
        self.kit.advance(0)
        self.start_again()  # killed: only the save after the reconnect has it
        self.back(first)

    def test_a_restored_seat_is_held_for_the_grace_whatever_the_room_says(self) -> None:
        x, o, _ = self.half_played_tictactoe()  # tic-tac-toe holds no seat on a drop
        self.restart(restore_grace=30)
        self.kit.advance(29)
        again = self.back(x)
        self.kit.advance(2)
        # The other never came back: it is out, and its walking out forfeits the game.
        self.assertEqual(again.last("game_over")["reason"], "forfeit")
        self.assertEqual(list(self.kit.room_of(again).players), [x.player_id])

    def test_an_unknown_token_still_fails(self) -> None:
        self.half_played_tictactoe()
        self.restart()
        stranger = self.kit.connect()
        reply = stranger.request("reconnect", token="nobody.secret")
        self.assertEqual(reply["code"], "invalid_token")

    def test_a_disposed_room_is_forgotten(self) -> None:
        alice = self.kit.connect()
        room_id = alice.join_or_create("counter")["room_id"]
        self.kit.advance(0)
        self.assertIsNotNone(self.successResultOf(self.store.load(room_id)))
        alice.leave()
        self.kit.advance(0)
        self.assertIsNone(self.successResultOf(self.store.load(room_id)))
        self.restart()
        self.assertEqual(self.kit.service.rooms, {})

    def test_an_older_snapshot_is_migrated(self) -> None:
        alice = self.kit.connect()
        room_id = alice.join_or_create("counter")["room_id"]
        alice.request("add")
        self.server.stop()
        saved = self.successResultOf(self.store.load(room_id))
        older = orjson.loads(saved.data)
        older["snapshot_version"] = 1
        older["room"] = {"count": 41}
        self.store.save(
            type(saved)(saved.room_id, saved.room_type, saved.node, saved.version + 1, orjson.dumps(older))
        )
        Counter.migrated.clear()
        self.start_again()
        again = self.back(alice)
        self.assertEqual(Counter.migrated, [1])
        self.assertEqual(again.request("add")["result"], 42)

    def test_a_room_that_cannot_be_restored_stays_saved_and_the_others_come_back(self) -> None:
        alice, bob = self.kit.connect(), self.kit.connect()
        broken_id = alice.join_or_create("broken")["room_id"]
        counter_id = bob.join_or_create("counter")["room_id"]
        self.restart()
        self.assertEqual(list(self.kit.service.rooms), [counter_id])
        self.assertIsNotNone(self.successResultOf(self.store.load(broken_id)))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_the_state_stream_goes_on_counting(self) -> None:
        alice = self.kit.connect()
        alice.join_or_create("arena")
        alice.send("move", x=100, y=100)
        self.kit.advance(1)
        seq = alice.last("patch")["seq"]
        self.restart()
        again = self.back(alice)
        self.assertGreaterEqual(again.last("state")["seq"], seq)

    def test_without_a_store_shutdown_is_as_before(self) -> None:
        kit = Harness(ROOMS)
        kit.service.startService()
        alice = kit.connect()
        alice.join_or_create("tictactoe")
        kit.service.stopService()
        kit.advance(1)
        self.assertEqual(alice.last("left")["reason"], "shutdown")
        self.assertNotIn("retry", alice.last("disconnect"))

    def test_wins_are_kept_for_signed_in_players(self) -> None:
        users = {"alice-token": "alice", "bob-token": "bob"}
        self.start_again(authenticate=users.get)
        won = {"alice": 0, "bob": 0}
        for _ in range(3):
            alice, bob = self.kit.connect(), self.kit.connect()
            names = {alice: "alice", bob: "bob"}
            alice.request("authenticate", token="alice-token")
            bob.request("authenticate", token="bob-token")
            alice.join_or_create("tictactoe")
            bob.join_or_create("tictactoe")
            x = alice if alice.last("start")["turn"] == alice.player_id else bob
            o = bob if x is alice else alice
            for client, cell in [(x, 0), (o, 3), (x, 1), (o, 4), (x, 2)]:
                client.request("place", cell=cell)
            self.kit.advance(0.1)
            won[names[x]] += 1
            # Both see the winner's count, kept across games.
            for client in (alice, bob):
                self.assertEqual(client.state["wins"][x.player_id], won[names[x]])
            alice.leave()
            bob.leave()
        for owner, count in won.items():
            found = self.successResultOf(self.storage.read(owner, "tictactoe", "record"))
            self.assertEqual(0 if found is None else found[0]["wins"], count)


class HarnessRestartTests(SynchronousTestCase):
    """What a room author writes to test that the room survives a deploy."""

    def test_an_author_tests_a_deploy_in_memory(self) -> None:
        from gameframe.testing import MemoryRoomStore as Store

        kit = Harness({"counter": Counter}, store=Store())
        alice = kit.connect()
        alice.join_or_create("counter")
        alice.request("add")
        kit.restart()
        self.assertIs(alice.last("disconnect")["retry"], True)
        again = alice.reconnect()
        self.assertEqual(again.last("joined")["player_id"], alice.player_id)
        self.assertEqual(again.request("add")["result"], 2)

    def test_restart_without_a_store_says_what_is_missing(self) -> None:
        kit = Harness({"counter": Counter})
        with self.assertRaises(AssertionError) as raised:
            kit.restart()
        self.assertIn("MemoryRoomStore", str(raised.exception))


class SnapshotMetricsTests(SynchronousTestCase):
    def test_each_saved_snapshot_is_measured(self) -> None:
        kit = Harness({"counter": Counter}, store=MemoryRoomStore())
        alice = kit.connect()
        alice.join_or_create("counter")
        kit.advance(0)  # the save after the join
        text = metrics_text(kit.service)
        self.assertIn("gameframe_snapshot_bytes_count", text)
        count = [
            line for line in text.splitlines() if line.startswith("gameframe_snapshot_seconds_count")
        ]
        self.assertEqual(len(count), 1)
        self.assertEqual(float(count[0].rsplit(" ", 1)[1]), 1.0)


def metrics_text(service: RoomService) -> str:
    return generate_latest(metrics_registry(service, process=False)).decode()
