"""When and how fast the Python clients reconnect by themselves: the policy both clients share."""

from __future__ import annotations

import random
from typing import Callable

import attrs

#: The C{disconnect} code of a connection lost without any C{disconnect} message.
CONNECTION_LOST = "connection_lost"


@attrs.frozen
class Backoff:
    """
    The delays between reconnection attempts: C{initial} seconds, then
    C{factor} times longer after each failed attempt, at most C{maximum},
    each shortened by up to C{jitter} (0 to 1) at random, so that a
    server's thousand players do not all come back in the same instant.
    """

    initial: float = 0.25
    maximum: float = 5.0
    factor: float = 2.0
    jitter: float = 0.5

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """The seconds to wait before attempt number C{attempt} (from 1)."""
        ceiling = min(self.maximum, self.initial * self.factor ** (attempt - 1))
        return ceiling * (1 - self.jitter * rand())


@attrs.frozen
class AutoReconnect:
    """
    How a client takes its seat back by itself after its connection closed.

    It does when the server's C{disconnect} says C{"retry": true} (the
    server is restarting and keeps the seat), and, with C{on_loss}, when
    the connection is lost without any C{disconnect} message (a network
    drop). Only while the client is in a room (it has a token): a client
    in the lobby has nothing to take back. Never after the client closed
    the connection itself, nor after any other C{disconnect} (C{replaced},
    C{idle_timeout}...).

    @ivar on_loss: also reconnect after a connection lost without a
        C{disconnect} message (off by default: the seat is held only if the
        room holds seats, and the program may prefer to decide).
    @ivar give_up_after: seconds after the connection closed when the
        client stops trying (the server holds restored seats for 60
        seconds by default: C{--restore-grace}).
    @ivar backoff: the delays between attempts.
    @ivar rand: the random source of the jitter (a number in [0, 1)).
    """

    on_loss: bool = False
    give_up_after: float = 60.0
    backoff: Backoff = Backoff()
    rand: Callable[[], float] = attrs.field(default=random.random, eq=False, repr=False)

    def applies(self, close_code: str | None, retry: bool, token: str | None) -> bool:
        """Whether a connection that closed this way is worth reconnecting."""
        if token is None:
            return False
        return retry or (self.on_loss and close_code == CONNECTION_LOST)
