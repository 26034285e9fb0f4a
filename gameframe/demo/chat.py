"""The chat demo: the smallest useful Room."""

from __future__ import annotations

from typing import Any

from gameframe import GameError, Player, Room, action


class ChatRoom(Room):
    """
    Everyone in the room sees what anyone says.

    Sends C{{"action": "said", "player_id": ..., "text": ...}} to everyone,
    and C{player_joined} / C{player_left} as people come and go.
    """

    max_players = 100
    max_text = 1000

    def on_join(self, player: Player, options: dict[str, Any]) -> None:
        self.broadcast({"action": "player_joined", "player_id": player.id})

    def on_leave(self, player: Player, reason: str) -> None:
        self.broadcast({"action": "player_left", "player_id": player.id})

    @action
    def say(self, player: Player, text: str) -> None:
        if not text.strip():
            raise GameError("bad_arguments", "say: text is empty")
        if len(text) > self.max_text:
            raise GameError("bad_arguments", f"say: text is over {self.max_text} characters")
        self.broadcast({"action": "said", "player_id": player.id, "text": text})
