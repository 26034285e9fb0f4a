"""The tic-tac-toe demo: two players, turns, and a game that ends."""

from __future__ import annotations

from typing import Any

from gameframe import GameError, Player, Room, action

LINES = (
    (0, 1, 2), (3, 4, 5), (6, 7, 8),  # rows
    (0, 3, 6), (1, 4, 7), (2, 5, 8),  # columns
    (0, 4, 8), (2, 4, 6),  # diagonals
)


class TicTacToe(Room):
    """
    Two players take turns placing their mark on cells 0-8.

    Messages: C{start} (marks and who moves first) when the second player
    joins, C{placed} after each move, and C{game_over} with C{winner}: the
    winner's player_id, or null for a draw.
    """

    max_players = 2

    def on_create(self, options: dict[str, Any]) -> None:
        self.board: list[str | None] = [None] * 9
        self.marks: dict[str, str] = {}  # player id -> "X" or "O"
        self.turn: str | None = None
        self.over = False

    def on_join(self, player: Player, options: dict[str, Any]) -> None:
        if self.over:
            raise GameError("game_over", "this game has ended")
        self.marks[player.id] = "O" if "X" in self.marks.values() else "X"
        if len(self.players) == 2:
            self.turn = next(p for p, mark in self.marks.items() if mark == "X")
            self.broadcast({"action": "start", "marks": self.marks, "turn": self.turn})

    def on_leave(self, player: Player, reason: str) -> None:
        # Walking out of a game forfeits it to the other player; the room
        # closing under both of them (disposed, server shutdown) does not.
        others = [p for p in self.players if p != player.id]
        if self.turn is not None and not self.over and others:
            if reason not in ("disposed", "shutdown"):
                self._finish(winner=others[0], reason="forfeit")
        self.marks.pop(player.id, None)

    @action
    def place(self, player: Player, cell: int) -> None:
        if not 0 <= cell <= 8:
            raise GameError("bad_arguments", "place: cell must be 0 to 8")
        if self.over:
            raise GameError("game_over", "the game has ended")
        if self.turn is None:
            raise GameError("not_started", "waiting for a second player")
        if self.turn != player.id:
            raise GameError("not_your_turn", "wait for the other player's move")
        if self.board[cell] is not None:
            raise GameError("cell_taken", f"cell {cell} is taken")
        mark = self.marks[player.id]
        self.board[cell] = mark
        self.turn = next(p for p in self.marks if p != player.id)
        self.broadcast(
            {
                "action": "placed",
                "player_id": player.id,
                "cell": cell,
                "mark": mark,
                "turn": self.turn,
            }
        )
        if any(all(self.board[i] == mark for i in line) for line in LINES):
            self._finish(winner=player.id, reason="line")
        elif all(self.board):
            self._finish(winner=None, reason="draw")

    def _finish(self, winner: str | None, reason: str) -> None:
        self.over = True
        self.turn = None
        self.lock()
        self.broadcast(
            {"action": "game_over", "winner": winner, "reason": reason, "board": self.board}
        )
