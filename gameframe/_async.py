"""Call author code that may be synchronous, return a Deferred, or be `async def`."""

from __future__ import annotations

import functools
from types import CoroutineType
from typing import Any, Callable, ParamSpec, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred

P = ParamSpec("P")
T = TypeVar("T")


def call(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """
    Call C{func}; a coroutine becomes a Deferred, anything else is returned as is.

    Synchronous results stay plain values so the hot path makes no Deferreds.
    Exceptions raised synchronously propagate.
    """
    result = func(*args, **kwargs)
    if type(result) is CoroutineType:
        return Deferred.fromCoroutine(result)
    return result


def settled(deferred: Deferred[Any]) -> bool:
    """Whether a Deferred has a result already (so callbacks added now run now)."""
    done: list[bool] = []

    def mark(result: Any) -> Any:
        done.append(True)
        return result

    deferred.addBoth(mark)
    return bool(done)


def answers(method: Callable[P, T]) -> Callable[P, Deferred[T]]:
    """
    Make a synchronous method answer as a remote store's calls do, with a
    Deferred: of what it returns, or of what it raises (the in-memory stores).
    """

    @functools.wraps(method)
    def answer(*args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        return maybeDeferred(method, *args, **kwargs)

    return answer
