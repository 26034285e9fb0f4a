"""The tic-tac-toe demo room, tested the way a room author would: with gameframe.testing."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from gameframe.demo.tictactoe import TicTacToe
from gameframe.testing import FakeClient, Harness


class TicTacToeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.kit = Harness({"tictactoe": TicTacToe})
        self.first, self.second = self.kit.connect(), self.kit.connect()

    def start(self) -> tuple[FakeClient, FakeClient]:
        """Seat both players; (the one who moves first as X, the other)."""
        self.room_id = self.first.join_or_create("tictactoe")["room_id"]
        self.assertEqual(self.second.join_or_create("tictactoe")["room_id"], self.room_id)
        start = self.first.last("start")
        self.assertEqual(self.second.last("start"), start)
        by_id = {c.player_id: c for c in (self.first, self.second)}
        x = by_id[start["turn"]]
        o = self.second if x is self.first else self.first
        self.assertEqual(start["marks"], {x.player_id: "X", o.player_id: "O"})
        return x, o

    def play(self, moves: list[tuple[FakeClient, int]]) -> None:
        for client, cell in moves:
            reply = client.request("place", cell=cell)
            self.assertEqual(reply["action"], "result", reply)

    def assertError(self, client: FakeClient, code: str, **fields: Any) -> None:
        both = (self.first, self.second)
        before = [len(c.received("placed")) for c in both]
        reply = client.request("place", **fields)
        self.assertEqual(reply["action"], "error", reply)
        self.assertEqual(reply["code"], code, reply)
        self.assertEqual([len(c.received("placed")) for c in both], before)

    def test_a_whole_game_to_a_win(self) -> None:
        x, o = self.start()
        moves = [(x, 0), (o, 3), (x, 1), (o, 4), (x, 2)]
        self.play(moves)
        for client in (x, o):
            placed = client.received("placed")
            self.assertEqual(
                [(m["player_id"], m["cell"], m["mark"]) for m in placed],
                [(c.player_id, cell, "X" if c is x else "O") for c, cell in moves],
            )
            self.assertEqual([m["turn"] for m in placed[:-1]], [o.player_id, x.player_id] * 2)
            (over,) = client.received("game_over")
            self.assertEqual(over["winner"], x.player_id)
            self.assertEqual(over["board"], ["X", "X", "X", "O", "O", None, None, None, None])
            # game_over comes after the last move.
            self.assertGreater(client.messages.index(over), client.messages.index(placed[-1]))
        self.assertError(o, "game_over", cell=5)

    def test_second_player_can_win(self) -> None:
        x, o = self.start()
        self.play([(x, 0), (o, 2), (x, 1), (o, 4), (x, 8), (o, 6)])
        for client in (x, o):
            self.assertEqual(client.last("game_over")["winner"], o.player_id)

    def test_a_whole_game_to_a_draw(self) -> None:
        x, o = self.start()
        moves = [(x, 0), (o, 1), (x, 2), (o, 4), (x, 3), (o, 5), (x, 7), (o, 6), (x, 8)]
        self.play(moves)
        for client in (x, o):
            self.assertEqual(len(client.received("placed")), 9)
            (over,) = client.received("game_over")
            self.assertIn("winner", over)
            self.assertIsNone(over["winner"])
            self.assertEqual(over["board"], ["X", "O", "X", "X", "O", "O", "O", "X", "X"])

    def test_out_of_turn(self) -> None:
        x, o = self.start()
        self.assertError(o, "not_your_turn", cell=4)
        self.play([(x, 4)])
        self.assertError(x, "not_your_turn", cell=0)

    def test_occupied_cell(self) -> None:
        x, o = self.start()
        self.play([(x, 4)])
        self.assertError(o, "cell_taken", cell=4)
        # Still o's turn after the mistake.
        self.play([(o, 0)])

    def test_cell_out_of_range_or_not_an_integer(self) -> None:
        x, o = self.start()
        for cell in (-1, 9, 100):
            self.assertError(x, "bad_arguments", cell=cell)
        for cell in ("4", 4.0, True, None, [4]):
            self.assertError(x, "bad_arguments", cell=cell)
        self.assertError(x, "bad_arguments")
        self.assertError(x, "bad_arguments", cell=4, row=1)
        self.play([(x, 4)])

    def test_before_a_second_player(self) -> None:
        self.first.join_or_create("tictactoe")
        self.assertError(self.first, "not_started", cell=4)
        self.second.join_or_create("tictactoe")
        self.assertEqual(len(self.first.received("start")), 1)

    def test_leaving_mid_game_forfeits(self) -> None:
        x, o = self.start()
        self.play([(x, 4), (o, 0)])
        x.leave()
        over = o.last("game_over")
        self.assertEqual(over["winner"], o.player_id)
        self.assertEqual(over["reason"], "forfeit")
        self.assertEqual(x.received("game_over"), [])

    def test_disconnecting_mid_game_forfeits(self) -> None:
        x, o = self.start()
        self.play([(x, 4)])
        o.disconnect()
        self.assertEqual(x.last("game_over")["winner"], x.player_id)

    def test_leaving_after_the_game_is_no_forfeit(self) -> None:
        x, o = self.start()
        self.play([(x, 0), (o, 3), (x, 1), (o, 4), (x, 2)])
        o.leave()
        self.assertEqual(len(x.received("game_over")), 1)

    def test_leaving_before_the_start_is_no_forfeit(self) -> None:
        self.first.join_or_create("tictactoe")
        self.first.leave()
        self.assertEqual(self.first.received("game_over"), [])

    def test_shutdown_mid_game_is_no_forfeit(self) -> None:
        x, o = self.start()
        self.play([(x, 4)])
        self.kit.service.startService()
        self.successResultOf(self.kit.service.stopService())
        for client in (x, o):
            self.assertEqual(client.received("game_over"), [])
            self.assertEqual(client.last("left")["reason"], "shutdown")

    def test_a_third_player(self) -> None:
        x, o = self.start()
        third = self.kit.connect()
        self.assertEqual(third.join(self.room_id)["code"], "room_full")
        joined = third.join_or_create("tictactoe")
        self.assertEqual(joined["action"], "joined")
        self.assertNotEqual(joined["room_id"], self.room_id)
        self.assertEqual(joined["players"], [third.player_id])

    def test_a_finished_game_takes_nobody_new(self) -> None:
        x, o = self.start()
        self.play([(x, 0), (o, 3), (x, 1), (o, 4), (x, 2)])
        o.leave()
        newcomer = self.kit.connect()
        self.assertEqual(newcomer.join(self.room_id)["action"], "error")
        self.assertNotEqual(newcomer.join_or_create("tictactoe")["room_id"], self.room_id)
