"""Prometheus metrics: each series moves when what it counts happens, and GET /metrics serves them."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from gameframe import GameFactory, Player, Room, RoomService, action
from gameframe._limits import Limits
from gameframe.demo import DEMO_ROOMS
from gameframe.metrics import metrics_registry
from gameframe.testing import ClusterHarness, Harness
from gameframe.web import make_site
from gameframe.websocket import WebSocketGameFactory
from prometheus_client import generate_latest
from tests._redis import RunningRedis
from tests._server import poll, running_server
from tests.test_limits import Connection, line


class Board(Room):
    """A room with an action, a tick and a synchronized state."""

    tick_rate = 10
    patch_rate = 0.1

    def on_create(self, options: dict[str, Any]) -> None:
        self.state = {"moves": 0}

    @action
    def move(self, player: Player, cell: int) -> int:
        self.state["moves"] += 1
        return cell

    @action
    def shout(self, player: Player, size: int) -> None:
        self.broadcast({"action": "shouted", "text": "x" * size})


ROOMS: dict[str, type[Room]] = {"board": Board, "lounge": DEMO_ROOMS["chat"]}


class Scrape:
    """One scrape of a registry's text exposition, parsed by prometheus_client's own parser."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples = [
            sample for family in text_string_to_metric_families(text) for sample in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        """The one sample with this name whose labels include C{labels}; 0 if there is none."""
        found = [
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]
        assert len(found) <= 1, f"{name}{labels} matches {len(found)} samples"
        return found[0] if found else 0.0

    def labels_of(self, name: str) -> list[dict[str, str]]:
        return [s.labels for s in self.samples if s.name == name]


def scrape(service: RoomService) -> Scrape:
    return Scrape(generate_latest(metrics_registry(service, process=False)).decode())


class InMemoryTests(SynchronousTestCase):
    """A RoomService and the test kit: what rooms and players do shows in the metrics."""

    def setUp(self) -> None:
        self.elapsed = 0.0
        self.kit = Harness(ROOMS, stopwatch=lambda: self.elapsed, node="node-a")

    def test_every_series_is_labelled_with_the_node(self) -> None:
        scraped = scrape(self.kit.service)
        ours = [s for s in scraped.samples if s.name.startswith("gameframe_")]
        self.assertTrue(ours)
        self.assertEqual({s.labels.get("node") for s in ours}, {"node-a"})

    def test_a_join_moves_rooms_and_players(self) -> None:
        before = scrape(self.kit.service)
        self.assertEqual(before.value("gameframe_players"), 0)
        self.assertEqual(before.value("gameframe_rooms", room_type="board"), 0)
        self.assertEqual(before.value("gameframe_rooms", room_type="lounge"), 0)
        alice, bob = self.kit.connect(), self.kit.connect()
        alice.join_or_create("board")
        bob.join_or_create("lounge")
        after = scrape(self.kit.service)
        self.assertEqual(after.value("gameframe_players"), 2)
        self.assertEqual(after.value("gameframe_rooms", room_type="board"), 1)
        self.assertEqual(after.value("gameframe_rooms", room_type="lounge"), 1)
        bob.leave()
        alice.disconnect()
        gone = scrape(self.kit.service)
        self.assertEqual(gone.value("gameframe_players"), 1)
        self.assertEqual(gone.value("gameframe_rooms", room_type="lounge"), 0)

    def test_errors_sent_count_by_code(self) -> None:
        alice = self.kit.connect()
        self.assertEqual(alice.request("move", cell=1)["code"], "not_in_room")
        self.assertEqual(alice.request("join_or_create", room="nope")["code"], "unknown_room_type")
        self.assertEqual(alice.request("join_or_create", room="nope")["code"], "unknown_room_type")
        scraped = scrape(self.kit.service)
        self.assertEqual(scraped.value("gameframe_errors_total", code="not_in_room"), 1)
        self.assertEqual(scraped.value("gameframe_errors_total", code="unknown_room_type"), 2)

    def test_ticks_overruns_and_patches(self) -> None:
        alice = self.kit.connect()
        alice.join_or_create("board")
        room = self.kit.room_of(alice)

        def slow_tick(dt: float) -> None:
            self.elapsed += 0.003  # each on_tick takes 3 ms by the stopwatch

        room.on_tick = slow_tick  # type: ignore[method-assign]
        self.kit.advance_ticks(5)
        scraped = scrape(self.kit.service)
        self.assertEqual(scraped.value("gameframe_tick_seconds_count"), 5)
        self.assertAlmostEqual(scraped.value("gameframe_tick_seconds_sum"), 0.015)
        self.assertEqual(scraped.value("gameframe_tick_seconds_bucket", le="0.0025"), 0)
        self.assertEqual(scraped.value("gameframe_tick_seconds_bucket", le="0.005"), 5)
        self.assertEqual(scraped.value("gameframe_tick_seconds_bucket", le="+Inf"), 5)
        self.assertEqual(scraped.value("gameframe_tick_overruns_total"), 0)
        # The reactor stalls for three ticks' time: two ticks are skipped.
        self.kit.clock.advance(0.3)
        self.assertEqual(scrape(self.kit.service).value("gameframe_tick_overruns_total"), 2)

        self.assertEqual(scraped.value("gameframe_patch_bytes_count"), 0)
        alice.request("move", cell=4)
        self.kit.advance(0.1)
        patches = [m for m in alice.received("patch")]
        self.assertEqual(len(patches), 1)
        scraped = scrape(self.kit.service)
        self.assertEqual(scraped.value("gameframe_patch_bytes_count"), 1)
        self.assertEqual(
            scraped.value("gameframe_patch_bytes_sum"), len(orjson.dumps(patches[0]))
        )

    def test_snapshot_saved(self) -> None:
        metrics = self.kit.service.metrics
        metrics.snapshot_saved(0.02, 3000)
        metrics.snapshot_saved(0.5, 100)
        scraped = scrape(self.kit.service)
        self.assertEqual(scraped.value("gameframe_snapshot_seconds_count"), 2)
        self.assertAlmostEqual(scraped.value("gameframe_snapshot_seconds_sum"), 0.52)
        self.assertEqual(scraped.value("gameframe_snapshot_seconds_bucket", le="0.025"), 1)
        self.assertEqual(scraped.value("gameframe_snapshot_bytes_count"), 2)
        self.assertEqual(scraped.value("gameframe_snapshot_bytes_sum"), 3100)
        self.assertEqual(scraped.value("gameframe_snapshot_bytes_bucket", le="1024.0"), 1)

    def test_two_services_in_one_process_do_not_clash(self) -> None:
        other = Harness(ROOMS, node="node-b")
        other.connect()
        self.assertEqual(scrape(other.service).value("gameframe_players", node="node-b"), 1)
        self.assertEqual(scrape(self.kit.service).value("gameframe_players", node="node-a"), 0)


class ConnectionTests(SynchronousTestCase):
    """Real connections (the TCP protocol on a StringTransport): the wire's counters."""

    limits = Limits(rate=10, burst=10, flood_grace=2.0, idle_timeout=30.0)

    def setUp(self) -> None:
        self.clock = Clock()
        self.service = RoomService(self.clock, ROOMS, node="edge-1")
        self.factory = GameFactory(self.service, self.clock, limits=self.limits)
        self.factory.startFactory()
        self.addCleanup(self.factory.stopFactory)
        # A WebSocket endpoint with no connections: its gauge says 0.
        self.websocket = WebSocketGameFactory(self.service, self.clock, limits=self.limits)

    def connect(self) -> Connection:
        conn = Connection(self.factory, self.clock)
        conn.read()  # the welcome
        return conn

    def scrape(self) -> Scrape:
        return scrape(self.service)

    def test_connections_by_transport(self) -> None:
        self.assertEqual(self.scrape().value("gameframe_connections", transport="tcp"), 0)
        first, second = self.connect(), self.connect()
        scraped = self.scrape()
        self.assertEqual(scraped.value("gameframe_connections", transport="tcp"), 2)
        self.assertEqual(scraped.value("gameframe_connections", transport="websocket"), 0)
        first.transport.loseConnection()
        self.assertEqual(self.scrape().value("gameframe_connections", transport="tcp"), 1)

    def test_actions_count_by_action_and_bytes_both_ways(self) -> None:
        conn = self.connect()
        sent_before = self.scrape().value("gameframe_bytes_sent_total")
        self.assertEqual(sent_before, len(conn.transport.value()))  # the welcome
        requests = line(action="join_or_create", room="board", id=1) + line(
            action="move", cell=3, id=2
        ) + line(action="move", cell=4, id=3) + line(action="ping") + line(action="zz1") + line(
            action="zz2"
        )
        conn.write(requests)
        replies = conn.read()
        self.assertEqual([m["action"] for m in replies][-2:], ["error", "error"])
        scraped = self.scrape()
        received = {
            s["action"]: scraped.value("gameframe_messages_received_total", action=s["action"])
            for s in scraped.labels_of("gameframe_messages_received_total")
        }
        # Names no room type has are one label, whatever a client sends.
        self.assertEqual(received, {"join_or_create": 1, "move": 2, "ping": 1, "other": 2})
        self.assertEqual(scraped.value("gameframe_bytes_received_total"), len(requests))
        self.assertEqual(scraped.value("gameframe_bytes_sent_total"), len(conn.transport.value()))
        self.assertEqual(
            scraped.value("gameframe_messages_sent_total"), len(conn.transport.value().splitlines())
        )
        self.assertEqual(scraped.value("gameframe_errors_total", code="unknown_action"), 2)

    def test_bad_input_counts_errors_by_code(self) -> None:
        conn = self.connect()
        conn.write(b"not json\n" + line(nothing="here"))
        self.assertEqual([m["code"] for m in conn.read()], ["bad_json", "bad_message"])
        conn.write(b"\xff\xfe\n")  # not UTF-8: fatal
        scraped = self.scrape()
        self.assertEqual(scraped.value("gameframe_errors_total", code="bad_json"), 1)
        self.assertEqual(scraped.value("gameframe_errors_total", code="bad_message"), 1)
        self.assertEqual(scraped.value("gameframe_errors_total", code="bad_utf8"), 1)

    def test_a_flood_counts_rate_limited_then_the_flooding_disconnect(self) -> None:
        conn = self.connect()
        conn.write(b"".join(line(action="ping", id=i) for i in range(17)))  # burst 10
        scraped = self.scrape()
        self.assertEqual(scraped.value("gameframe_rate_limited_messages_total"), 7)
        self.assertEqual(scraped.value("gameframe_errors_total", code="rate_limited"), 1)
        for _ in range(30):  # keeps flooding past flood_grace
            self.clock.advance(0.1)
            if conn.open:
                conn.protocol.dataReceived(line(action="ping") * 5)
        conn.assertClosedWith(self, "flooding")
        scraped = self.scrape()
        self.assertEqual(scraped.value("gameframe_disconnects_total", code="flooding"), 1)
        self.assertGreater(scraped.value("gameframe_rate_limited_messages_total"), 7)

    def test_an_idle_timeout_counts_its_disconnect_code(self) -> None:
        conn = self.connect()
        self.clock.advance(31)
        conn.assertClosedWith(self, "idle_timeout")
        self.assertEqual(
            self.scrape().value("gameframe_disconnects_total", code="idle_timeout"), 1
        )

    def test_send_buffer_bytes_and_a_slow_client_drop(self) -> None:
        factory = GameFactory(
            self.service, self.clock, limits=Limits(rate=0), max_pending=64 * 1024
        )
        slow = Connection(factory, self.clock)
        fast = Connection(factory, self.clock)
        slow.send(action="join_or_create", room="board", id=1)
        fast.send(action="join_or_create", room="board", id=1)
        self.clock.advance(0)
        assert slow.transport.producer is not None
        slow.transport.producer.pauseProducing()  # its socket is full: it stopped reading
        fast.send(action="shout", size=10_000)
        self.clock.advance(0)
        scraped = self.scrape()
        self.assertGreater(scraped.value("gameframe_send_buffer_bytes"), 10_000)
        self.assertEqual(scraped.value("gameframe_slow_client_drops_total"), 0)
        for _ in range(10):
            fast.send(action="shout", size=10_000)
            self.clock.advance(0)
        scraped = self.scrape()
        self.assertEqual(scraped.value("gameframe_slow_client_drops_total"), 1)
        self.assertEqual(scraped.value("gameframe_disconnects_total", code="slow_client"), 1)


class ClusterTests(SynchronousTestCase):
    def test_forwarded_messages_in_and_out(self) -> None:
        kit = ClusterHarness(ROOMS, nodes=["a", "b"])
        alice = kit.node("a").connect()
        alice.create("board")
        room_node = "a" if kit.node("a").service.rooms else "b"
        other = "b" if room_node == "a" else "a"
        bob = kit.node(other).connect()
        before = scrape(kit.node(other).service)
        self.assertEqual(before.labels_of("gameframe_forwarded_messages_total")[0]["node"], other)
        bob.join(alice.last("joined")["room_id"])
        bob.request("move", cell=2)
        sender = scrape(kit.node(other).service)
        host = scrape(kit.node(room_node).service)
        self.assertGreater(
            sender.value("gameframe_forwarded_messages_total", direction="out"),
            before.value("gameframe_forwarded_messages_total", direction="out"),
        )
        self.assertGreater(host.value("gameframe_forwarded_messages_total", direction="in"), 0)
        self.assertGreater(host.value("gameframe_forwarded_messages_total", direction="out"), 0)
        # The in-memory store is not Redis: no Redis series.
        self.assertEqual(host.labels_of("gameframe_redis_commands_total"), [])


class SiteTests(SynchronousTestCase):
    def test_the_site_serves_metrics(self) -> None:
        clock = MemoryReactorClock()
        service = RoomService(clock, dict(DEMO_ROOMS), node="web-1")
        site = make_site(service, WebSocketGameFactory(service, clock, limits=Limits()))
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, body = transport.value().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"))
        self.assertIn(b"content-type: text/plain; version=0.0.4", head.lower())
        self.assertIn(b'gameframe_players{node="web-1"} 0.0', body)


def test_twistd_serves_get_metrics(tmp_path: Path) -> None:
    """A real server: GET /metrics answers Prometheus' text format, labelled with --node."""
    with running_server(tmp_path, "--node", "metrics-node") as server:
        player = server.connect()  # (it read its welcome)
        with urllib.request.urlopen(server.base_url + "/metrics", timeout=10) as reply:
            content_type = reply.headers["Content-Type"]
            text = reply.read().decode()
        player.close()
    assert content_type.startswith("text/plain; version=0.0.4")
    scraped = Scrape(text)
    assert scraped.value("gameframe_connections", node="metrics-node", transport="tcp") == 1
    assert scraped.value("gameframe_bytes_received_total", node="metrics-node") == 0
    assert scraped.value("gameframe_bytes_sent_total", node="metrics-node") > 0
    assert scraped.labels_of("process_cpu_seconds_total")  # the process collector too


def _get_metrics(base_url: str) -> Scrape:
    with urllib.request.urlopen(base_url + "/metrics", timeout=10) as reply:
        return Scrape(reply.read().decode())


def test_a_cluster_node_counts_its_redis_commands(tmp_path: Path, redis_server: RunningRedis) -> None:
    """A real node on a real Redis: its round trips show, labelled with its --node."""
    with running_server(tmp_path, "--redis", redis_server.url, "--node", "r1") as server:
        first = poll(
            server,
            "Redis commands counted",
            lambda: _get_metrics(server.base_url).value("gameframe_redis_commands_total", node="r1"),
        )
        # Every heartbeat is one more round trip.
        poll(
            server,
            "more Redis commands counted",
            lambda: _get_metrics(server.base_url).value("gameframe_redis_commands_total") > first,
        )
        scraped = _get_metrics(server.base_url)
    assert scraped.labels_of("gameframe_forwarded_messages_total") == [
        {"node": "r1", "direction": "in"},
        {"node": "r1", "direction": "out"},
    ]
