"""The bridge's Kafka side: producer settings, the per-message forwarder, the ack window.

The bridge acks RabbitMQ only after Kafka confirmed a write, so the producer must
confirm only what is durable (``acks=all``) and must not reorder or duplicate on
its own retries (idempotence). Batching (``linger.ms``) is what makes that cheap.

Per message the forwarder does no more than it must: the receive time is formatted
once per millisecond, Prometheus counters and the latency histogram are tallied in
plain Python and added once per loop iteration (:meth:`Forwarder.flush_metrics`),
and the ack window marks confirmations in a bytearray whose confirmed prefix
``bytearray.find`` measures.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from connectors.metrics import CellMetrics, HistogramTally, Tally
from connectors.wire import Rejected, parse, scrub_body
from stacktide.config import KafkaConfig
from stacktide.schema import format_time

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
        # 20 ms batches: a quarter of librdkafka's and the broker's CPU per message at 5 ms
        # (bench/README.md); the prefetch window covers it (1,000 unacked = 50k msg/s).
        "linger.ms": 20,
        # lz4: the broker writes a third of the bytes; uncompressed cost it more CPU here.
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
    """Delivery tags in arrival order; tells which prefix Kafka has fully confirmed.

    A channel numbers its deliveries 1, 2, 3 …, so the window is the run of tags from
    the oldest unacked one, one byte each (1 = confirmed): confirming is a store and
    the confirmed prefix is one ``find``. A tag that skips ahead fills the gap as
    confirmed, as an ack with ``multiple=True`` past it would treat it anyway.
    """

    def __init__(self) -> None:
        self._first = 0  # the tag of _flags[0]
        self._flags = bytearray()
        self.failure: str | None = None  # a refused write: the session must end, unacked

    def add(self, tag: int) -> None:
        flags = self._flags
        if not flags:
            self._first = tag
        elif tag != self._first + len(flags):
            if tag < self._first + len(flags):
                raise ValueError(f"delivery tag {tag} is not after {self._first + len(flags) - 1}")
            flags.extend(b"\x01" * (tag - self._first - len(flags)))
        flags.append(0)

    def confirm(self, tag: int) -> None:
        i = tag - self._first
        if 0 <= i < len(self._flags):  # else not of this window (a former session's)
            self._flags[i] = 1

    def take_ackable(self, at_least: int = 1) -> int | None:
        """Pop the confirmed prefix and return its last tag (ack it with multiple=True),
        if it holds *at_least* tags; else None and the window is unchanged."""
        n = self._flags.find(0)
        if n < 0:
            n = len(self._flags)
        if n == 0 or n < at_least:
            return None
        del self._flags[:n]
        self._first += n
        return self._first - 1

    def __len__(self) -> int:
        return len(self._flags)


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
    Counters reach Prometheus at :meth:`flush_metrics`, which the cell's loop calls.
    """

    def __init__(self, producer: Producer, kafka: KafkaConfig, cell: str, metrics: CellMetrics,
                 stats: CellStats) -> None:
        self.producer, self.cell, self.metrics, self.stats = producer, cell, metrics, stats
        self._topic = kafka.topic("notifications")
        self._dead_letters = kafka.topic("dead-letters")
        self._counts = Tally()
        self._latency = HistogramTally(metrics.latency)
        self._stamp, self._stamp_until = "", 0.0

    def received_at(self) -> str:
        """Now, in Envelope form, to the millisecond: formatted once per millisecond."""
        now = time.time()
        if now >= self._stamp_until:
            self._stamp = format_time(datetime.fromtimestamp(now, UTC))
            self._stamp_until = (now // 0.001 + 1) * 0.001
        return self._stamp

    def on_message(self, window: AckWindow, _channel: Any, method: Any, _properties: Any,
                   body: bytes) -> None:
        """pika's consumer callback (with the session's *window* bound first)."""
        self.stats.received += 1
        tag, exchange = method.delivery_tag, method.exchange
        received, forwarded = self.metrics.exchange(exchange)
        self._counts.add(received)
        window.add(tag)
        result = parse(body, cell=self.cell, exchange=exchange, routing_key=method.routing_key,
                       received=self.received_at())
        if isinstance(result, Rejected):
            self._dead_letter(window, method, body, result)
            return
        on_delivery = partial(self._delivered, window, tag, forwarded, None)
        try:
            self.producer.produce(self._topic, result.to_json(), result.kafka_key(),
                                  on_delivery=on_delivery)
        except BufferError:  # librdkafka's queue is full: serve deliveries until it is not
            produce(self.producer, self._topic, result.kafka_key(), result.to_json(), on_delivery)

    def flush_metrics(self) -> None:
        """Add the tallied counts and latencies to Prometheus (a few lock takes, not 3 per message)."""
        self._counts.flush()
        self._latency.flush()

    def _dead_letter(self, window: AckWindow, method: Any, body: bytes, result: Rejected) -> None:
        value = scrub_body(body)
        headers: Headers = [
            ("stacktide.reason", result.reason),
            ("stacktide.cell", self.cell),
            ("stacktide.exchange", method.exchange),
            ("stacktide.routing-key", method.routing_key),
            ("stacktide.received-at", datetime.now(UTC).isoformat()),
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
        self._counts.add(counter)
        if dead:
            self.stats.dead_lettered += 1
        else:
            self.stats.forwarded += 1
        latency = msg.latency()
        if latency is not None:
            self._latency.observe(latency)

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
