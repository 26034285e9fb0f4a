"""The scriptable simulated player: the class users subclass, the built-in players, and loading `module:Class`."""

from __future__ import annotations

import importlib
import os
import random
import sys
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from gameframe.client import Message

if TYPE_CHECKING:
    from gameframe.loadtest.session import PlayerSession

__all__ = ["ActionPlayer", "ArenaWalker", "SimulatedPlayer", "load_player"]


class SimulatedPlayer:
    """
    One simulated player: subclass it, override the hooks you need.

    The load tester connects the player, seats it in its room (the room's
    first player creates it, the others join it by id), calls L{on_join},
    then L{act} every C{interval} seconds (starting at a random offset, so
    players do not all act at once) until the run ends. From then on every
    message the server sends arrives in L{on_message}.

    Use L{send} for fire-and-forget messages and L{request} for
    request/response: the tester measures each request's round-trip time.
    L{record} keeps measurements of your own (how old a patch is when it
    arrives, how long a game took): the summary gives their percentiles.
    Everything is counted (messages, replies, errors by code) whether or
    not your code looks at it. Hooks run in the reactor thread: do not
    block in them.

    @cvar interval: seconds between L{act} calls (C{--interval} overrides
        it); L{None} or 0: never call L{act}.
    @cvar mirror_state: keep L{state}, the room's synchronized state, by
        applying every patch. Set it to C{False} if your player never reads
        L{state}: in a state-synced room applying patches is most of what
        a simulated player costs, so one process drives more players.
    @ivar index: this player's number in the run, 0 to players-1.
    @ivar room_index: the number of its room, 0 to rooms-1.
    @ivar room_type: the room type (C{--room}).
    @ivar room_id: the room's id once joined, else L{None}.
    @ivar player_id: the id the server gave this player, once welcomed.
    @ivar random: a C{random.Random} of its own, seeded from the run's
        C{--seed} and C{index} (runs with the same seed repeat).
    @ivar clock: the reactor (C{callLater}, C{seconds}).
    @ivar action: C{--action}, or L{None}.
    @ivar fields: C{--fields}, a dict (empty if not given).
    """

    interval: float | None = 1.0
    mirror_state: bool = True
    log = Logger()

    index: int
    room_index: int
    room_type: str
    random: random.Random
    clock: IReactorTime
    action: str | None
    fields: dict[str, Any]
    _session: PlayerSession

    room_id: str | None = None
    player_id: str | None = None

    # -- hooks ---------------------------------------------------------------------

    def on_join(self, joined: Message) -> None:
        """Seated in the room: C{joined} is the server's reply (room_id, players...)."""

    def on_message(self, message: Message) -> None:
        """
        Every message from the server once seated (the C{joined} reply goes
        to L{on_join}): state and patches, broadcasts, replies, errors.
        """

    def act(self) -> object:
        """
        The periodic action. Return the Deferred of a L{request} (or
        nothing): a failure it ends with is already counted, so returning
        it keeps it from being logged as unhandled.
        """
        return None

    def on_disconnect(self, code: str) -> None:
        """The server or the network closed the connection during the run (C{code} says why)."""

    # -- what a player can do --------------------------------------------------------

    @property
    def state(self) -> Any:
        """
        The room's synchronized state as this player sees it (L{None} if
        the room has none, or C{mirror_state} is false).
        """
        return self._session.state

    @property
    def connected(self) -> bool:
        """Whether the connection is open (L{send} and L{request} work)."""
        return self._session.connected

    def send(self, action: str, **fields: Any) -> None:
        """Send C{{"action": action, **fields}}, expecting no reply (a no-op once closed)."""
        self._session.send(action, fields)

    def request(self, action: str, **fields: Any) -> Deferred[Message]:
        """
        Send C{{"action": action, "id": .., **fields}}: a Deferred of the
        reply echoing the id (C{result}, C{joined}...). Its round trip is
        recorded; it fails with L{gameframe.client.ClientError} (its C{code})
        on an C{error} reply, with C{twisted.internet.defer.TimeoutError}
        after C{--request-timeout}, or with L{gameframe.client.Disconnected}.
        """
        return self._session.request(action, fields)

    def record(self, name: str, seconds: float) -> None:
        """
        Record a measurement of your own, a duration in C{seconds} (kept in
        microseconds; below 0 counts as 0), under C{name}: for each name the
        summary's C{measures_ms} gives the count, p50, p90, p99, max, min and
        mean in milliseconds, merged over every player and process, and the
        live display shows it. Each name is a bounded histogram (under 1 %
        error, a few thousand buckets at most, however many values); a run
        keeps up to 32 names, and values under further names are only
        counted (C{measures_dropped}).

        @raise ValueError: C{name} is empty or longer than 64 characters.
        """
        self._session.record(name, seconds)


class ArenaWalker(SimulatedPlayer):
    """
    The built-in player for the arena demo: ten times a second it asks to
    walk to a random point (C{move} as a request, so its round trip is
    measured). It does not keep the room's state.
    """

    interval = 0.1
    mirror_state = False

    def act(self) -> Deferred[Message]:
        return self.request(
            "move", x=self.random.uniform(0, 800), y=self.random.uniform(0, 600)
        )


class ActionPlayer(SimulatedPlayer):
    """
    The built-in player for any room: every C{interval} seconds (1 s) it
    sends C{--action} with C{--fields} as a request. It does not keep the
    room's state.
    """

    interval = 1.0
    mirror_state = False

    def act(self) -> Deferred[Message] | None:
        if self.action is None:
            return None
        return self.request(self.action, **self.fields)


#: The built-in players, by room type, for when no --player and no --action are given.
BUILT_IN: dict[str, type[SimulatedPlayer]] = {"arena": ArenaWalker}


class PlayerLoadError(Exception):
    """C{--player} names no usable SimulatedPlayer class."""


def load_player(spec: str) -> type[SimulatedPlayer]:
    """
    Import C{module:Class} (a dotted module importable from here or from
    the current directory, or a C{path/to/file.py:Class}) and check it is
    a L{SimulatedPlayer} subclass.

    @raise PlayerLoadError: with a message fit for the command line.
    """
    module_name, colon, class_name = spec.rpartition(":")
    if not (colon and module_name and class_name):
        raise PlayerLoadError(f"--player wants module:Class, not {spec!r}")
    if module_name.endswith(".py"):
        directory, file_name = os.path.split(os.path.abspath(module_name))
        module_name = file_name[: -len(".py")]
        search = directory
    else:
        search = os.getcwd()
    if search not in sys.path:
        # A console script does not have the current directory on its path.
        sys.path.insert(0, search)
    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        raise PlayerLoadError(
            f"--player {spec}: cannot import {module_name}: {type(e).__name__}: {e}"
        ) from e
    player_class = getattr(module, class_name, None)
    if not (isinstance(player_class, type) and issubclass(player_class, SimulatedPlayer)):
        raise PlayerLoadError(
            f"--player {spec}: {module_name}.{class_name} is not a "
            "gameframe.loadtest.SimulatedPlayer subclass"
        )
    return player_class


def choose_player(
    spec: str | None, room_type: str, action: str | None
) -> type[SimulatedPlayer]:
    """
    The player class for a run: C{--player} if given, else L{ActionPlayer}
    when C{--action} is given, else the room type's built-in player.

    @raise PlayerLoadError: nothing fits.
    """
    if spec is not None:
        return load_player(spec)
    if action is not None:
        return ActionPlayer
    built_in = BUILT_IN.get(room_type)
    if built_in is None:
        raise PlayerLoadError(
            f"there is no built-in player for room type {room_type!r}: give "
            "--action NAME [--fields JSON], or --player module:Class"
        )
    return built_in
