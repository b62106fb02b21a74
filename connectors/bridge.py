"""The bridge: every notification of every cell, from RabbitMQ into Kafka, none lost.

One thread per cell, each with its own AMQP connection and Kafka producer, so a
broker that is down stalls only its own cell. The bridge consumes from queues of
its own, bound to the services' exchanges, and never from the queues other
consumers (Ceilometer, oslo's default ``notifications.*`` queues) read.

Ordering of acknowledgements: a RabbitMQ message is acked only after Kafka
confirmed its write (normalized record or dead letter). Confirmations may come
back out of order across partitions, so :class:`AckWindow` acks the longest
confirmed prefix of delivery tags with one ``multiple=True`` ack.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pika
from confluent_kafka import KafkaError, Producer
from pika.adapters.blocking_connection import BlockingChannel

from connectors.kafka_producer import producer_settings
from connectors.wire import Rejected, parse, scrub_body
from stacktide.config import CellConfig, Config

log = logging.getLogger(__name__)


class AckWindow:
    """Delivery tags in arrival order; tells which prefix Kafka has fully confirmed."""

    def __init__(self) -> None:
        self._pending: deque[int] = deque()
        self._confirmed: set[int] = set()

    def add(self, tag: int) -> None:
        self._pending.append(tag)

    def confirm(self, tag: int) -> None:
        self._confirmed.add(tag)

    def take_ackable(self) -> int | None:
        """Pop the confirmed prefix and return its last tag (ack it with multiple=True)."""
        last = None
        while self._pending and self._pending[0] in self._confirmed:
            last = self._pending.popleft()
            self._confirmed.discard(last)
        return last

    def __len__(self) -> int:
        return len(self._pending)


@dataclass
class CellStats:
    received: int = 0
    forwarded: int = 0
    dead_lettered: int = 0
    connected: bool = False
    last_message_at: float = 0.0
    errors: list[str] = field(default_factory=list)


def queue_name(prefix: str, cell: str, exchange: str) -> str:
    """The bridge's own queue for one exchange of one cell; replicas share it."""
    return f"{prefix}.{cell}.{exchange}"


def connection_parameters(cell: CellConfig) -> list[pika.ConnectionParameters]:
    """One entry per cluster node; pika tries them in order."""
    t = cell.transport
    ssl_options = pika.SSLOptions(ssl.create_default_context()) if t.tls else None
    return [
        pika.ConnectionParameters(
            host=h.host,
            port=h.port,
            virtual_host=t.virtual_host,
            credentials=pika.PlainCredentials(h.username or "guest", h.password.value or "guest"),
            ssl_options=ssl_options,
            heartbeat=30,
            connection_attempts=1,
            blocked_connection_timeout=60,
        )
        for h in t.hosts
    ]


class DeliveryFailed(Exception):
    """Kafka refused a write; the unacked window is redelivered after a reconnect."""


class CellBridge:
    """Consumes one cell and forwards to Kafka until ``stop`` is set."""

    def __init__(self, cell: CellConfig, config: Config, stop: threading.Event) -> None:
        self.cell, self.config, self.stop = cell, config, stop
        self.stats = CellStats()
        self._topic = config.kafka.topic("notifications")
        self._dead_letters = config.kafka.topic("dead-letters")
        self._failure: str | None = None

    def run(self) -> None:
        backoff = 1.0
        while not self.stop.is_set():
            try:
                self._session()
                backoff = 1.0
            except (pika.exceptions.AMQPError, DeliveryFailed, OSError) as exc:
                self.stats.connected = False
                self.stats.errors.append(type(exc).__name__)
                log.warning("cell=%s disconnected error=%s retry_in=%.0fs",
                            self.cell.name, type(exc).__name__, backoff)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def declare(self) -> list[str]:
        """Declare this cell's queues and bindings, then disconnect.

        Queues must exist before traffic does: RabbitMQ routes a message only to
        the queues bound at publish time. A bridge that runs continuously has them
        already; replays and first deployments call this first.
        """
        connection = pika.BlockingConnection(connection_parameters(self.cell))
        try:
            return self._declare(connection)
        finally:
            connection.close()

    def _declare(self, connection: pika.BlockingConnection) -> list[str]:
        channel = connection.channel()
        queues = []
        for exchange in self.cell.exchanges:
            try:
                channel.exchange_declare(exchange, passive=True)
            except pika.exceptions.ChannelClosedByBroker:
                # Not there yet: create it as oslo.messaging does (topic, not durable).
                channel = connection.channel()
                channel.exchange_declare(exchange, exchange_type="topic", durable=False)
            queue = queue_name(self.config.bridge.queue_prefix, self.cell.name, exchange)
            channel.queue_declare(queue, durable=True)
            for topic in self.cell.topics:
                for priority in self.cell.priorities:
                    channel.queue_bind(queue, exchange, routing_key=f"{topic}.{priority}")
            queues.append(queue)
        channel.close()
        return queues

    def _session(self) -> None:
        connection = pika.BlockingConnection(connection_parameters(self.cell))
        producer = Producer(producer_settings(self.config.kafka, f"stacktide-bridge-{self.cell.name}"))
        window = AckWindow()
        self._failure = None
        try:
            queues = self._declare(connection)
            channel = connection.channel()
            channel.basic_qos(prefetch_count=self.config.bridge.prefetch)
            on_message = partial(self._on_message, producer, window)
            tags = [channel.basic_consume(q, on_message_callback=on_message) for q in queues]
            self.stats.connected = True
            self.stats.last_message_at = time.monotonic()  # idleness counts from here
            log.info("cell=%s consuming queues=%s from %s", self.cell.name, ",".join(queues),
                     self.cell.transport.redacted())
            while not self.stop.is_set():
                connection.process_data_events(time_limit=0.05)
                producer.poll(0)
                self._ack(channel, window)
            for tag in tags:
                channel.basic_cancel(tag)
            remaining = producer.flush(30)
            self._ack(channel, window)
            log.info("cell=%s stopped unconfirmed=%d", self.cell.name, remaining)
        finally:
            self.stats.connected = False
            if connection.is_open:
                connection.close()

    def _ack(self, channel: BlockingChannel, window: AckWindow) -> None:
        if self._failure is not None:
            raise DeliveryFailed(self._failure)
        last = window.take_ackable()
        if last is not None:
            channel.basic_ack(delivery_tag=last, multiple=True)

    def _on_message(
        self, producer: Producer, window: AckWindow, channel: BlockingChannel,
        method: Any, properties: pika.BasicProperties, body: bytes,
    ) -> None:
        now = datetime.now(UTC)
        self.stats.received += 1
        self.stats.last_message_at = time.monotonic()
        tag = method.delivery_tag
        window.add(tag)
        result = parse(body, cell=self.cell.name, exchange=method.exchange,
                       routing_key=method.routing_key, received=now)
        if isinstance(result, Rejected):
            headers = {
                "stacktide.reason": result.reason,
                "stacktide.cell": self.cell.name,
                "stacktide.exchange": method.exchange,
                "stacktide.routing-key": method.routing_key,
                "stacktide.received-at": now.isoformat(),
            }
            self._produce(producer, self._dead_letters, None, scrub_body(body), tag, window,
                          headers=list(headers.items()), dead=True)
        else:
            self._produce(producer, self._topic, result.kafka_key(), result.to_json(), tag, window)

    def _produce(
        self, producer: Producer, topic: str, key: bytes | None, value: bytes, tag: int,
        window: AckWindow, headers: list[tuple[str, str | bytes | None]] | None = None, dead: bool = False,
    ) -> None:
        callback = partial(self._delivered, window, tag, dead)
        while True:
            try:
                producer.produce(topic, value=value, key=key, headers=headers, on_delivery=callback)
                return
            except BufferError:
                producer.poll(0.1)  # local queue full: let deliveries drain

    def _delivered(self, window: AckWindow, tag: int, dead: bool, err: KafkaError | None,
                   _msg: Any) -> None:
        if err is not None:
            self._failure = str(err)
            return
        window.confirm(tag)
        if dead:
            self.stats.dead_lettered += 1
        else:
            self.stats.forwarded += 1


class Bridge:
    """All cells at once; ``run`` returns when stopped or, with *idle_exit*, once idle."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.stop = threading.Event()
        self.cells = [CellBridge(cell, config, self.stop) for cell in config.cells]

    def declare(self) -> None:
        for cell in self.cells:
            cell.declare()

    def run(self, idle_exit: float | None = None) -> None:
        threads = [threading.Thread(target=c.run, name=f"cell-{c.cell.name}", daemon=True)
                   for c in self.cells]
        started = time.monotonic()
        for t in threads:
            t.start()
        try:
            while not self.stop.wait(0.2):
                if idle_exit is not None and self._idle_for(started) >= idle_exit:
                    log.info("idle for %.1fs: stopping", idle_exit)
                    self.stop.set()
        finally:
            self.stop.set()
            for t in threads:
                t.join(timeout=60)

    def _idle_for(self, started: float) -> float:
        if not all(c.stats.connected for c in self.cells):
            return 0.0
        last = max([started, *(c.stats.last_message_at for c in self.cells)])
        return time.monotonic() - last
