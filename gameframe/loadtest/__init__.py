"""gameframe-loadtest: drive simulated players against a gameframe server and measure it. What a user imports."""

from gameframe.loadtest.cli import main
from gameframe.loadtest.player import SimulatedPlayer

__all__ = ["SimulatedPlayer", "main"]
