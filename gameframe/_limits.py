"""Per-connection and per-server limits: their settings (defaults are the documented ones)."""

from __future__ import annotations

import attrs

DEFAULT_RATE = 100.0
DEFAULT_BURST = 200
DEFAULT_FRAME_TIMEOUT = 30.0
DEFAULT_IDLE_TIMEOUT = 120.0
DEFAULT_MAX_CONNECTIONS = 10000
DEFAULT_MAX_PER_ADDRESS = 0
# Seconds a client may stay over its message rate before it is disconnected (flooding).
FLOOD_GRACE = 5.0


@attrs.frozen
class Limits:
    """
    What one server allows each connection (shared by TCP and WebSocket).

    @ivar rate: messages per second a connection may send, sustained (0: no limit).
    @ivar burst: messages it may send at once above the rate.
    @ivar frame_timeout: seconds a message may take from its first byte to its end.
    @ivar idle_timeout: seconds without any message before the connection is closed.
    @ivar max_connections: connections open at once, all endpoints together.
    @ivar max_per_address: connections open at once from one IP address (0: no limit).
    """

    rate: float = DEFAULT_RATE
    burst: int = DEFAULT_BURST
    frame_timeout: float = DEFAULT_FRAME_TIMEOUT
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_per_address: int = DEFAULT_MAX_PER_ADDRESS
    flood_grace: float = FLOOD_GRACE
