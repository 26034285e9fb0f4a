"""The room engine behind Room: the author's namespace, lifecycles, the room handle and directory, faults."""

from __future__ import annotations

from typing import Any, cast

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from gameframe import Player, Room, action
from gameframe._lifecycle import (
    ROOM_MOVES,
    SEAT_MOVES,
    IllegalTransition,
    Lifecycle,
    RoomPhase,
    SeatPhase,
)
from gameframe.directory import LocalDirectory
from gameframe.interfaces import IRoomDirectory, IRoomHandle
from gameframe.testing import Harness, host_of

# Every name the engine kept on Room before it moved out, and a dozen more
# an author might well pick.
ENGINE_NAMES = (
    "_locked _ready _disposed _service _sync _drop_timers _beats _unsynced _joining"
    " _loops _last_tick _actions _bind _describe _join _start _beat _stop_beat _tick"
    " _view_of _full_state _send_full_state _welcome _drop _drop_expired _is_held"
    " _reconnect _unseat _remove _leave _dispose_if_empty _dispose _hook _dispatch"
    " joinable ticks tick_overruns"
    " _host _engine _seats _players _clock _state _metadata _options _tokens _timers"
    " _room _directory _phase _life _handle _queue _id _token"
).split()


class Squatter(Room):
    """A room that claims every one of those names for itself."""

    tick_rate = 10
    reconnect_timeout = 30

    def on_create(self, options: dict[str, Any]) -> None:
        for name in ENGINE_NAMES:
            setattr(self, name, f"mine:{name}")
        self.state = {"count": 0}

    def on_tick(self, dt: float) -> None:
        self.state["count"] += 1

    @action
    def touch(self, player: Player) -> list[str]:
        return sorted(n for n in ENGINE_NAMES if getattr(self, n) == f"mine:{n}")


class AuthorNamespaceTests(SynchronousTestCase):
    def test_a_room_may_use_any_private_looking_name(self) -> None:
        kit = Harness({"squat": Squatter})
        alice, bob = kit.connect(), kit.connect()
        room_id = alice.join_or_create("squat")["room_id"]
        self.assertEqual(bob.join_or_create("squat")["room_id"], room_id)
        self.assertEqual(alice.request("touch")["result"], sorted(ENGINE_NAMES))
        kit.advance_ticks(5)
        self.assertEqual(bob.state, {"count": 5})
        room = kit.room(room_id)
        room.lock()
        self.assertEqual(alice.request("list")["rooms"][0]["locked"], True)
        bob.drop()  # seat held, then taken back
        back = bob.reconnect()
        self.assertEqual(back.last("joined")["room_id"], room_id)
        alice.leave()
        back.leave()
        self.assertTrue(room.disposed)
        self.assertEqual(kit.service.rooms, {})

    def test_the_engine_is_not_in_the_room_namespace(self) -> None:
        kit = Harness({"squat": Squatter})
        alice = kit.connect()
        room = kit.room(alice.join_or_create("squat")["room_id"])
        engine_attrs = {n for n in vars(room) if not n.startswith("mine")}
        self.assertEqual(engine_attrs - set(ENGINE_NAMES) - {"state"}, {"_Room__host"})


class LifecycleTests(SynchronousTestCase):
    def test_a_room_goes_creating_running_disposing_disposed(self) -> None:
        life = Lifecycle(RoomPhase.CREATING, ROOM_MOVES)
        for phase in (RoomPhase.RUNNING, RoomPhase.DISPOSING, RoomPhase.DISPOSED):
            life.move(phase)
        self.assertIs(life.phase, RoomPhase.DISPOSED)

    def test_illegal_room_moves_raise(self) -> None:
        for start, to in [
            (RoomPhase.RUNNING, RoomPhase.CREATING),
            (RoomPhase.DISPOSED, RoomPhase.RUNNING),
            (RoomPhase.CREATING, RoomPhase.DISPOSED),
            (RoomPhase.DISPOSING, RoomPhase.RUNNING),
        ]:
            life = Lifecycle(start, ROOM_MOVES)
            self.assertRaises(IllegalTransition, life.move, to)
            self.assertIs(life.phase, start)

    def test_seats_go_joining_seated_dropped_gone(self) -> None:
        life = Lifecycle(SeatPhase.JOINING, SEAT_MOVES)
        for phase in (SeatPhase.SEATED, SeatPhase.DROPPED, SeatPhase.SEATED, SeatPhase.GONE):
            life.move(phase)
        self.assertRaises(IllegalTransition, life.move, SeatPhase.SEATED)
        self.assertRaises(
            IllegalTransition, Lifecycle(SeatPhase.JOINING, SEAT_MOVES).move, SeatPhase.DROPPED
        )

    def test_the_host_walks_its_seats_through_the_phases(self) -> None:
        kit = Harness({"squat": Squatter})
        alice = kit.connect()
        room = kit.room(alice.join_or_create("squat")["room_id"])
        host = host_of(room)
        seat = host.seat_of(alice.player)
        assert seat is not None
        self.assertIs(seat.phase, SeatPhase.SEATED)
        alice.drop()
        self.assertIs(seat.phase, SeatPhase.DROPPED)
        kit.advance(31)
        self.assertIs(seat.phase, SeatPhase.GONE)
        self.assertIs(host.phase, RoomPhase.DISPOSED)


class Listed(Room):
    max_players = 2

    @action
    def set(self, player: Player, locked: bool, level: int) -> None:
        (self.lock if locked else self.unlock)()
        self.set_metadata(level=level)

    @action
    def hide(self, player: Player) -> None:
        self.private = True


@attrs.define
class RecordingDirectory(LocalDirectory):
    """The in-memory directory, counting the events rooms send it."""

    events: list[tuple[str, str]] = attrs.Factory(list)

    def __attrs_post_init__(self) -> None:
        LocalDirectory.__init__(self)

    def changed(self, room: IRoomHandle) -> None:
        self.events.append(("changed", room.room_id))
        super().changed(room)


class DirectoryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = RecordingDirectory()
        self.kit = Harness({"listed": Listed}, directory=self.directory)

    def test_the_seams_implement_their_interfaces(self) -> None:
        verifyObject(IRoomDirectory, LocalDirectory())
        alice = self.kit.connect()
        room = self.kit.room(alice.join_or_create("listed")["room_id"])
        verifyObject(IRoomHandle, host_of(room))

    def test_lock_metadata_and_seats_reach_the_listing_as_events(self) -> None:
        alice, bob, carol = (self.kit.connect() for _ in range(3))
        room_id = alice.join_or_create("listed")["room_id"]
        seen = len(self.directory.events)
        alice.request("set", locked=True, level=3)
        self.assertGreater(len(self.directory.events), seen)
        (entry,) = carol.request("list")["rooms"]
        self.assertEqual((entry["locked"], entry["metadata"]), (True, {"level": 3}))
        self.assertNotEqual(bob.join_or_create("listed")["room_id"], room_id)  # locked
        alice.request("set", locked=False, level=4)
        self.assertEqual(carol.join(room_id)["action"], "joined")
        entry = [e for e in carol.request("list")["rooms"] if e["room_id"] == room_id][0]
        self.assertEqual((entry["players"], entry["full"], entry["locked"]), (2, True, True))
        carol.leave()
        entry = [e for e in alice.request("list")["rooms"] if e["room_id"] == room_id][0]
        self.assertEqual((entry["players"], entry["full"]), (1, False))
        alice.request("hide")
        self.assertNotIn(room_id, [e["room_id"] for e in bob.request("list")["rooms"]])

    def test_listing_reads_stored_entries_not_rooms(self) -> None:
        alice = self.kit.connect()
        room_id = alice.join_or_create("listed")["room_id"]
        host = host_of(self.kit.room(room_id))
        host.metadata["sneaky"] = True  # changed without telling the directory
        (entry,) = alice.request("list")["rooms"]
        self.assertEqual(entry["metadata"], {})

    def test_metadata_is_read_only_for_authors(self) -> None:
        alice = self.kit.connect()
        room = self.kit.room(alice.join_or_create("listed")["room_id"])
        with self.assertRaises(TypeError):
            room.metadata["level"] = 1  # type: ignore[index]
        with self.assertRaises(TypeError):
            room.players["x"] = alice.player  # type: ignore[index]


class TokenTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.kit = Harness({"squat": Squatter})

    def test_the_token_is_not_on_the_player(self) -> None:
        alice = self.kit.connect()
        token = alice.join_or_create("squat")["token"]
        secret = token.rpartition(".")[2]
        player = alice.player
        self.assertNotIn("token", [f.name for f in attrs.fields(Player)])
        for shown in (repr(player), str(player), str(attrs.asdict(player, recurse=False))):
            self.assertNotIn(secret, shown)

    def test_a_token_carries_at_least_128_bits(self) -> None:
        alice = self.kit.connect()
        secret = alice.join_or_create("squat")["token"].rpartition(".")[2]
        # URL-safe base64: 6 bits a character.
        self.assertGreaterEqual(len(secret) * 6, 128)

    def test_a_forged_or_borrowed_token_is_refused(self) -> None:
        alice, bob = self.kit.connect(), self.kit.connect()
        alice_token = alice.join_or_create("squat")["token"]
        bob_token = bob.join_or_create("squat")["token"]
        alice.drop()
        mallory = self.kit.connect()
        alice_id = alice_token.rpartition(".")[0]
        bob_secret = bob_token.rpartition(".")[2]
        for forged in (
            f"{alice_id}.{bob_secret}",
            f"{alice_id}.",
            alice_id,
            "",
            alice_token + "x",
            "." + alice_token,
        ):
            self.assertEqual(
                mallory.request("reconnect", token=forged)["code"], "invalid_token", forged
            )
        self.assertEqual(mallory.request("reconnect", token=alice_token)["action"], "joined")


class Flaky(Room):
    tick_rate = 10
    patch_rate = None

    def on_create(self, options: dict[str, Any]) -> None:
        self.failing = int(options.get("failing", 0))
        self.ran = 0

    def on_tick(self, dt: float) -> None:
        self.ran += 1
        if self.failing:
            self.failing -= 1
            raise RuntimeError("tick broke")


class FaultTests(SynchronousTestCase):
    def test_ten_failing_ticks_in_a_row_dispose_the_room(self) -> None:
        kit = Harness({"flaky": Flaky})
        alice, bob = kit.connect(), kit.connect()
        room_id = alice.create("flaky", failing=100)["room_id"]
        bob.join(room_id)
        kit.advance_ticks(9)
        self.assertFalse(kit.room(room_id).disposed)
        kit.advance_ticks(1)
        self.assertNotIn(room_id, kit.service.rooms)
        for client in (alice, bob):
            self.assertEqual(client.last("left")["reason"], "room_error")
            self.assertIsNone(client.player.room)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 10)
        self.assertEqual(alice.create("flaky")["action"], "joined")  # the server goes on

    def test_a_good_tick_resets_the_count(self) -> None:
        kit = Harness({"flaky": Flaky})
        alice = kit.connect()
        room = cast(Flaky, kit.room(alice.create("flaky", failing=9)["room_id"]))
        kit.advance_ticks(10)  # nine failures, then a good one
        room.failing = 9
        kit.advance_ticks(10)
        self.assertFalse(room.disposed)
        self.assertEqual(room.ran, 20)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 18)

    def test_hook_failures_are_logged_with_the_room(self) -> None:
        class Leaky(Room):
            def on_leave(self, player: Player, reason: str) -> None:
                raise RuntimeError("on_leave broke")

        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        kit = Harness({"leaky": Leaky})
        alice = kit.connect()
        room_id = alice.create("leaky")["room_id"]
        alice.leave()
        failures = [formatEvent(e) for e in logged if "log_failure" in e]
        self.assertEqual(len(failures), 1)
        self.assertIn(room_id, failures[0])
        self.assertIn("on_leave", failures[0])
        self.assertIn(alice.player_id, failures[0])
        self.flushLoggedErrors(RuntimeError)

    def test_a_failing_timer_is_logged_with_its_room(self) -> None:
        class Ticking(Room):
            def on_create(self, options: dict[str, Any]) -> None:
                self.clock.callLater(1, self.explode)

            def explode(self) -> None:
                raise RuntimeError("timer broke")

        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        kit = Harness({"t": Ticking})
        alice = kit.connect()
        room_id = alice.create("t")["room_id"]
        kit.advance(1)
        (failure,) = [formatEvent(e) for e in logged if "log_failure" in e]
        self.assertIn(room_id, failure)
        self.flushLoggedErrors(RuntimeError)
        self.assertEqual(alice.request("ping")["action"], "pong")

    def test_a_failing_view_is_logged_and_the_room_goes_on(self) -> None:
        class BadView(Room):
            def on_create(self, options: dict[str, Any]) -> None:
                self.state = {"n": 0}
                self.broken = False

            def view_state(self, key: Any, tree: Any) -> Any:
                if self.broken:
                    raise RuntimeError("view broke")
                return tree

            @action
            def bump(self, player: Player, broken: bool) -> None:
                self.broken = broken
                self.state["n"] += 1

        kit = Harness({"v": BadView})
        alice = kit.connect()
        alice.create("v")
        alice.send("bump", broken=True)
        kit.advance(0.05)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        alice.send("bump", broken=False)
        kit.advance(0.05)
        self.assertEqual(alice.state, {"n": 2})

    def test_a_handler_holding_the_reactor_is_logged_by_name(self) -> None:
        class Slow(Room):
            @action
            def crunch(self, player: Player) -> int:
                return 1

        now = [0.0]

        def stopwatch() -> float:
            now[0] += 0.15  # each reading 150 ms later: the handler took that long
            return now[0]

        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        kit = Harness({"slow": Slow}, stopwatch=stopwatch)
        alice = kit.connect()
        alice.create("slow")
        self.assertEqual(alice.request("crunch")["result"], 1)
        warnings = [formatEvent(e) for e in logged if e["log_level"].name == "warn"]
        self.assertTrue(any("'crunch'" in w and "150 ms" in w for w in warnings), warnings)


class Limited(Room):
    @action(rate=1, burst=2)
    def shout(self, player: Player) -> str:
        return "ok"

    @action
    def whisper(self, player: Player) -> str:
        return "ok"


class ActionRateTests(SynchronousTestCase):
    def test_an_action_over_its_rate_is_refused(self) -> None:
        kit = Harness({"limited": Limited})
        alice, bob = kit.connect(), kit.connect()
        room_id = alice.create("limited")["room_id"]
        bob.join(room_id)
        self.assertEqual([alice.request("shout")["action"] for _ in range(2)], ["result"] * 2)
        refused = alice.request("shout")
        self.assertEqual(refused["code"], "rate_limited")
        self.assertEqual(alice.request("whisper")["result"], "ok")  # other actions go on
        self.assertEqual(bob.request("shout")["result"], "ok")  # per player
        kit.advance(1.0)
        self.assertEqual(alice.request("shout")["result"], "ok")
        self.assertEqual(alice.request("shout")["code"], "rate_limited")

    def test_a_rate_must_be_positive(self) -> None:
        with self.assertRaises(ValueError):
            action(rate=0)


class ShutdownRoom(Room):
    hooks: list[str] = []

    def on_shutdown(self) -> Any:
        self.hooks.append("shutdown")
        if self.options.get("hang"):
            return Deferred()  # never fires: the timeout must cut it short
        return None

    def on_leave(self, player: Player, reason: str) -> None:
        self.hooks.append(f"leave:{reason}")


class ShutdownTests(SynchronousTestCase):
    def setUp(self) -> None:
        ShutdownRoom.hooks = []

    def test_on_shutdown_runs_then_players_leave_then_connections_close(self) -> None:
        kit = Harness({"s": ShutdownRoom}, shutdown_timeout=10)
        alice = kit.connect()
        alice.create("s")
        kit.service.startService()
        stopped = kit.service.stopService()
        self.successResultOf(stopped)
        self.assertEqual(ShutdownRoom.hooks, ["shutdown", "leave:shutdown"])
        self.assertEqual(alice.last("left")["reason"], "shutdown")
        self.assertEqual(alice.link.closed and alice.link.closed[0], "server_shutdown")

    def test_a_hanging_on_shutdown_is_bounded_by_the_timeout(self) -> None:
        kit = Harness({"s": ShutdownRoom}, shutdown_timeout=10)
        alice = kit.connect()
        alice.create("s", hang=True)
        kit.service.startService()
        stopped = kit.service.stopService()
        self.assertNoResult(stopped)
        self.assertIsNone(alice.link.closed)
        kit.clock.advance(10)
        self.successResultOf(stopped)
        self.assertEqual(alice.link.closed and alice.link.closed[0], "server_shutdown")
        self.assertEqual(ShutdownRoom.hooks, ["shutdown", "leave:shutdown"])
