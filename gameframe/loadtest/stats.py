"""The load tester's counters and bounded latency histograms: recorded, snapshotted, merged, summarized."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import attrs

__all__ = ["Histogram", "Stats", "summarize"]

# Each power of two is split into this many buckets, so a recorded value is
# off by less than 1/_SUB (under 1 %); values below 2 * _SUB are exact.
_SUB_BITS = 7
_SUB = 1 << _SUB_BITS
#: The largest value a histogram holds (larger values are clamped): an hour in µs.
MAX_VALUE = 3600 * 1_000_000
#: Distinct error codes kept; further codes are counted under "other".
MAX_CODES = 64
#: Distinct names of players' own measurements kept (L{Stats.measure});
#: values under further names are counted in L{Stats.measures_dropped}.
MAX_MEASURES = 32
#: The longest name of a player's own measurement.
MAX_MEASURE_NAME = 64


def _bucket(value: int) -> int:
    shift = max(0, value.bit_length() - _SUB_BITS - 1)
    return (shift << _SUB_BITS) + (value >> shift)


def _bucket_range(index: int) -> tuple[int, int]:
    """The lowest and highest value that fall in bucket C{index}."""
    if index < 2 * _SUB:
        return index, index
    shift = (index >> _SUB_BITS) - 1
    mantissa = index - (shift << _SUB_BITS)
    return mantissa << shift, ((mantissa + 1) << shift) - 1


class Histogram:
    """
    An HDR-like histogram of non-negative integers (microseconds here):
    log-linear buckets, under 1 % error, bounded memory (at most a few
    thousand buckets whatever is recorded), mergeable across processes.
    The exact minimum and maximum are kept besides.
    """

    __slots__ = ("counts", "count", "total", "min", "max")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.count = 0
        self.total = 0
        self.min: int | None = None
        self.max: int | None = None

    def record(self, value: int) -> None:
        value = min(max(value, 0), MAX_VALUE)
        index = _bucket(value)
        counts = self.counts
        counts[index] = counts.get(index, 0) + 1
        self.count += 1
        self.total += value
        if self.max is None or value > self.max:
            self.max = value
        if self.min is None or value < self.min:
            self.min = value

    def record_seconds(self, seconds: float) -> None:
        """Record a duration given in seconds (kept in microseconds)."""
        self.record(round(seconds * 1_000_000))

    def percentile(self, percent: float) -> int | None:
        """
        The value at C{percent} (0-100): the middle of the bucket holding
        the rank-th smallest value, within the exact min and max. L{None}
        when nothing was recorded.
        """
        if not self.count:
            return None
        assert self.min is not None and self.max is not None
        rank = max(1, -(-self.count * percent // 100))  # ceil, at least the first
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                low, high = _bucket_range(index)
                return min(max((low + high) // 2, self.min), self.max)
        return self.max

    def merge(self, other: Histogram) -> None:
        """Add another histogram's values to this one."""
        counts = self.counts
        for index, count in other.counts.items():
            counts[index] = counts.get(index, 0) + count
        self.count += other.count
        self.total += other.total
        if other.max is not None and (self.max is None or other.max > self.max):
            self.max = other.max
        if other.min is not None and (self.min is None or other.min < self.min):
            self.min = other.min

    def to_json(self) -> dict[str, Any]:
        return {
            "counts": {str(index): count for index, count in self.counts.items()},
            "total": self.total,
            "min": self.min,
            "max": self.max,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Histogram:
        histogram = cls()
        histogram.counts = {int(index): int(n) for index, n in data["counts"].items()}
        histogram.count = sum(histogram.counts.values())
        histogram.total = int(data["total"])
        histogram.min = data["min"]
        histogram.max = data["max"]
        return histogram

    def summary_ms(self) -> dict[str, Any]:
        """Count, p50, p90, p99, max, min and mean in milliseconds (L{None} when empty)."""

        def ms(value: float | None) -> float | None:
            return None if value is None else round(value / 1000, 3)

        return {
            "count": self.count,
            "p50": ms(self.percentile(50)),
            "p90": ms(self.percentile(90)),
            "p99": ms(self.percentile(99)),
            "max": ms(self.max),
            "min": ms(self.min),
            "mean": ms(self.total / self.count) if self.count else None,
        }


def _add_code(counter: dict[str, int], code: str, n: int = 1) -> None:
    if code not in counter and len(counter) >= MAX_CODES:
        code = "other"
    counter[code] = counter.get(code, 0) + n


_COUNTERS = (
    "players",
    "connecting",
    "connected_now",
    "in_room_now",
    "connected",
    "joined",
    "failed",
    "disconnected",
    "messages_in",
    "messages_out",
    "requests",
    "replies",
    "request_errors",
    "timeouts",
    "unanswered",
)


@attrs.define
class Stats:
    """
    What one process (or, merged, the whole run) has seen so far. Counts
    are cumulative except C{connecting}, C{connected_now} and
    C{in_room_now}, which are the current numbers.

    @ivar players: simulated players this process runs.
    @ivar connected: connections that got the server's welcome.
    @ivar joined: players seated in their room.
    @ivar failed: players that could not connect or join.
    @ivar disconnected: connections the server (or the network) closed
        during the run; C{disconnects} has their close codes.
    @ivar requests: requests sent by players; each ends as one of
        C{replies}, C{request_errors} (an C{error} reply), C{timeouts},
        C{unanswered} (the connection closed first), or is still pending.
    @ivar errors: by code: C{error} messages from the server, and the
        tester's own codes (C{connect_failed}, C{connect_timeout},
        C{join_timeout}, C{request_timeout}, C{room_not_created},
        C{player_error}).
    @ivar measures: the players' own measurements (L{SimulatedPlayer.record}),
        one histogram per name (at most L{MAX_MEASURES} names).
    @ivar measures_dropped: values recorded under a name past that limit.
    @ivar elapsed: seconds since this process's run started.
    """

    players: int = 0
    connecting: int = 0
    connected_now: int = 0
    in_room_now: int = 0
    connected: int = 0
    joined: int = 0
    failed: int = 0
    disconnected: int = 0
    messages_in: int = 0
    messages_out: int = 0
    requests: int = 0
    replies: int = 0
    request_errors: int = 0
    timeouts: int = 0
    unanswered: int = 0
    latency: Histogram = attrs.Factory(Histogram)
    join_latency: Histogram = attrs.Factory(Histogram)
    errors: dict[str, int] = attrs.Factory(dict)
    disconnects: dict[str, int] = attrs.Factory(dict)
    measures: dict[str, Histogram] = attrs.Factory(dict)
    measures_dropped: int = 0
    elapsed: float = 0.0

    def error(self, code: str, n: int = 1) -> None:
        _add_code(self.errors, code, n)

    def disconnect(self, code: str) -> None:
        self.disconnected += 1
        _add_code(self.disconnects, code)

    def measure(self, name: str) -> Histogram | None:
        """
        The histogram of the player measurement C{name}, made on first use;
        L{None} (the value is to be dropped) past L{MAX_MEASURES} names.
        """
        histogram = self.measures.get(name)
        if histogram is None:
            if len(self.measures) >= MAX_MEASURES:
                return None
            histogram = self.measures[name] = Histogram()
        return histogram

    @property
    def pending(self) -> int:
        return self.requests - self.replies - self.request_errors - self.timeouts - self.unanswered

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {name: getattr(self, name) for name in _COUNTERS}
        data["latency"] = self.latency.to_json()
        data["join_latency"] = self.join_latency.to_json()
        data["errors"] = dict(self.errors)
        data["disconnects"] = dict(self.disconnects)
        data["measures"] = {name: h.to_json() for name, h in self.measures.items()}
        data["measures_dropped"] = self.measures_dropped
        data["elapsed"] = self.elapsed
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Stats:
        stats = cls()
        for name in _COUNTERS:
            setattr(stats, name, int(data[name]))
        stats.latency = Histogram.from_json(data["latency"])
        stats.join_latency = Histogram.from_json(data["join_latency"])
        stats.errors = {str(k): int(v) for k, v in data["errors"].items()}
        stats.disconnects = {str(k): int(v) for k, v in data["disconnects"].items()}
        stats.measures = {
            str(name): Histogram.from_json(h) for name, h in data.get("measures", {}).items()
        }
        stats.measures_dropped = int(data.get("measures_dropped", 0))
        stats.elapsed = float(data["elapsed"])
        return stats

    def copy(self) -> Stats:
        return Stats.from_json(self.to_json())

    @classmethod
    def merged(cls, parts: Iterable[Stats]) -> Stats:
        """The sum of several processes' stats (elapsed: the longest)."""
        total = cls()
        for part in parts:
            for name in _COUNTERS:
                setattr(total, name, getattr(total, name) + getattr(part, name))
            total.latency.merge(part.latency)
            total.join_latency.merge(part.join_latency)
            for code, n in part.errors.items():
                total.error(code, n)
            for code, n in part.disconnects.items():
                _add_code(total.disconnects, code, n)
            total.measures_dropped += part.measures_dropped
            for name, histogram in part.measures.items():
                mine = total.measure(name)
                if mine is None:
                    total.measures_dropped += histogram.count
                else:
                    mine.merge(histogram)
            total.elapsed = max(total.elapsed, part.elapsed)
        return total


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def summarize(
    total: Stats, parts: list[Stats], run: Mapping[str, Any], complete: bool
) -> dict[str, Any]:
    """
    The JSON summary of a run.

    @param total: the merged stats.
    @param parts: each process's stats (one for a single-process run).
    @param run: what was asked (target, room, counts...), copied in.
    @param complete: whether the run ended on its own (not interrupted,
        no worker lost).
    """
    seconds = total.elapsed
    return {
        **run,
        "complete": complete,
        "duration": round(seconds, 3),
        "connections": {
            "players": total.players,
            "connected": total.connected,
            "joined": total.joined,
            "failed": total.failed,
            "disconnected": total.disconnected,
        },
        "messages": {
            "in": total.messages_in,
            "out": total.messages_out,
            "in_per_second": _rate(total.messages_in, seconds),
            "out_per_second": _rate(total.messages_out, seconds),
        },
        "requests": {
            "sent": total.requests,
            "answered": total.replies,
            "errors": total.request_errors,
            "timeouts": total.timeouts,
            "unanswered": total.unanswered + total.pending,
            "per_second": _rate(total.requests, seconds),
        },
        "latency_ms": total.latency.summary_ms(),
        "join_latency_ms": total.join_latency.summary_ms(),
        "measures_ms": {
            name: total.measures[name].summary_ms() for name in sorted(total.measures)
        },
        "measures_dropped": total.measures_dropped,
        "errors": dict(sorted(total.errors.items())),
        "disconnects": dict(sorted(total.disconnects.items())),
        "per_process": [
            {
                "process": number,
                "players": part.players,
                "connected": part.connected,
                "joined": part.joined,
                "failed": part.failed,
                "disconnected": part.disconnected,
                "messages_in": part.messages_in,
                "messages_out": part.messages_out,
                "requests": part.requests,
                "answered": part.replies,
                "errors": sum(part.errors.values()),
                "latency_p99_ms": part.latency.summary_ms()["p99"],
                "measures_p99_ms": {
                    name: part.measures[name].summary_ms()["p99"] for name in sorted(part.measures)
                },
            }
            for number, part in enumerate(parts)
        ],
    }
