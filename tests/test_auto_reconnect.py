"""
The Python clients take their seat back by themselves when the server says
it is restarting (C{disconnect} with C{"retry": true}): against a real
server on 127.0.0.1 that restarts (tests/_restarting.py), with the delays on
a fake clock.
"""

from __future__ import annotations

import select
from typing import Any, AsyncIterator, Callable

import pytest
import pytest_twisted
from twisted.internet import task, threads
from twisted.internet.defer import Deferred

from gameframe.client import (
    AutoReconnect,
    Backoff,
    ClientError,
    Disconnected,
    GameClient,
    Reconnecting,
)
from gameframe.txclient import GameClientFactory, GameClientProtocol, connect
from tests._restarting import HOST, RestartingServer

TIMEOUT = 10.0
NO_JITTER = AutoReconnect(rand=lambda: 0.0)


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


@pytest_twisted.async_yield_fixture
async def server() -> AsyncIterator[RestartingServer]:
    running = RestartingServer(_reactor())
    running.start()
    try:
        yield running
    finally:
        running.close_all()
        await running.stop()


class FakeTime:
    """The blocking client's clock and sleep: sleeping moves the time on at once."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def in_thread(play: Callable[[], None]) -> Deferred[None]:
    """Run a blocking client's script off the reactor thread (the server runs on it)."""
    return threads.deferToThread(play).addTimeout(60, _reactor())


def on_reactor(function: Callable[..., Any], *args: Any) -> Any:
    """From the client's thread: run on the reactor (a Deferred is waited for)."""
    return threads.blockingCallFromThread(_reactor(), function, *args)


class Seen:
    """What a client told its program about reconnecting; starts the server at attempt 2."""

    def __init__(self, server: RestartingServer, from_thread: bool) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.failures: list[str] = []
        self._server = server
        self._from_thread = from_thread
        self.back: Deferred[dict[str, Any]] = Deferred()
        self.over: Deferred[ClientError] = Deferred()

    def reconnecting(self, attempt: int, delay: float) -> None:
        self.events.append(("reconnecting", attempt, delay))
        if attempt == 2 and not self._server.listening:
            # The first attempt found nothing listening: the server is back now.
            if self._from_thread:
                on_reactor(self._server.start)
            else:
                self._server.start()

    def reconnected(self, joined: dict[str, Any]) -> None:
        self.events.append(("reconnected", joined["token"]))
        self.back.callback(joined)
        self.back = Deferred()

    def failed(self, error: ClientError) -> None:
        self.failures.append(error.code)
        self.over.callback(error)

    def hook(self, client: GameClient | GameClientProtocol) -> None:
        client.on_reconnecting = self.reconnecting
        client.on_reconnected = self.reconnected
        client.on_reconnect_failed = self.failed


def blocking_client(
    server: RestartingServer, time: FakeTime, policy: AutoReconnect | None = NO_JITTER
) -> GameClient:
    return GameClient.connect(
        HOST,
        server.port,
        timeout=TIMEOUT,
        auto_reconnect=policy,
        clock=time.clock,
        sleep=time.sleep,
    )


def until_closed(client: GameClient) -> None:
    """Read until the server's close is seen (a socket that closes turns readable)."""
    while client.connected:
        assert client.socket is not None
        select.select([client.socket], [], [], TIMEOUT)
        client.poll()


# -- the blocking client --------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_game_client_takes_its_seat_back_after_a_restart(server: RestartingServer) -> None:
    seen = Seen(server, from_thread=True)

    def play() -> None:
        time = FakeTime()
        with blocking_client(server, time) as client:
            seen.hook(client)
            assert client.join_or_create("tictactoe")["token"] == "T1"
            client.poll()  # what came so far (the joined, the state)

            on_reactor(server.restart)
            goodbye = client.wait_for("disconnect", TIMEOUT)
            assert (goodbye["code"], goodbye["retry"]) == ("server_shutdown", True)
            back = client.wait_for("joined", TIMEOUT)  # the backoff goes on meanwhile
            client.wait_for("state", TIMEOUT)
            assert back["player_id"] == "p1" and back["room_id"] == "R1"
            assert client.token == "T2" and client.connected and not client.reconnecting
            assert client.state.state == {"turn": 1}
            assert seen.events == [("reconnecting", 1, 0.25), ("reconnecting", 2, 0.5), ("reconnected", "T2")]
            assert time.slept == [0.25, 0.5]

            # Again: the latest token speaks; a send while away raises, a call waits.
            on_reactor(server.restart)
            until_closed(client)
            assert client.reconnecting and not client.connected
            with pytest.raises(Reconnecting) as raised:
                client.send("place", cell=4)
            assert raised.value.code == "reconnecting"
            assert client.call("place", timeout=TIMEOUT, cell=4) == 2
            assert client.token == "T3"
        assert server.claims == ["T1", "T2"]
        assert [action["cell"] for action in server.actions] == [4]

    await in_thread(play)


@pytest_twisted.ensureDeferred
async def test_game_client_gives_up_after_the_bound(server: RestartingServer) -> None:
    seen = Seen(server, from_thread=True)
    server.start = lambda: None  # type: ignore[method-assign]  # it never comes back

    def play() -> None:
        time = FakeTime()
        policy = AutoReconnect(give_up_after=3.0, rand=lambda: 0.0)
        with blocking_client(server, time, policy) as client:
            seen.hook(client)
            client.join_or_create("tictactoe")
            client.poll()
            on_reactor(server.restart)
            started = time.now
            with pytest.raises(Disconnected) as raised:
                client.wait_for("joined", TIMEOUT)
            assert raised.value.code == "server_shutdown"
            assert time.now - started == pytest.approx(3.0)
            assert seen.failures == ["gave_up"]
            assert [event[1] for event in seen.events] == [1, 2, 3, 4]
            assert not client.connected and not client.reconnecting
            assert client.close_code == "server_shutdown"
            with pytest.raises(Disconnected):
                client.send("place", cell=1)

    await in_thread(play)


@pytest_twisted.ensureDeferred
async def test_game_client_refused_token_ends_with_the_disconnect(server: RestartingServer) -> None:
    seen = Seen(server, from_thread=True)

    def play() -> None:
        time = FakeTime()
        with blocking_client(server, time) as client:
            seen.hook(client)
            client.join_or_create("tictactoe")
            on_reactor(server.restart)
            on_reactor(server.forget)  # the server comes back past its --restore-grace
            until_closed(client)
            with pytest.raises(Disconnected) as raised:  # the call waited for the seat
                client.call("place", timeout=TIMEOUT, cell=0)
            assert raised.value.code == "server_shutdown"
            assert seen.failures == ["invalid_token"]
            assert client.token is None and client.room_id is None
            assert not client.connected and not client.reconnecting
        assert server.claims == ["T1"]
        assert server.actions == []

    await in_thread(play)


@pytest_twisted.ensureDeferred
async def test_game_client_lost_connection_reconnects_only_when_asked(
    server: RestartingServer,
) -> None:
    seen = Seen(server, from_thread=True)

    def play() -> None:
        time = FakeTime()
        with blocking_client(server, time) as plain:
            seen.hook(plain)
            plain.join_or_create("tictactoe")
            on_reactor(server.drop)
            until_closed(plain)
            assert not plain.reconnecting
            assert plain.close_code == "connection_lost"
            assert seen.events == []

        eager = AutoReconnect(on_loss=True, rand=lambda: 0.0)
        with blocking_client(server, time, eager) as client:
            seen.hook(client)
            client.join_or_create("tictactoe")
            client.poll()
            on_reactor(server.drop)
            client.wait_for("joined", TIMEOUT)
            assert seen.events[-1] == ("reconnected", client.token)
            assert client.connected

    await in_thread(play)


def test_backoff_doubles_to_its_cap_with_jitter_below_the_ceiling() -> None:
    backoff = Backoff()
    assert [backoff.delay(n, lambda: 0.0) for n in range(1, 8)] == [0.25, 0.5, 1, 2, 4, 5, 5]
    assert backoff.delay(3, lambda: 0.999) == pytest.approx(0.5005)


# -- the Twisted client -----------------------------------------------------------


async def tx_client(server: RestartingServer, clock: task.Clock, seen: Seen) -> GameClientProtocol:
    factory = GameClientFactory(auto_reconnect=NO_JITTER, clock=clock)
    endpoint = f"tcp:host={HOST}:port={server.port}"
    client = await connect(_reactor(), endpoint, factory).addTimeout(TIMEOUT, _reactor())
    seen.hook(client)
    joined = await client.join_or_create("tictactoe").addTimeout(TIMEOUT, _reactor())
    assert joined["token"] == "T1"
    return client


def next_attempt(seen: Seen, client: GameClientProtocol) -> Deferred[None]:
    """Fires once the client has scheduled one more attempt."""
    count = len(seen.events)
    done: Deferred[None] = Deferred()
    previous = client.on_reconnecting

    def hook(attempt: int, delay: float) -> None:
        if previous is not None:
            previous(attempt, delay)
        if len(seen.events) > count and not done.called:
            client.on_reconnecting = previous
            done.callback(None)

    client.on_reconnecting = hook
    return done.addTimeout(TIMEOUT, _reactor())


@pytest_twisted.ensureDeferred
async def test_txclient_takes_its_seat_back_after_a_restart(server: RestartingServer) -> None:
    clock, seen = task.Clock(), Seen(server, from_thread=False)
    client = await tx_client(server, clock, seen)
    try:
        first = next_attempt(seen, client)
        await server.restart()
        await first
        assert client.reconnecting
        with pytest.raises(Reconnecting):
            client.send("place", cell=4)
        placing = client.call("place", cell=4)  # waits for the seat

        second = next_attempt(seen, client)
        clock.advance(0.25)  # nothing listens: refused
        await second
        back = seen.back
        clock.advance(0.5)  # the server is back
        joined = await back.addTimeout(TIMEOUT, _reactor())
        assert joined["player_id"] == "p1" and joined["token"] == "T2"
        assert await placing.addTimeout(TIMEOUT, _reactor()) == 1
        assert client.state.state == {"turn": 1}
        assert client.token == "T2" and not client.reconnecting
        assert seen.events == [("reconnecting", 1, 0.25), ("reconnecting", 2, 0.5), ("reconnected", "T2")]
        assert not client.disconnected.called

        third = next_attempt(seen, client)
        await server.restart()
        await third
        fourth = next_attempt(seen, client)
        clock.advance(0.25)  # refused again; the server is back for the next
        await fourth
        back = seen.back
        clock.advance(0.5)
        await back.addTimeout(TIMEOUT, _reactor())
        assert server.claims == ["T1", "T2"]
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_txclient_gives_up_after_the_bound(server: RestartingServer) -> None:
    clock, seen = task.Clock(), Seen(server, from_thread=False)
    client = await tx_client(server, clock, seen)
    first = next_attempt(seen, client)
    await server.restart()
    await first
    placing = client.call("place", cell=4)
    clock.advance(60)
    await client.disconnected.addTimeout(TIMEOUT, _reactor())
    assert seen.failures == ["gave_up"]
    assert client.close_code == "server_shutdown" and not client.reconnecting
    with pytest.raises(Disconnected):
        await placing
    assert clock.getDelayedCalls() == []


@pytest_twisted.ensureDeferred
async def test_txclient_refused_token_ends_with_the_disconnect(server: RestartingServer) -> None:
    clock, seen = task.Clock(), Seen(server, from_thread=False)
    client = await tx_client(server, clock, seen)
    first = next_attempt(seen, client)
    await server.restart()
    await first
    server.forget()
    server.start()
    clock.advance(0.25)
    error = await seen.over.addTimeout(TIMEOUT, _reactor())
    assert error.code == "invalid_token"
    await client.disconnected.addTimeout(TIMEOUT, _reactor())
    assert client.close_code == "server_shutdown"
    assert client.token is None and client.room_id is None
    assert server.claims == ["T1"]


@pytest_twisted.ensureDeferred
async def test_txclient_lost_connection_without_retry_ends(server: RestartingServer) -> None:
    clock, seen = task.Clock(), Seen(server, from_thread=False)
    client = await tx_client(server, clock, seen)
    server.drop()
    await client.disconnected.addTimeout(TIMEOUT, _reactor())
    assert client.close_code == "connection_lost"
    assert seen.events == [] and clock.getDelayedCalls() == []
