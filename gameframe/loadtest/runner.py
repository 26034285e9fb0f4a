"""The plan of a run, and the Runner that plays one process's share of it: ramp up, hold, stop in time."""

from __future__ import annotations

import random
from typing import Any, Mapping

import attrs
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from gameframe.loadtest.player import SimulatedPlayer
from gameframe.loadtest.session import PLAYER_ERROR, FailureLog, PlayerSession, RoomDirectory
from gameframe.loadtest.stats import Stats
from gameframe.loadtest.transport import Connect

__all__ = ["Plan", "Runner", "make_player"]

#: Seconds the players get to leave and close at the end before being cut off.
STOP_GRACE = 5.0


@attrs.frozen
class Plan:
    """
    What a run does, the same for every process (it travels to workers as JSON).

    Player I{i} (0 to C{players}-1) sits in room C{i * rooms // players}:
    consecutive players share a room, rooms differ by at most one player,
    and the first player of each room creates it. Player I{i} connects
    C{ramp * i / players} seconds into the run, so rooms fill one after
    another. Process I{k} of C{processes} runs the players with
    C{i % processes == k}, so a room's players are spread over the
    processes (the parent passes the room ids between them).
    """

    url: str
    room: str
    players: int
    rooms: int
    duration: float
    ramp: float
    room_options: dict[str, Any] = attrs.Factory(dict)
    player: str | None = None
    action: str | None = None
    fields: dict[str, Any] = attrs.Factory(dict)
    interval: float | None = None
    connect_timeout: float = 10.0
    request_timeout: float = 10.0
    seed: int = 0
    processes: int = 1

    def room_of(self, index: int) -> int:
        return index * self.rooms // self.players

    def creates_room(self, index: int) -> bool:
        """Whether player C{index} is the first of its room (and so creates it)."""
        return index == 0 or self.room_of(index - 1) != self.room_of(index)

    def indices(self, process: int) -> range:
        """The players process C{process} runs."""
        return range(process, self.players, self.processes)

    def start_delay(self, index: int) -> float:
        return self.ramp * index / self.players

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        return cls(**data)


def make_player(
    player_class: type[SimulatedPlayer], plan: Plan, index: int, reactor: IReactorTime
) -> SimulatedPlayer:
    """Player C{index} of the plan, told who it is (its session comes later)."""
    player = player_class()
    player.index = index
    player.room_index = plan.room_of(index)
    player.room_type = plan.room
    player.random = random.Random(f"{plan.seed}:{index}")
    player.clock = reactor
    player.action = plan.action
    player.fields = dict(plan.fields)
    if plan.interval is not None:
        player.interval = plan.interval
    return player


class Runner:
    """
    Runs one process's players: starts each at its point of the ramp,
    stops them all C{duration} seconds after L{start} (or at L{stop}),
    gives them L{STOP_GRACE} seconds to leave and close, then cuts off the
    rest. Everything is counted in C{stats}.

    @param process: which of the plan's processes this is.
    @param connect: opens one connection (see L{transport.connector}).
    @param player_class: the L{SimulatedPlayer} subclass to run.
    @param directory: the room ids (shared with other processes through
        the parent when there are several).
    """

    log = Logger()

    def __init__(
        self,
        reactor: IReactorTime,
        plan: Plan,
        *,
        connect: Connect,
        player_class: type[SimulatedPlayer],
        process: int = 0,
        directory: RoomDirectory | None = None,
        grace: float = STOP_GRACE,
    ) -> None:
        self._reactor = reactor
        self.plan = plan
        self._process = process
        self._connect = connect
        self._player_class = player_class
        self.directory = directory or RoomDirectory()
        self._grace = grace
        self.stats = Stats(players=len(plan.indices(process)))
        self._failures = FailureLog()
        self._sessions: list[PlayerSession] = []
        self._launches: list[IDelayedCall] = []
        self._deadline: IDelayedCall | None = None
        self._started: float | None = None
        self._stopped_at: float | None = None
        self._done: Deferred[Stats] = Deferred()
        self._stopping = False
        self._unlaunched = 0
        self._active = 0

    @property
    def running(self) -> bool:
        return self._started is not None and not self._stopping

    def start(self) -> Deferred[Stats]:
        """Start the run: a Deferred of the final stats, once every player has stopped."""
        reactor = self._reactor
        self._started = reactor.seconds()
        plan = self.plan
        for index in plan.indices(self._process):
            self._launches.append(reactor.callLater(plan.start_delay(index), self._launch, index))
        self._unlaunched = len(self._launches)
        self._deadline = reactor.callLater(plan.duration, self.stop)
        return self._done

    def snapshot(self) -> Stats:
        """The stats so far, with C{elapsed} set (a live object: copy it to keep it)."""
        if self._started is not None:
            end = self._stopped_at if self._stopped_at is not None else self._reactor.seconds()
            self.stats.elapsed = end - self._started
        return self.stats

    def _launch(self, index: int) -> None:
        plan = self.plan
        self._unlaunched -= 1
        self._active += 1
        try:
            player = make_player(self._player_class, plan, index, self._reactor)
        except Exception:
            self.stats.failed += 1
            self.stats.error(PLAYER_ERROR)
            self.log.failure("could not make player {index}", index=index)
            self._session_ended(None)
            return
        session = PlayerSession(
            self._reactor,
            player,
            connect=self._connect,
            directory=self.directory,
            stats=self.stats,
            room_type=plan.room,
            room_options=plan.room_options,
            creator=plan.creates_room(index),
            connect_timeout=plan.connect_timeout,
            request_timeout=plan.request_timeout,
            failures=self._failures,
            ended=self._session_ended,
        )
        self._sessions.append(session)
        session.start()

    def _session_ended(self, session: PlayerSession | None) -> None:
        """A player is done; when every player is, the run is over (say, none could connect)."""
        self._active -= 1
        if self._active == 0 and self._unlaunched == 0 and not self._stopping:
            self._reactor.callLater(0, self.stop)

    def stop(self) -> Deferred[Stats]:
        """End the run now (it also ends by itself after C{duration}); the final stats."""
        if self._stopping:
            return self._done
        self._stopping = True
        if self._started is None:
            self._finish()
            return self._done
        self._stopped_at = self._reactor.seconds()
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        for launch in self._launches:
            if launch.active():
                launch.cancel()
        self._launches.clear()
        sessions = list(self._sessions)
        closing = DeferredList([session.stop() for session in sessions], consumeErrors=True)
        cutoff = self._reactor.callLater(self._grace, self._cut_off, sessions)

        def closed(_: object) -> None:
            if cutoff.active():
                cutoff.cancel()
            self._finish()

        closing.addCallback(closed)
        return self._done

    def _cut_off(self, sessions: list[PlayerSession]) -> None:
        """Some connections did not close in the grace time: abort them and finish."""
        for session in sessions:
            session.abort()
        self._reactor.callLater(0, self._finish)

    def _finish(self) -> None:
        if not self._done.called:
            self._done.callback(self.snapshot())
