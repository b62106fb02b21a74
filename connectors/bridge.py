"""The bridge: every notification of every cell, from RabbitMQ into Kafka, none lost.

One thread per cell, each with its own AMQP connection and Kafka producer, so a
broker that is down stalls only its own cell; a lost session is retried with
bounded exponential backoff (:func:`backoff`). The bridge consumes from durable
queues of its own (``<queue_prefix>.<cell>.<exchange>``, optionally quorum queues),
bound to the services' exchanges, and never from the queues other consumers
(Ceilometer, oslo's default ``notifications.*`` queues) read. Replicas on the same
config share those queues: the broker hands each message to one of them.

Ordering of acknowledgements: a RabbitMQ message is acked only after Kafka
confirmed its write (normalized record or dead letter). Confirmations may come
back out of order across partitions, so :class:`AckWindow` acks the longest
confirmed prefix of delivery tags with one ``multiple=True`` ack, every loop
iteration: confirmed messages left unacked would hold the broker's prefetch window
shut, and acking in bigger batches saved no measurable CPU (bench/README.md). On stop the
consumers are cancelled first (undispatched deliveries go back to the queue),
then Kafka is flushed and the written prefix acked: a clean stop repeats nothing.

The loop never sleeps on one side while the other has work: while Kafka owes
confirmations it waits on RabbitMQ for at most :data:`BUSY_WAIT_S`, because the
broker sends nothing more once ``prefetch`` messages are unacked, and a
confirmation that waited for the next delivery would stall the whole window.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import pika
import pika.exceptions
from confluent_kafka import KafkaError, Producer
from pika.adapters.blocking_connection import BlockingChannel

from connectors.kafka_producer import AckWindow, CellStats, Forwarder, producer_settings
from connectors.metrics import BridgeMetrics, CellMetrics, MetricsServer, health
from stacktide.config import CellConfig, Config
from stacktide.transport import TLSOptions, redact

log = logging.getLogger(__name__)

BUSY_WAIT_S = 0.001
"""Longest wait on RabbitMQ while Kafka owes confirmations (then Kafka is polled)."""
IDLE_WAIT_S = 0.05
"""Longest wait on RabbitMQ when nothing is in flight (the stop flag is checked between)."""

__all__ = ["AckWindow", "Bridge", "CellBridge", "CellStats", "backoff", "connection_parameters", "queue_name"]


def queue_name(prefix: str, cell: str, exchange: str) -> str:
    """The bridge's own queue for one exchange of one cell; replicas share it."""
    return f"{prefix}.{cell}.{exchange}"


def backoff(initial: float, cap: float) -> Iterator[float]:
    """Reconnect delays: initial, doubling, never above *cap* (a dead broker costs little)."""
    delay = initial
    while True:
        yield delay
        delay = min(delay * 2, cap)


def connection_parameters(cell: CellConfig, heartbeat: int = 30) -> list[pika.ConnectionParameters]:
    """One entry per cluster node; pika tries them in order. TLS files are read here, once."""
    t = cell.transport
    context = (t.tls_options or TLSOptions()).context() if t.tls else None
    return [
        pika.ConnectionParameters(
            host=h.host, port=h.port, virtual_host=t.virtual_host,
            credentials=pika.PlainCredentials(h.username or "guest", h.password.value or "guest"),
            ssl_options=pika.SSLOptions(context, server_hostname=h.host) if context else None,
            heartbeat=heartbeat, connection_attempts=1, blocked_connection_timeout=60,
        )
        for h in t.hosts
    ]


class DeliveryFailed(Exception):
    """Kafka refused a write; the unacked window is redelivered after a reconnect."""


class ConsumerCancelled(Exception):
    """The broker cancelled a consumer (its queue was deleted): reconnect and redeclare."""


class CellBridge:
    """Consumes one cell and forwards to Kafka until ``stop`` is set."""

    def __init__(self, cell: CellConfig, config: Config, stop: threading.Event,
                 metrics: CellMetrics) -> None:
        self.cell, self.config, self.stop, self.metrics = cell, config, stop, metrics
        self.name = cell.name
        self.stats = CellStats()
        self.lag: dict[str, int] = {}
        self._params = connection_parameters(cell, config.bridge.heartbeat_s)
        self._window = AckWindow()
        self._connects = 0
        self._cancelled = False
        self._fatal: str | None = None
        self.producers_made = 0

    @property
    def connected(self) -> bool:
        return self.stats.connected

    @property
    def in_flight(self) -> int:
        return len(self._window)

    @property
    def last_error(self) -> str | None:
        return self.stats.last_error

    def run(self) -> None:
        b = self.config.bridge
        forwarder = Forwarder(self._producer(), self.config.kafka, self.name, self.metrics,
                              self.stats)
        delays = backoff(b.reconnect_initial_s, b.reconnect_max_s)
        try:
            while not self.stop.is_set():
                connects = self._connects
                try:
                    self._session(forwarder)
                except Exception as exc:
                    if self._connects != connects:  # it was up: start the backoff over
                        delays = backoff(b.reconnect_initial_s, b.reconnect_max_s)
                    self._lost(exc, next(delays))
                    self.renew_if_fatal(forwarder)
        finally:
            producer = forwarder.producer
            remaining = producer.flush(b.shutdown_timeout_s)
            if remaining:  # unacked, so still in RabbitMQ: drop them here, not wait for Kafka
                log.warning("event=unconfirmed_at_exit cell=%s messages=%d", self.name, remaining)
                producer.purge()
                producer.flush(0)
            forwarder.flush_metrics()
            producer.close()

    def _producer(self) -> Producer:
        settings = producer_settings(self.config.kafka, f"stacktide-bridge-{self.name}")
        settings["error_cb"] = self._on_kafka_error
        self.producers_made += 1
        return Producer(settings)

    def _on_kafka_error(self, err: KafkaError) -> None:
        """librdkafka's client-level errors, served by ``poll``: brokers that are down are
        retried by librdkafka itself; a fatal error also fails every write in flight."""
        if err.fatal():
            self._fatal = err.str()
            log.error("event=kafka_fatal cell=%s error=%r", self.name, redact(err.str()))
        elif err.code() == KafkaError._ALL_BROKERS_DOWN:
            log.warning("event=kafka_unreachable cell=%s error=%r", self.name, redact(err.str()))
        else:
            log.debug("event=kafka_error cell=%s error=%r", self.name, redact(err.str()))

    def renew_if_fatal(self, forwarder: Forwarder) -> None:
        """Replace a producer that hit a fatal error (with idempotence on, e.g. a sequence
        gap the broker cannot explain): it refuses every write from then on, and the cell
        would stall for good. What it still holds was never acked, so RabbitMQ redelivers
        it to the new producer."""
        if self._fatal is None:
            return
        log.warning("event=producer_renewed cell=%s after=%r", self.name, redact(self._fatal))
        old = forwarder.producer
        old.purge()
        old.flush(0)
        forwarder.producer, self._fatal = self._producer(), None

    def _lost(self, exc: Exception, delay: float) -> None:
        expected = isinstance(exc, (pika.exceptions.AMQPError, DeliveryFailed, ConsumerCancelled, OSError))
        # pika's connection errors say what failed in their repr only (their str is empty).
        text = repr(exc) if isinstance(exc, pika.exceptions.AMQPError) else f"{type(exc).__name__}: {exc}"
        error = redact(text)[:300]
        self.stats.last_error = error
        log.log(logging.WARNING if expected else logging.ERROR,
                "event=disconnected cell=%s error=%r retry_in_s=%.2f", self.name, error, delay,
                exc_info=not expected)
        self.metrics.reconnects.inc()
        self.stop.wait(delay)

    def declare(self) -> list[str]:
        """Declare this cell's queues and bindings, then disconnect.

        Queues must exist before traffic does: RabbitMQ routes a message only to the
        queues bound at publish time. Replays and first deployments call this first.
        """
        connection = pika.BlockingConnection(self._params)
        try:
            return self._declare(connection)
        finally:
            connection.close()

    def _declare(self, connection: pika.BlockingConnection) -> list[str]:
        channel = connection.channel()
        b = self.config.bridge
        arguments = {"x-queue-type": "quorum"} if b.quorum_queues else None
        queues = []
        for exchange in self.cell.exchanges:
            try:
                channel.exchange_declare(exchange, passive=True)
            except pika.exceptions.ChannelClosedByBroker:
                # Not there yet: create it as the cell's services would (topic; durable
                # when they run with amqp_durable_queues = true, else oslo's default).
                channel = connection.channel()
                channel.exchange_declare(exchange, exchange_type="topic",
                                         durable=self.cell.durable_exchanges)
            queue = queue_name(b.queue_prefix, self.name, exchange)
            channel.queue_declare(queue, durable=True, arguments=arguments)
            for topic in self.cell.topics:
                for priority in self.cell.priorities:
                    channel.queue_bind(queue, exchange, routing_key=f"{topic}.{priority}")
            queues.append(queue)
        channel.close()
        return queues

    def _session(self, forwarder: Forwarder) -> None:
        producer = forwarder.producer
        connection = pika.BlockingConnection(self._params)
        self._window = window = AckWindow()
        self._cancelled = False
        try:
            queues = self._declare(connection)
            channel = connection.channel()
            channel.basic_qos(prefetch_count=self.config.bridge.prefetch)
            channel.add_on_cancel_callback(self._on_cancel)
            on_message = partial(forwarder.on_message, window)
            tags = [channel.basic_consume(q, on_message_callback=on_message) for q in queues]
            self._connects += 1
            self.stats.connected, self.stats.last_error = True, None
            self.stats.last_message_at = time.monotonic()  # idleness counts from here
            log.info("event=consuming cell=%s broker=%s queues=%s", self.name,
                     self.cell.transport.redacted(), ",".join(queues))
            self._consume(connection, channel, forwarder, window, queues)
            for tag in tags:
                channel.basic_cancel(tag)
            remaining = producer.flush(self.config.bridge.shutdown_timeout_s)
            forwarder.flush_metrics()
            self._ack(channel, window)
            log.info("event=stopped cell=%s received=%d unconfirmed=%d", self.name,
                     self.stats.received, remaining)
        finally:
            self.stats.connected = False
            self.lag = {}
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                if connection.is_open:
                    connection.close()

    def _consume(self, connection: pika.BlockingConnection, channel: BlockingChannel,
                 forwarder: Forwarder, window: AckWindow, queues: list[str]) -> None:
        b, stats, producer = self.config.bridge, self.stats, forwarder.producer
        lag_channel: BlockingChannel | None = None
        next_probe = last_pump = 0.0
        pump_every = b.heartbeat_s / 4 if b.heartbeat_s else 5.0
        seen = stats.received
        while not self.stop.is_set():
            now = time.monotonic()
            if len(window) < b.max_in_flight or now - last_pump >= pump_every:
                connection.process_data_events(time_limit=BUSY_WAIT_S if window else IDLE_WAIT_S)
                last_pump = now
            else:  # Kafka is behind: let confirmations catch up before reading more
                producer.poll(IDLE_WAIT_S)
            producer.poll(0)
            forwarder.flush_metrics()
            if stats.received != seen:
                seen, stats.last_message_at = stats.received, time.monotonic()
            self._ack(channel, window)
            if self._fatal is not None:  # this producer takes no more writes: end the session
                raise DeliveryFailed(f"fatal Kafka producer error: {self._fatal}")
            if self._cancelled:
                raise ConsumerCancelled("the broker cancelled a consumer of this cell")
            if now >= next_probe:
                lag_channel = self._probe_lag(connection, lag_channel, queues)
                next_probe = now + b.lag_interval_s

    def _probe_lag(self, connection: pika.BlockingConnection, channel: BlockingChannel | None,
                   queues: list[str]) -> BlockingChannel | None:
        """Ready messages per queue, by passive declare on a channel of its own (a failure closes it)."""
        try:
            if channel is None or not channel.is_open:
                channel = connection.channel()
            self.lag = {q: channel.queue_declare(q, passive=True).method.message_count for q in queues}
        except pika.exceptions.ChannelClosedByBroker:
            self.lag = {}
            return None
        return channel

    def _on_cancel(self, _frame: Any) -> None:
        self._cancelled = True

    def _ack(self, channel: BlockingChannel, window: AckWindow) -> None:
        if window.failure is not None:
            raise DeliveryFailed(window.failure)
        last = window.take_ackable()
        if last is not None:
            channel.basic_ack(delivery_tag=last, multiple=True)


class Bridge:
    """All cells at once; ``run`` returns when stopped or, with *idle_exit*, once idle."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.stop = threading.Event()
        self.metrics = BridgeMetrics()
        self.cells = [CellBridge(cell, config, self.stop, self.metrics.cell(cell.name, cell.exchanges))
                      for cell in config.cells]
        self.metrics.watch(self.cells)
        self.server: MetricsServer | None = None

    def declare(self) -> None:
        for cell in self.cells:
            cell.declare()

    def serve(self, port: int | None = None, host: str | None = None) -> MetricsServer:
        """Start ``/metrics`` and ``/healthz``; port 0 binds an ephemeral port (see ``.port``)."""
        b = self.config.bridge
        self.server = MetricsServer(self.metrics, lambda: self.cells, host or b.metrics_host,
                                    b.metrics_port if port is None else port).start()
        return self.server

    def health(self) -> tuple[int, dict[str, Any]]:
        return health(self.cells)

    def run(self, idle_exit: float | None = None) -> None:
        if self.server is None and self.config.bridge.metrics_port:
            self.serve()
        threads = [threading.Thread(target=c.run, name=f"cell-{c.name}", daemon=True)
                   for c in self.cells]
        started = time.monotonic()
        for t in threads:
            t.start()
        try:
            while not self.stop.wait(0.2):
                if idle_exit is not None and self._idle_for(started) >= idle_exit:
                    log.info("event=idle_exit idle_s=%.1f", idle_exit)
                    self.stop.set()
        finally:
            self.stop.set()
            for t in threads:
                t.join(timeout=self.config.bridge.shutdown_timeout_s + 30)
            if self.server is not None:
                self.server.close()
                self.server = None

    def _idle_for(self, started: float) -> float:
        if not all(c.stats.connected for c in self.cells):
            return 0.0
        last = max([started, *(c.stats.last_message_at for c in self.cells)])
        return time.monotonic() - last
