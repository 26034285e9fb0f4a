"""twistd plugin: `twistd -n gameframe` (lazy; the code lives in gameframe.tap)."""

from twisted.application.service import ServiceMaker

gameframe = ServiceMaker(
    "gameframe",
    "gameframe.tap",
    "A multiplayer game server: rooms over TCP and WebSocket.",
    "gameframe",
)
