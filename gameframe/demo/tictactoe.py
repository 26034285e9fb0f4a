"""The tic-tac-toe demo: two players, turns, a game that ends, and each signed-in player's wins kept in player storage."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from gameframe import GameError, Player, Room, VersionConflict, action

LINES = (
    (0, 1, 2), (3, 4, 5), (6, 7, 8),  # rows
    (0, 3, 6), (1, 4, 7), (2, 5, 8),  # columns
    (0, 4, 8), (2, 4, 6),  # diagonals
)

# Where a signed-in player's record is kept: storage owner = its identity.
STATS = "tictactoe"
RECORD = "record"


def identity(player: Player) -> str | None:
    """The storage owner for a player: its C{authenticate} identity as a string, if any."""
    user = player.user
    if isinstance(user, str):
        return user
    if isinstance(user, dict):
        for field in ("sub", "name", "id"):
            if isinstance(user.get(field), str):
                return str(user[field])
    return None


class TicTacToe(Room):
    """
    Two players take turns placing their mark on cells 0-8.

    Messages: C{start} (marks and who moves first) when the second player
    joins, C{placed} after each move, and C{game_over} with C{winner}: the
    winner's player_id, or null for a draw.

    The whole game is the synchronized state (C{board}, C{marks}, C{turn},
    C{over}, C{wins}), so a player that reconnects, after a drop or a
    server restart with C{--store}, gets the board and whose turn it is.
    C{wins} holds, for each signed-in player (C{authenticate}), the games
    it has won, kept in player storage.
    """

    max_players = 2

    def on_create(self, options: dict[str, Any]) -> None:
        self.state = {
            "board": [None] * 9,
            "marks": {},  # player id -> "X" or "O"
            "turn": None,
            "over": False,
            "wins": {},  # player id -> games won (signed-in players)
        }

    def on_join(self, player: Player, options: dict[str, Any]) -> Any:
        state = self.state
        if state["over"]:
            raise GameError("game_over", "this game has ended")
        state["marks"][player.id] = "O" if "X" in state["marks"].values() else "X"
        if len(self.players) == 2:
            state["turn"] = next(p for p, mark in state["marks"].items() if mark == "X")
            self.broadcast({"action": "start", "marks": state["marks"], "turn": state["turn"]})
        owner = identity(player)
        if owner is not None:
            return self._show_wins(player, owner)
        return None

    async def _show_wins(self, player: Player, owner: str) -> None:
        found = await self.storage.read(owner, STATS, RECORD)
        if found is not None and player.id in self.players:
            self.state["wins"][player.id] = found[0].get("wins", 0)

    def on_leave(self, player: Player, reason: str) -> None:
        # Walking out of a game forfeits it to the other player; the room
        # closing under both of them (disposed, server shutdown) does not.
        state = self.state
        others = [p for p in self.players if p != player.id]
        if state["turn"] is not None and not state["over"] and others:
            if reason not in ("disposed", "shutdown"):
                self._finish(winner=others[0], reason="forfeit")
        state["marks"].pop(player.id, None)

    @action
    def place(self, player: Player, cell: int) -> None:
        state = self.state
        board = state["board"]
        if not 0 <= cell <= 8:
            raise GameError("bad_arguments", "place: cell must be 0 to 8")
        if state["over"]:
            raise GameError("game_over", "the game has ended")
        if state["turn"] is None:
            raise GameError("not_started", "waiting for a second player")
        if state["turn"] != player.id:
            raise GameError("not_your_turn", "wait for the other player's move")
        if board[cell] is not None:
            raise GameError("cell_taken", f"cell {cell} is taken")
        mark = state["marks"][player.id]
        board[cell] = mark
        state["turn"] = next(p for p in state["marks"] if p != player.id)
        self.broadcast(
            {
                "action": "placed",
                "player_id": player.id,
                "cell": cell,
                "mark": mark,
                "turn": state["turn"],
            }
        )
        if any(all(board[i] == mark for i in line) for line in LINES):
            self._finish(winner=player.id, reason="line")
        elif all(board):
            self._finish(winner=None, reason="draw")

    def _finish(self, winner: str | None, reason: str) -> None:
        state = self.state
        state["over"] = True
        state["turn"] = None
        self.lock()
        self.broadcast(
            {"action": "game_over", "winner": winner, "reason": reason, "board": state["board"]}
        )
        player = self.players.get(winner) if winner is not None else None
        owner = identity(player) if player is not None else None
        if player is not None and owner is not None:
            self._count_win(player.id, owner).addErrback(
                lambda failure: self.log.failure("{room}: a win was not kept", failure, room=self)
            )

    def _count_win(self, player_id: str, owner: str) -> Deferred[None]:
        """Add one win to the owner's record: read, write with its version, again on a conflict."""

        async def count() -> None:
            while True:
                found = await self.storage.read(owner, STATS, RECORD)
                record, version = found if found is not None else ({"wins": 0}, "*")
                record = {**record, "wins": record.get("wins", 0) + 1}
                try:
                    await self.storage.write(owner, STATS, RECORD, record, version)
                except VersionConflict:
                    continue  # another game counted one meanwhile: read again
                if not self.disposed:
                    self.state["wins"][player_id] = record["wins"]
                return

        return Deferred.fromCoroutine(count())
