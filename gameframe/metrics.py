"""Prometheus metrics: a per-server registry whose collector reads the service's plain counters at scrape time, and GET /metrics."""

from __future__ import annotations

from collections import Counter
from typing import Iterator

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector
from prometheus_client.metrics_core import Metric
from twisted.web.resource import Resource
from twisted.web.server import Request

from gameframe._counters import Distribution
from gameframe.service import RoomService
from gameframe.vocabulary import SLOW_CLIENT

__all__ = ["MetricsCollector", "MetricsResource", "metrics_registry"]

# The transports every connection gauge names, even when none is open.
TRANSPORTS = ("tcp", "websocket")

class MetricsCollector(Collector):
    """
    Reads one RoomService's counters (L{gameframe._counters.Metrics}) and
    live state into Prometheus metric families when scraped; every series
    carries a C{node} label. Nothing is updated per message for it: the
    connections, rooms, players and unsent bytes are counted at scrape time.
    """

    def __init__(self, service: RoomService) -> None:
        self._service = service

    @property
    def node(self) -> str:
        return self._service.node

    def collect(self) -> Iterator[Metric]:
        service, node = self._service, self.node
        metrics = service.metrics
        yield from self._connections(node)
        rooms = GaugeMetricFamily(
            "gameframe_rooms", "Rooms running on this node, by room type.",
            labels=["node", "room_type"],
        )
        by_type = Counter(room.room_type for room in service.rooms.values())
        for room_type in sorted(set(service.room_types) | set(by_type)):
            rooms.add_metric([node, room_type], by_type[room_type])
        yield rooms
        yield _gauge(
            "gameframe_players", "Players connected to this node.", node, len(service.players)
        )
        received = CounterMetricFamily(
            "gameframe_messages_received",
            "Messages received from clients (decoded), by action; "
            "actions no room type has count as other.",
            labels=["node", "action"],
        )
        for action, count in sorted(metrics.received.items()):
            received.add_metric([node, action], count)
        yield received
        yield _counter(
            "gameframe_messages_sent", "Messages written to clients' connections.",
            node, metrics.messages_sent,
        )
        yield _counter(
            "gameframe_bytes_received", "Bytes received on players' connections "
            "(after the WebSocket upgrade, frame headers included).",
            node, metrics.bytes_received,
        )
        yield _counter(
            "gameframe_bytes_sent", "Bytes of messages written to players' connections, framing included.",
            node, metrics.bytes_sent,
        )
        yield _by_code(
            "gameframe_errors", "error messages sent to clients, by code.", node, metrics.errors
        )
        yield _by_code(
            "gameframe_disconnects",
            "Connections the server ended, by disconnect code (slow_client included).",
            node, metrics.disconnects,
        )
        yield _counter(
            "gameframe_rate_limited_messages",
            "Messages dropped because their connection was over --rate.",
            node, metrics.rate_limited,
        )
        yield _counter(
            "gameframe_slow_client_drops",
            "Connections dropped because the client stopped reading (slow_client).",
            node, metrics.disconnects.get(SLOW_CLIENT, 0),
        )
        yield _histogram(
            "gameframe_tick_seconds", "How long each room's on_tick ran, in seconds.",
            node, metrics.tick_seconds,
        )
        yield _counter(
            "gameframe_tick_overruns",
            "Ticks skipped because a room's tick came late (the next tick's dt covers them).",
            node, metrics.tick_overruns,
        )
        yield _histogram(
            "gameframe_patch_bytes", "Size of each state patch encoded (once per view per patch tick).",
            node, metrics.patch_bytes,
        )
        yield _gauge(
            "gameframe_send_buffer_bytes",
            "Bytes waiting unsent over all connections: output of this turn, "
            "and bytes clients have not read yet.",
            node, self._unsent(),
        )
        yield _histogram(
            "gameframe_snapshot_seconds", "How long saving a room's snapshot took, in seconds.",
            node, metrics.snapshot_seconds,
        )
        yield _histogram(
            "gameframe_snapshot_bytes", "Size of each room snapshot saved, in bytes.",
            node, metrics.snapshot_bytes,
        )
        yield from self._cluster(node)

    def _connections(self, node: str) -> Iterator[Metric]:
        open_by_transport = dict.fromkeys(TRANSPORTS, 0)
        for factory in list(self._service.metrics.factories):
            for link in factory.links:
                if link._admitted:
                    name = link.transport_name
                    open_by_transport[name] = open_by_transport.get(name, 0) + 1
        connections = GaugeMetricFamily(
            "gameframe_connections", "Players' connections open, by transport.",
            labels=["node", "transport"],
        )
        for transport, count in sorted(open_by_transport.items()):
            connections.add_metric([node, transport], count)
        yield connections

    def _unsent(self) -> int:
        return sum(
            link.unsent_bytes
            for factory in list(self._service.metrics.factories)
            for link in factory.links
        )

    def _cluster(self, node: str) -> Iterator[Metric]:
        cluster = self._service.cluster
        if cluster is None:
            return
        forwarded = CounterMetricFamily(
            "gameframe_forwarded_messages",
            "Messages on the node bus: out, sent to other nodes; in, received from them.",
            labels=["node", "direction"],
        )
        forwarded.add_metric([node, "in"], cluster.forwarded_in)
        forwarded.add_metric([node, "out"], cluster.forwarded)
        yield forwarded
        commands = getattr(cluster.store, "commands", None)
        if commands is not None:  # the Redis store (not the in-memory one)
            yield _counter(
                "gameframe_redis_commands",
                "Commands sent to Redis, each a round trip (bus publishes included).",
                node, commands,
            )


def _gauge(name: str, documentation: str, node: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["node"])
    family.add_metric([node], value)
    return family


def _counter(name: str, documentation: str, node: str, value: float) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=["node"])
    family.add_metric([node], value)
    return family


def _by_code(
    name: str, documentation: str, node: str, counts: dict[str, int]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=["node", "code"])
    for code, count in sorted(counts.items()):
        family.add_metric([node, code], count)
    return family


def _histogram(
    name: str, documentation: str, node: str, distribution: Distribution
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=["node"])
    family.add_metric([node], distribution.buckets(), sum_value=distribution.sum)
    return family


def metrics_registry(service: RoomService, process: bool = True) -> CollectorRegistry:
    """
    A registry of this server's own (not prometheus_client's global one, so
    two servers in one process do not clash): the service's metrics, and
    with C{process} the process, platform and garbage-collector metrics
    prometheus_client offers (those without a C{node} label).
    """
    registry = CollectorRegistry()
    registry.register(MetricsCollector(service))
    if process:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry


class MetricsResource(Resource):
    """
    C{GET /metrics}: the registry in Prometheus' text exposition format
    (C{text/plain; version=0.0.4}), or another format prometheus_client
    offers if the C{Accept} header asks for it (OpenMetrics).

    Rendered on the reactor thread (prometheus_client's own Twisted resource
    renders in a thread pool, where reading the server's live state would race
    the reactor).
    """

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self._registry = registry

    def render_GET(self, request: Request) -> bytes:
        accept = request.getHeader(b"accept")
        encoder, content_type = choose_encoder(accept.decode("latin-1") if accept else "")
        request.setHeader(b"content-type", content_type.encode())
        request.setHeader(b"cache-control", b"no-store")
        return encoder(self._registry)
