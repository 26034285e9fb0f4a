"""The plain numbers one server counts as it runs, cheap enough for the hot path; read by gameframe.metrics at scrape time."""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING, Any, Mapping, Sequence
from weakref import WeakSet

from gameframe._actions import actions_of
from gameframe.vocabulary import LOBBY_ACTIONS

if TYPE_CHECKING:
    from gameframe._link import LinkFactory

# Upper bounds of the histograms' buckets (Prometheus' le).
TICK_SECONDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
PATCH_BYTES = (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536, 262144, 1048576)
SNAPSHOT_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
SNAPSHOT_BYTES = (256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216)

# The action label of the messages whose action no room type (nor the lobby) has.
OTHER_ACTION = "other"


class Distribution:
    """
    A histogram kept as plain numbers: C{observe} costs a bisect and two
    additions, no lock (everything runs on the reactor thread, the scrape
    included), about a fifth of prometheus_client's C{Histogram.observe}.

    @ivar bounds: the buckets' upper bounds, ascending.
    @ivar counts: observations per bucket (not cumulative); the last one is
        above every bound (+Inf).
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, int]]:
        """Cumulative counts by upper bound, as Prometheus exposes them (C{+Inf} last)."""
        cumulative, total = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts):
            total += count
            cumulative.append(("+Inf" if bound == float("inf") else repr(float(bound)), total))
        return cumulative


class Metrics:
    """
    What one RoomService and its connections count: plain integers and
    dicts, incremented where things happen (a read, a frame, a flush, a
    tick) and read by L{gameframe.metrics.MetricsCollector} when Prometheus
    scrapes. Gauges (connections, rooms, players, unsent bytes) are not kept
    here: the collector computes them from what the service already knows.

    @param room_types: the service's room types (its live dict), so that
        messages are counted by action only for action names that exist.
    """

    # Slots: the hot path's increments are the cheapest attribute stores there are.
    __slots__ = (
        "_room_types",
        "factories",
        "bytes_received",
        "bytes_sent",
        "messages_sent",
        "received",
        "errors",
        "disconnects",
        "rate_limited",
        "tick_overruns",
        "tick_seconds",
        "patch_bytes",
        "snapshot_seconds",
        "snapshot_bytes",
    )

    def __init__(self, room_types: Mapping[str, type[Any]] = {}) -> None:
        self._room_types = room_types
        # The endpoints' connection factories (for the connection gauges).
        self.factories: WeakSet[LinkFactory] = WeakSet()
        self.bytes_received = 0
        self.bytes_sent = 0
        self.messages_sent = 0
        # Decoded messages received, by action (only known actions are keys).
        self.received: dict[str, int] = {}
        # error messages sent to clients, by code; connections ended, by code.
        self.errors: dict[str, int] = {}
        self.disconnects: dict[str, int] = {}
        self.rate_limited = 0  # messages dropped over the connection's rate
        self.tick_overruns = 0
        self.tick_seconds = Distribution(TICK_SECONDS)
        self.patch_bytes = Distribution(PATCH_BYTES)
        self.snapshot_seconds = Distribution(SNAPSHOT_SECONDS)
        self.snapshot_bytes = Distribution(SNAPSHOT_BYTES)

    def first_received(self, action: str) -> None:
        """
        A message whose action has no key in L{received} yet: a known action
        gets one, anything else counts as C{other} (a client choosing
        action names must not choose the metrics' label values).
        """
        received = self.received
        if action in LOBBY_ACTIONS or any(
            action in actions_of(room_class) for room_class in self._room_types.values()
        ):
            received[action] = received.get(action, 0) + 1
        else:
            received[OTHER_ACTION] = received.get(OTHER_ACTION, 0) + 1

    def error(self, code: str) -> None:
        """An C{error} with this code was sent to a client."""
        self.errors[code] = self.errors.get(code, 0) + 1

    def disconnect(self, code: str) -> None:
        """A connection was ended with this disconnect code."""
        self.disconnects[code] = self.disconnects.get(code, 0) + 1

    def snapshot_saved(self, seconds: float, size: int) -> None:
        """
        A room's snapshot was written: C{seconds} from taking it to the
        store's acknowledgement, C{size} bytes as stored
        (C{gameframe_snapshot_seconds} and C{gameframe_snapshot_bytes}).
        """
        self.snapshot_seconds.observe(seconds)
        self.snapshot_bytes.observe(size)
