"""The bridge's Kafka side: producer settings, the per-message forwarder, the ack window.

The bridge acks RabbitMQ only after Kafka confirmed a write, so the producer must
confirm only what is durable (``acks=all``) and must not reorder or duplicate on
its own retries (idempotence). Batching (``linger.ms``) is what makes that cheap.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from connectors.metrics import CellMetrics
from connectors.wire import Rejected, parse, scrub_body
from stacktide.config import KafkaConfig

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""The producer's limit; ``stacktide local`` creates the topics with the same ``max.message.bytes``."""

MAX_DEAD_LETTER_BYTES = MAX_MESSAGE_BYTES - 1024 * 1024
"""A dead letter's value is cut here (and says so in a header), leaving room for key and headers:
a body Kafka cannot take must still be recorded and acked, or it would be redelivered forever."""


def producer_settings(kafka: KafkaConfig, client_id: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": kafka.bootstrap_servers,
        "client.id": client_id,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.max.bytes": MAX_MESSAGE_BYTES,
        "queue.buffering.max.messages": 200_000,
        # Never give up on a write: a message the bridge has not acked stays in RabbitMQ,
        # but a failed delivery would force a reconnect and a redelivery of the whole window.
        "message.timeout.ms": 300_000,
    }


def produce(producer: Producer, topic: str, key: bytes | None, value: bytes,
            on_delivery: Callable[..., None],
            headers: list[tuple[str, str | bytes | None]] | None = None) -> None:
    """Queue one write; when librdkafka's local queue is full, serve deliveries until it is not."""
    while True:
        try:
            producer.produce(topic, value=value, key=key, headers=headers, on_delivery=on_delivery)
            return
        except BufferError:
            producer.poll(0.1)


class AckWindow:
    """Delivery tags in arrival order; tells which prefix Kafka has fully confirmed."""

    def __init__(self) -> None:
        self._pending: deque[int] = deque()
        self._confirmed: set[int] = set()
        self.failure: str | None = None  # a refused write: the session must end, unacked

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
    last_error: str | None = None


class Forwarder:
    """The hot path: one AMQP delivery in, one Kafka write out, its tag confirmed on delivery.

    A notification goes to ``<prefix>.notifications``; anything :func:`parse` rejects goes
    to ``<prefix>.dead-letters`` as its raw bytes (secrets removed) with headers saying
    why and whence. Either way the tag joins the window now and is confirmed only by
    Kafka's delivery report, so RabbitMQ is acked only for what Kafka holds.
    """

    def __init__(self, producer: Producer, kafka: KafkaConfig, cell: str, metrics: CellMetrics,
                 stats: CellStats) -> None:
        self.producer, self.cell, self.metrics, self.stats = producer, cell, metrics, stats
        self._topic = kafka.topic("notifications")
        self._dead_letters = kafka.topic("dead-letters")

    def on_message(self, window: AckWindow, _channel: Any, method: Any, _properties: Any,
                   body: bytes) -> None:
        """pika's consumer callback (with the session's *window* bound first)."""
        now = datetime.now(UTC)
        stats = self.stats
        stats.received += 1
        stats.last_message_at = time.monotonic()
        tag, exchange = method.delivery_tag, method.exchange
        received, forwarded = self.metrics.exchange(exchange)
        received.inc()
        window.add(tag)
        result = parse(body, cell=self.cell, exchange=exchange, routing_key=method.routing_key,
                       received=now)
        if isinstance(result, Rejected):
            self._dead_letter(window, method, body, result, now)
        else:
            produce(self.producer, self._topic, result.kafka_key(), result.to_json(),
                    partial(self._delivered, window, tag, forwarded, False))

    def _dead_letter(self, window: AckWindow, method: Any, body: bytes, result: Rejected,
                     now: datetime) -> None:
        value = scrub_body(body)
        headers: list[tuple[str, str | bytes | None]] = [
            ("stacktide.reason", result.reason),
            ("stacktide.cell", self.cell),
            ("stacktide.exchange", method.exchange),
            ("stacktide.routing-key", method.routing_key),
            ("stacktide.received-at", now.isoformat()),
        ]
        if len(value) > MAX_DEAD_LETTER_BYTES:  # beyond what Kafka takes: keep the head, say so
            headers.append(("stacktide.truncated-from", str(len(value))))
            value = value[:MAX_DEAD_LETTER_BYTES]
        counter = self.metrics.dead_letter(method.exchange, result.code)
        produce(self.producer, self._dead_letters, None, value,
                partial(self._delivered, window, method.delivery_tag, counter, True), headers)

    def _delivered(self, window: AckWindow, tag: int, counter: Any, dead: bool,
                   err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            window.failure = str(err)
            return
        window.confirm(tag)
        counter.inc()
        if dead:
            self.stats.dead_lettered += 1
        else:
            self.stats.forwarded += 1
        latency = msg.latency()
        if latency is not None:
            self.metrics.latency.observe(latency)
