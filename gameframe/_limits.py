"""Per-connection and per-server limits: their settings (defaults are the documented ones) and the connection gate."""

from __future__ import annotations

import attrs
from twisted.internet import tcp

DEFAULT_RATE = 100.0
DEFAULT_BURST = 200
DEFAULT_FRAME_TIMEOUT = 30.0
DEFAULT_IDLE_TIMEOUT = 120.0
DEFAULT_MAX_CONNECTIONS = 10000
DEFAULT_MAX_PER_ADDRESS = 0
# Seconds a client may stay over its message rate before it is disconnected (flooding).
FLOOD_GRACE = 5.0
# At most one rate_limited error per this many seconds per connection.
RATE_ERROR_INTERVAL = 1.0
# The longest pause between two sweeps of a factory's connections for timeouts.
MAX_SWEEP_INTERVAL = 1.0


@attrs.frozen
class Limits:
    """
    What one server allows each connection (shared by TCP and WebSocket).

    @ivar rate: messages per second a connection may send, sustained (0: no limit).
    @ivar burst: messages it may send at once above the rate.
    @ivar frame_timeout: seconds a message may take from its first byte to its end (0: no limit).
    @ivar idle_timeout: seconds without any byte received before the connection is closed (0: no limit).
    @ivar max_connections: connections open at once, all endpoints together (0: no limit).
    @ivar max_per_address: connections open at once from one IP address (0: no limit).
    @ivar flood_grace: seconds a connection may keep sending over its rate before it is disconnected.
    """

    rate: float = DEFAULT_RATE
    burst: int = DEFAULT_BURST
    frame_timeout: float = DEFAULT_FRAME_TIMEOUT
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_per_address: int = DEFAULT_MAX_PER_ADDRESS
    flood_grace: float = FLOOD_GRACE

    def sweep_interval(self) -> float:
        """
        How often a factory checks its connections for timeouts: every
        second, or more often for timeouts shorter than two seconds; 0 when
        neither timeout is on.
        """
        timeouts = [t for t in (self.frame_timeout, self.idle_timeout) if t > 0]
        if not timeouts:
            return 0.0
        return min(MAX_SWEEP_INTERVAL, min(timeouts) / 2)


class ConnectionGate:
    """
    Counts one server's open connections, all endpoints together and per IP
    address, and refuses those over L{Limits.max_connections} or
    L{Limits.max_per_address}. A server's TCP and WebSocket factories share
    one; each connection calls L{admit} when it opens and, if admitted,
    L{release} when it closes.

    Connections without an IP address (UNIX sockets) count towards the
    total only. Behind a proxy every client has the proxy's address: leave
    C{max_per_address} off there.

    @ivar open: connections admitted and not yet released.
    @ivar refused: connections refused so far.
    """

    def __init__(self, limits: Limits = Limits()) -> None:
        self.limits = limits
        self.open = 0
        self.refused = 0
        self._per_address: dict[str, int] = {}

    def admit(self, address: str | None) -> bool:
        """Count a connection opening from C{address} if allowed; whether it is."""
        limits = self.limits
        if limits.max_connections and self.open >= limits.max_connections:
            self.refused += 1
            return False
        if limits.max_per_address and address is not None:
            count = self._per_address.get(address, 0)
            if count >= limits.max_per_address:
                self.refused += 1
                return False
            self._per_address[address] = count + 1
        self.open += 1
        return True

    def release(self, address: str | None) -> None:
        """An admitted connection from C{address} closed."""
        self.open -= 1
        if self.limits.max_per_address and address is not None:
            count = self._per_address.pop(address, 0) - 1
            if count > 0:
                self._per_address[address] = count

    def from_address(self, address: str) -> int:
        """Connections open from one address (counted only under C{max_per_address})."""
        return self._per_address.get(address, 0)


# Connections a listening port accepts in one reactor turn, at most. Twisted
# accepts 100 and more each turn while they keep coming; at ~0.2 ms of Python
# each (a player, a welcome, or a refusal) a connection storm would hold the
# reactor for tens of milliseconds at a time, and every player would feel it.
MAX_ACCEPTS_PER_TURN = 4


class _FairPort(tcp.Port):
    """A TCP port that accepts at most L{MAX_ACCEPTS_PER_TURN} connections a turn."""

    @property
    def numberAccepts(self) -> int:
        number: int = self.__dict__.get("_fair_accepts", MAX_ACCEPTS_PER_TURN)
        return number

    @numberAccepts.setter
    def numberAccepts(self, number: int) -> None:
        self.__dict__["_fair_accepts"] = max(1, min(number, MAX_ACCEPTS_PER_TURN))


def accept_fairly(port: object) -> None:
    """
    Bound how many connections a listening TCP port accepts per reactor
    turn (Twisted's own port grows its batch without limit), so a
    connection storm is served in small batches between other players'
    messages. Other kinds of ports are left as they are.
    """
    if type(port) is tcp.Port:
        port.__class__ = _FairPort
