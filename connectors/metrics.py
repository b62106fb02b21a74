"""The bridge's Prometheus metrics, and the ``/metrics`` + ``/healthz`` endpoint.

Counters and the delivery-latency histogram are bound to their label values once,
when a cell starts (:class:`CellMetrics`): no label dict is built per message. Even
``inc`` and ``observe`` (a lock each, ~0.3 and ~0.6 µs) are too dear per message at
tens of thousands a second, so the hot path tallies in plain Python (:class:`Tally`,
:class:`HistogramTally`) and the cell's loop adds the tallies every iteration. State
that changes constantly (connected, in flight, consumer lag) is not pushed at all:
:class:`_StateCollector` reads it from the cells when Prometheus scrapes.

Each :class:`BridgeMetrics` has its own registry, so several bridges in one
process (replicas in tests) never share or clash on a metric. Label values are
cell names, exchange names, queue names and reason codes: never a transport URL,
so a password cannot reach a label.
"""

from __future__ import annotations

import json
import logging
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# Kafka confirms in a few ms (linger.ms=5) when healthy; the tail covers a broker
# restart, up to the producer's 300 s message timeout.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                   30.0, 60.0, 300.0)


class CellView(Protocol):
    """What the scrape-time collector and ``/healthz`` read from a running cell."""

    @property
    def name(self) -> str: ...
    @property
    def connected(self) -> bool: ...
    @property
    def in_flight(self) -> int: ...
    @property
    def lag(self) -> dict[str, int]: ...
    @property
    def last_error(self) -> str | None: ...


class CellMetrics:
    """One cell's pre-bound children; :meth:`exchange` and :meth:`dead_letter` are dict look-ups."""

    def __init__(self, metrics: BridgeMetrics, cell: str, exchanges: Iterable[str]) -> None:
        self._metrics, self.cell = metrics, cell
        self._exchanges: dict[str, tuple[Any, Any]] = {}
        self._dead: dict[tuple[str, str], Any] = {}
        for exchange in exchanges:
            self.exchange(exchange)
        self.latency = metrics.latency.labels(cell)
        self.reconnects = metrics.reconnects.labels(cell)

    def exchange(self, name: str) -> tuple[Any, Any]:
        """(received, forwarded) children of *name*; bound on first use for unlisted exchanges."""
        pair = self._exchanges.get(name)
        if pair is None:
            m = self._metrics
            pair = (m.received.labels(self.cell, name), m.forwarded.labels(self.cell, name))
            self._exchanges[name] = pair
        return pair

    def dead_letter(self, exchange: str, reason: str) -> Any:
        """The dead-letter child of (exchange, reason code); reason codes are a small fixed set."""
        child = self._dead.get((exchange, reason))
        if child is None:
            child = self._metrics.dead_lettered.labels(self.cell, exchange, reason)
            self._dead[(exchange, reason)] = child
        return child


class Tally:
    """Counter increments gathered per child, added with one ``inc(n)`` each on flush."""

    def __init__(self) -> None:
        self._counts: dict[Any, int] = {}

    def add(self, child: Any) -> None:
        self._counts[child] = self._counts.get(child, 0) + 1

    def flush(self) -> None:
        for child, n in self._counts.items():
            child.inc(n)
        self._counts.clear()


class HistogramTally:
    """Observations of one histogram child, counted per bucket here and added on flush.

    The flush writes the child's bucket and sum values directly, which is what
    ``observe`` does one observation at a time (prometheus_client 0.26, pinned;
    tests/connectors/test_bridge_workers.py holds the two equal).
    """

    def __init__(self, child: Any) -> None:
        self._child = child
        self._bounds: list[float] = list(child._upper_bounds)
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect_left(self._bounds, value)] += 1  # the first bucket with value <= bound
        self._sum += value

    def flush(self) -> None:
        if not any(self._counts):
            return
        for bucket, n in zip(self._child._buckets, self._counts, strict=True):
            if n:
                bucket.inc(n)
        self._child._sum.inc(self._sum)
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0


class BridgeMetrics:
    """The bridge's metric families in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter("stacktide_bridge_received", "AMQP messages taken from the cell's queues",
                                ["cell", "exchange"], registry=r)
        self.forwarded = Counter("stacktide_bridge_forwarded",
                                 "Normalized notifications Kafka confirmed", ["cell", "exchange"], registry=r)
        self.dead_lettered = Counter("stacktide_bridge_dead_lettered",
                                     "Rejected messages Kafka confirmed on the dead-letter topic",
                                     ["cell", "exchange", "reason"], registry=r)
        self.latency = Histogram("stacktide_bridge_kafka_delivery_seconds",
                                 "Kafka produce() to delivery confirmation", ["cell"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.reconnects = Counter("stacktide_bridge_reconnects",
                                  "Lost or failed RabbitMQ sessions of a cell", ["cell"], registry=r)
        ProcessCollector(registry=r)

    def cell(self, name: str, exchanges: Iterable[str]) -> CellMetrics:
        return CellMetrics(self, name, exchanges)

    def watch(self, cells: Sequence[CellView]) -> None:
        """Expose the cells' live state (connected, in flight, lag) at scrape time."""
        self.registry.register(_StateCollector(cells))

    def sample(self, name: str, labels: dict[str, str]) -> float:
        """One sample's value (0 when absent): for summaries and tests, not the hot path."""
        return self.registry.get_sample_value(name, labels) or 0.0


class _StateCollector(Collector):
    def __init__(self, cells: Sequence[CellView]) -> None:
        self.cells = cells

    def collect(self) -> Iterator[Metric]:
        connected = GaugeMetricFamily("stacktide_bridge_connected",
                                      "1 while the cell's RabbitMQ session is up", labels=["cell"])
        in_flight = GaugeMetricFamily("stacktide_bridge_in_flight_messages",
                                      "Messages taken from RabbitMQ and not yet acked", labels=["cell"])
        lag = GaugeMetricFamily("stacktide_bridge_consumer_lag_messages",
                                "Ready messages waiting in the bridge's queue, as the broker reports",
                                labels=["cell", "queue"])
        for cell in self.cells:
            connected.add_metric([cell.name], 1.0 if cell.connected else 0.0)
            in_flight.add_metric([cell.name], float(cell.in_flight))
            for queue, count in sorted(cell.lag.items()):
                lag.add_metric([cell.name, queue], float(count))
        yield from (connected, in_flight, lag)


def health(cells: Sequence[CellView]) -> tuple[int, dict[str, Any]]:
    """200 when every cell's broker session is up, else 503 naming the cells that are not."""
    down = [c.name for c in cells if not c.connected]
    body = {
        "status": "unhealthy" if down else "ok",
        "unreachable": down,
        "cells": {c.name: {"connected": c.connected, "last_error": c.last_error} for c in cells},
    }
    return (503 if down else 200), body


class MetricsServer:
    """``GET /metrics`` (Prometheus text) and ``GET /healthz`` (JSON) on one port, in a thread."""

    def __init__(self, metrics: BridgeMetrics, cells: Callable[[], Sequence[CellView]],
                 host: str, port: int) -> None:
        registry = metrics.registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
                elif self.path.split("?", 1)[0] == "/healthz":
                    code, body = health(cells())
                    self._send(code, "application/json", json.dumps(body).encode())
                else:
                    self._send(404, "text/plain", b"not found: try /metrics or /healthz\n")

            def _send(self, code: int, content_type: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # a scrape every few seconds is not worth a log line

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.host, self.port = host, int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="bridge-metrics",
                                        daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        log.info("event=metrics_listening url=http://%s:%d/metrics", self.host, self.port)
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
