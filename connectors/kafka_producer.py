"""The bridge's Kafka side: producer settings, the per-message forwarder, the ack window.

The bridge acks RabbitMQ only after Kafka confirmed a write, so the producer must
confirm only what is durable (``acks=all``) and must not reorder or duplicate on
its own retries (idempotence). Batching (``linger.ms``) is what makes that cheap.
"""

from __future__ import annotations

import json
import logging
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

log = logging.getLogger(__name__)

Headers = list[tuple[str, str | bytes | None]]

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""The producer's limit; ``stacktide local`` creates the topics with the same ``max.message.bytes``."""

MAX_DEAD_LETTER_BYTES = MAX_MESSAGE_BYTES - 1024 * 1024
"""A dead letter's value is cut here (and says so in a header), leaving room for key and headers:
a body Kafka cannot take must still be recorded and acked, or it would be redelivered forever."""

REFUSED_BYTES = 512 * 1024
"""A write the topic refuses as too large is dead-lettered cut to this size (see Forwarder._refused)."""


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
            headers: Headers | None = None) -> None:
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
                    partial(self._delivered, window, tag, forwarded, None))

    def _dead_letter(self, window: AckWindow, method: Any, body: bytes, result: Rejected,
                     now: datetime) -> None:
        value = scrub_body(body)
        headers: Headers = [
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
                partial(self._delivered, window, method.delivery_tag, counter, headers), headers)

    def _delivered(self, window: AckWindow, tag: int, counter: Any, dead: Headers | None,
                   err: KafkaError | None, msg: Message) -> None:
        """Delivery report of one write; *dead* holds a dead letter's headers (None: a notification)."""
        if err is not None:
            if err.code() == KafkaError.MSG_SIZE_TOO_LARGE and len(msg.value() or b"") > REFUSED_BYTES:
                self._refused(window, tag, err, msg, dead)
            else:
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

    def _refused(self, window: AckWindow, tag: int, err: KafkaError, msg: Message,
                 dead: Headers | None) -> None:
        """The topic's ``max.message.bytes`` is below this write (a topic made by hand with
        Kafka's 1 MB default): dead-letter its head instead, or the message would be
        redelivered and refused forever, stalling the cell."""
        value = msg.value() or b""
        if dead is not None:
            old = {k: _text(v) for k, v in dead if k != "stacktide.truncated-from"}
            code = old.get("stacktide.reason", "").split(":")[0]
        else:  # a normalized envelope: where it came from is inside it
            envelope = json.loads(value)
            code = "kafka-refused"
            old = {"stacktide.reason": f"{code}: {err.str()}", "stacktide.cell": self.cell,
                   "stacktide.exchange": envelope["exchange"],
                   "stacktide.routing-key": envelope["routing_key"],
                   "stacktide.received-at": envelope["received"]}
        headers: Headers = [*old.items(),
                                                         ("stacktide.truncated-from", str(len(value)))]
        counter = self.metrics.dead_letter(old.get("stacktide.exchange", ""), code)
        log.warning("event=refused_by_kafka cell=%s topic=%s bytes=%d error=%r: dead-lettering its "
                    "first %d bytes; raise the topic's max.message.bytes", self.cell, msg.topic(),
                    len(value), err.str(), REFUSED_BYTES)
        try:  # from a delivery callback: produce, but never poll (it would re-enter)
            self.producer.produce(self._dead_letters, value=value[:REFUSED_BYTES], headers=headers,
                                  on_delivery=partial(self._delivered, window, tag, counter, headers))
        except BufferError:
            window.failure = f"{err.str()} (and the local queue is full)"


def _text(value: str | bytes | None) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value or ""
