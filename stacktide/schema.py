"""The records that cross Kafka and the tables the jobs write: defined once, here.

The bridge builds :class:`Envelope` objects, the jobs declare their Kafka sources
and Iceberg sinks from :data:`ENVELOPE_COLUMNS` and :data:`TABLES`, and the tests
read both. Column types are named abstractly (``string``, ``timestamptz`` …) and
turned into Flink SQL or Iceberg types by :func:`flink_type` and by
``stacktide.catalog``; this module imports nothing heavy, so the bridge stays light.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any, Literal

ColumnType = Literal["string", "timestamptz", "long", "int", "double", "boolean"]

_FLINK_TYPES: dict[str, str] = {
    "string": "STRING",
    "timestamptz": "TIMESTAMP_LTZ(6)",
    "long": "BIGINT",
    "int": "INT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
}


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: ColumnType
    doc: str
    required: bool = False


@dataclass(frozen=True, slots=True)
class Partition:
    """An Iceberg partition field: ``transform`` of ``column`` (identity, day, hour…)."""

    column: str
    transform: Literal["identity", "day", "hour", "month"]


@dataclass(frozen=True, slots=True)
class TableDef:
    name: str
    columns: tuple[Column, ...]
    identifier: tuple[str, ...]
    partitions: tuple[Partition, ...] = ()
    doc: str = ""

    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


def flink_type(column: Column) -> str:
    base = _FLINK_TYPES[column.type]
    return f"{base} NOT NULL" if column.required else base


def format_time(t: datetime) -> str:
    """ISO-8601 UTC with microseconds and ``Z``: the one timestamp form on Kafka."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    """Inverse of :func:`format_time` (also takes ``+00:00`` and no fraction)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Envelope:
    """One notification, normalized, whatever its wire format (CONTRACT.md §1).

    ``payload`` is the decoded payload object with secrets removed; ``generated``
    and ``received`` are strings in :func:`format_time` form so that the JSON on
    Kafka is produced once and read by Flink's JSON format without conversion.
    """

    message_id: str
    cell: str
    exchange: str
    routing_key: str
    priority: str
    event_type: str
    publisher_id: str | None
    service: str | None
    host: str | None
    generated: str
    received: str
    request_id: str | None
    global_request_id: str | None
    tenant_id: str | None
    user_id: str | None
    instance_id: str | None
    format: Literal["legacy", "versioned"]
    payload: Any

    def kafka_key(self) -> bytes:
        """Instance uuid when there is one, so one instance's events share a partition."""
        return (self.instance_id or self.message_id).encode()

    def to_json(self) -> bytes:
        # Not dataclasses.asdict: it deep-copies the payload, once per message.
        obj = {name: getattr(self, name) for name in _ENVELOPE_FIELDS}
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Envelope:
        obj = json.loads(data)
        return cls(**{f.name: obj.get(f.name) for f in fields(cls)})


_ENVELOPE_FIELDS = tuple(f.name for f in fields(Envelope))

_DOCS = {
    "message_id": "oslo message id (UUID); duplicates of a redelivery share it",
    "cell": "the cell or deployment the notification came from",
    "exchange": "RabbitMQ exchange it was published on",
    "routing_key": "routing key, <topic>.<priority>",
    "priority": "lower-case oslo priority",
    "event_type": "e.g. compute.instance.create.end",
    "publisher_id": "as sent, e.g. compute.host1 or nova-compute:host1",
    "service": "publisher's service part (compute, nova-compute, image…)",
    "host": "publisher's host part",
    "generated": "the notification's own timestamp (UTC)",
    "received": "when the bridge received it (UTC)",
    "request_id": "request id of the context or payload",
    "global_request_id": "cross-service request id",
    "tenant_id": "project/tenant",
    "user_id": "user",
    "instance_id": "nova instance uuid, when the notification concerns one",
    "format": "legacy or versioned",
    "payload": "the decoded payload, as JSON text",
}
_TYPES: dict[str, ColumnType] = {"generated": "timestamptz", "received": "timestamptz"}
_REQUIRED = {"message_id", "cell", "event_type", "generated", "received", "priority", "format"}

ENVELOPE_COLUMNS: tuple[Column, ...] = tuple(
    Column(f.name, _TYPES.get(f.name, "string"), _DOCS[f.name], f.name in _REQUIRED)
    for f in fields(Envelope)
)

NOTIFICATIONS = TableDef(
    name="notifications",
    columns=ENVELOPE_COLUMNS,
    identifier=("message_id",),
    partitions=(Partition("generated", "day"), Partition("cell", "identity")),
    doc="raw archive of every notification, all priorities, all services",
)

TABLES: dict[str, TableDef] = {t.name: t for t in (NOTIFICATIONS,)}


@dataclass(frozen=True, slots=True)
class CapturedMessage:
    """One AMQP message as it was on the wire: a line of a ``.jsonl`` capture (CONTRACT.md §2).

    ``body`` is the AMQP body decoded as UTF-8 (with surrogate escapes, so that a
    body that is not UTF-8 survives a capture and replays byte for byte).
    """

    cell: str
    exchange: str
    routing_key: str
    body: str
    properties: dict[str, Any]

    @classmethod
    def from_wire(
        cls, cell: str, exchange: str, routing_key: str, body: bytes,
        properties: dict[str, Any] | None = None,
    ) -> CapturedMessage:
        props = properties if properties is not None else {"content_type": "application/json"}
        return cls(cell, exchange, routing_key, body.decode("utf-8", "surrogateescape"), props)

    def body_bytes(self) -> bytes:
        return self.body.encode("utf-8", "surrogateescape")

    def to_line(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=True)

    @classmethod
    def from_line(cls, line: str) -> CapturedMessage:
        obj = json.loads(line)
        return cls(obj["cell"], obj["exchange"], obj["routing_key"], obj["body"],
                   obj.get("properties") or {})
