"""A token bucket: a sustained rate with a burst above it, a few float operations per take."""

from __future__ import annotations


class TokenBucket:
    """
    C{rate} tokens per second, up to C{burst} saved; L{take} spends one.

    Time is passed in (seconds from the injected clock), so a bucket costs
    no timer and tests drive it with C{task.Clock}.
    """

    __slots__ = ("rate", "burst", "_tokens", "_at")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = float(max(burst, 1))
        self._tokens = self.burst
        self._at = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one; whether there was."""
        tokens = self._tokens
        if now > self._at:  # (a wall clock set back refills nothing, takes nothing)
            tokens += (now - self._at) * self.rate
        self._at = now
        if tokens > self.burst:
            tokens = self.burst
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return True
        self._tokens = tokens
        return False

    def wait(self) -> float:
        """Seconds until the next token (0: one is there now)."""
        missing = 1.0 - self._tokens
        return missing / self.rate if missing > 0 and self.rate > 0 else 0.0
