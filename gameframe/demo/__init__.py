"""The built-in demo rooms, served by `twistd -n gameframe` when no --room is given."""

from __future__ import annotations

from gameframe.demo.arena import Arena
from gameframe.demo.chat import ChatRoom
from gameframe.demo.tictactoe import TicTacToe
from gameframe.demo.world import World
from gameframe.room import Room

DEMO_ROOMS: dict[str, type[Room]] = {
    "chat": ChatRoom,
    "tictactoe": TicTacToe,
    "arena": Arena,
    "world": World,
}
