"""The bridge's Kafka producer settings, generated from the config in one place.

The bridge acks RabbitMQ only after Kafka confirmed a write, so the producer must
confirm only what is durable (``acks=all``) and must not reorder or duplicate on
its own retries (idempotence). Batching (``linger.ms``) is what makes that cheap.
"""

from __future__ import annotations

from typing import Any

from stacktide.config import KafkaConfig


def producer_settings(kafka: KafkaConfig, client_id: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": kafka.bootstrap_servers,
        "client.id": client_id,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.max.bytes": 16 * 1024 * 1024,
        "queue.buffering.max.messages": 200_000,
        # Never give up on a write: a message the bridge has not acked stays in RabbitMQ,
        # but a failed delivery would force a reconnect and a redelivery of the whole window.
        "message.timeout.ms": 300_000,
    }
