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
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

import orjson

_EPOCH, _MICROSECOND = datetime(1970, 1, 1, tzinfo=UTC), timedelta(microseconds=1)
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
    """Inverse of :func:`format_time` (also takes an offset, no fraction, and no zone: UTC, as
    nova's ``str(datetime)`` means it)."""
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC)


def time_us(text: str) -> int:
    """:func:`parse_time` in microseconds since the epoch: the jobs' clock."""
    return (parse_time(text) - _EPOCH) // _MICROSECOND


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
        """Compact UTF-8 JSON, fields in declaration order; once per message on the bridge.

        orjson writes the dataclass directly (no dict, no deep copy, ~6x faster than json)
        and writes what json wrote (byte for byte on the whole corpus; a float may be
        spelled otherwise, 1.5e-7 for 1.5e-07). What orjson refuses goes through json as
        before, with json's outcome: integers beyond 64 bits are written, a lone
        surrogate raises UnicodeEncodeError, a non-JSON value raises TypeError.
        """
        try:
            return orjson.dumps(self, option=orjson.OPT_PASSTHROUGH_DATETIME)
        except TypeError:
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

def _columns(spec: str, docs: dict[str, str]) -> tuple[Column, ...]:
    """``name:type`` words (``!`` after the type: required) into columns documented by *docs*."""
    out = []
    for word in spec.split():
        name, _, kind = word.partition(":")
        if kind.rstrip("!") not in _FLINK_TYPES:
            raise ValueError(f"{name}: no column type {kind!r}")
        out.append(Column(name, cast(ColumnType, kind.rstrip("!")), docs[name], kind.endswith("!")))
    return tuple(out)


_STATE_DOCS = {
    "cell": "the cell the notifications came from", "instance_id": "nova instance uuid",
    "message_id": "oslo message id of the notification",
    "state": "vm_state (active, stopped, shelved_offloaded, deleted, ...)",
    "task_state": "task_state, when a task runs", "old_state": "vm_state before the change",
    "old_task_state": "task_state before the change",
    "power_state": "power state (from the payload, else implied by vm_state)",
    "tenant_id": "project owning the instance", "user_id": "user owning the instance",
    "flavor_id": "nova flavor id (instance_flavor_id / flavor.flavorid)",
    "flavor_name": "flavor name", "vcpus": "flavor vCPUs", "memory_mb": "flavor memory, MiB",
    "root_gb": "flavor root disk, GiB", "ephemeral_gb": "flavor ephemeral disk, GiB",
    "disk_gb": "root_gb + ephemeral_gb", "image_ref": "image the instance runs",
    "os_type": "image os_type", "host": "compute host (none while shelved_offloaded)",
    "launched_at": "launched_at (the newest launch; usage counts from the first)",
    "deleted_at": "when nova deleted (terminated) it",
    "last_event_type": "event type of the newest notification", "last_event_at": "its time",
    "updated_at": "time of the newest notification folded into the row",
    "at": "the notification's own time", "event_type": "e.g. compute.instance.update",
    "request_id": "request id of the notification",
    "period_start": "start of the usage period (UTC hour or day)", "period_end": "its end",
    "seconds": "existence in the period with this flavor, seconds (exactly microseconds / 1e6)",
    "running_seconds": "of which running, seconds (exactly running_microseconds / 1e6)",
    "microseconds": "existence, exact integer microseconds (sum this)",
    "running_microseconds": "running, exact integer microseconds",
    "revision": "0 when first written, +1 each time a late event corrected the row",
    "audit_period_beginning": "the exists' audit period start",
    "audit_period_ending": "the exists' audit period end",
    "status": "verified, failed or pending",
    "mismatches": "JSON list of {field, expected (stream), actual (exists)}",
}

INSTANCES = TableDef(
    name="instances",
    columns=_columns(
        "cell:string! instance_id:string! state:string task_state:string power_state:string "
        "tenant_id:string user_id:string flavor_id:string flavor_name:string vcpus:int "
        "memory_mb:int root_gb:int ephemeral_gb:int image_ref:string os_type:string host:string "
        "launched_at:timestamptz deleted_at:timestamptz last_event_type:string "
        "last_event_at:timestamptz updated_at:timestamptz", _STATE_DOCS),
    identifier=("cell", "instance_id"),
    partitions=(Partition("cell", "identity"),),
    doc="current state of every instance (upsert)",
)

INSTANCE_EVENTS = TableDef(
    name="instance_events",
    columns=_columns(
        "message_id:string! cell:string! instance_id:string! at:timestamptz! event_type:string! "
        "old_state:string state:string old_task_state:string task_state:string flavor_id:string "
        "request_id:string", _STATE_DOCS),
    identifier=("message_id",),
    partitions=(Partition("at", "day"), Partition("cell", "identity")),
    doc="lifecycle history: one row per state-bearing notification",
)

INSTANCE_USAGE = TableDef(
    name="instance_usage",
    columns=_columns(
        "cell:string! instance_id:string! tenant_id:string period_start:timestamptz! "
        "period_end:timestamptz flavor_id:string! vcpus:int memory_mb:int disk_gb:int "
        "seconds:double running_seconds:double microseconds:long running_microseconds:long "
        "launched_at:timestamptz deleted_at:timestamptz revision:int", _STATE_DOCS),
    identifier=("cell", "instance_id", "period_start", "flavor_id"),
    partitions=(Partition("period_start", "month"),),
    doc="exact usage per instance x period x flavor (upsert; revision bumped by corrections)",
)

USAGE_AUDIT = TableDef(
    name="usage_audit",
    columns=_columns(
        "message_id:string! cell:string instance_id:string audit_period_beginning:timestamptz "
        "audit_period_ending:timestamptz status:string! mismatches:string", _STATE_DOCS),
    identifier=("message_id",),
    doc="nova's compute.instance.exists verified against what the stream saw",
)

_REQUEST_DOCS = {
    "request_id": "the request: global_request_id when the notifications carry one, else request_id",
    "global_request_id": "cross-service request id, when any notification carried one",
    "first_at": "time of the request's first notification", "last_at": "time of its last one",
    "duration_s": "last_at - first_at, seconds",
    "cells": "JSON list of the cells its notifications came from",
    "services": "JSON list of the services that published them",
    "hosts": "JSON list of the publishing hosts", "instance_ids": "JSON list of the instances",
    "tenant_id": "project of the request", "event_count": "notifications in the request",
    "error_count": "error notifications in the request",
    "outcome": "ok, error, or open (an operation runs, or the inactivity timeout has not passed)",
    "operations": "JSON list of {operation, instance_id, start, end, duration_s, outcome}",
    "root_cause_message_id": "message id of the request's first error",
    "message_id": "oslo message id of the error notification",
    "at": "the error notification's own time", "cell": "the cell it came from",
    "event_type": "e.g. compute.instance.create.error", "priority": "lower-case oslo priority",
    "service": "publishing service", "host": "publishing host",
    "instance_id": "the instance concerned", "exception": "exception class, when named",
    "message": "the exception's message", "code": "code (exception.kwargs.code, payload code)",
    "preceding": "JSON list of the request's earlier events: {event_type, at, host, message_id}",
}

REQUESTS = TableDef(
    name="requests",
    columns=_columns(
        "request_id:string! global_request_id:string first_at:timestamptz last_at:timestamptz "
        "duration_s:double cells:string services:string hosts:string instance_ids:string "
        "tenant_id:string event_count:int error_count:int outcome:string! operations:string "
        "root_cause_message_id:string", _REQUEST_DOCS),
    identifier=("request_id",),
    doc="request timelines: every notification of a request, operations paired and timed",
)

ERRORS = TableDef(
    name="errors",
    columns=_columns(
        "message_id:string! at:timestamptz cell:string event_type:string priority:string "
        "service:string host:string request_id:string instance_id:string tenant_id:string "
        "exception:string message:string code:string root_cause_message_id:string "
        "preceding:string", _REQUEST_DOCS),
    identifier=("message_id",),
    doc="error notifications correlated with their request",
)

REVISION = Column("revision", "int", "0 when the key's row was first written, +1 each time it "
                  "changed (state, late correction, settled audit); the highest per key is current")


def with_revision(table: TableDef) -> TableDef:
    """*table* as the keyed instance job stores it: rows are appended, never upserted (pyiceberg
    0.8 cannot read the equality deletes of Iceberg's upsert mode), so each change of a key's
    row is a new row with a higher ``revision``; readers keep the highest per key."""
    if "revision" in table.column_names():
        return table
    return TableDef(table.name, (*table.columns, REVISION), table.identifier, table.partitions,
                    table.doc)


# What is stored: the row definitions above, plus `revision` where a key's row is re-appended.
TABLES: dict[str, TableDef] = {t.name: t for t in (
    NOTIFICATIONS, with_revision(INSTANCES), INSTANCE_EVENTS, INSTANCE_USAGE,
    with_revision(USAGE_AUDIT), with_revision(REQUESTS), with_revision(ERRORS))}


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


@dataclass(frozen=True, slots=True)
class SampleRecord:
    """One aggregated host-agent series over one flush window: a value of ``<prefix>.samples``
    (CONTRACT.md §1, keyed by ``host``). ``kind`` is the statsd type (``counter`` for libvirt's
    raw cumulative counters, ``gauge``…); ``last_at`` is when ``last`` arrived, which is what
    rates are measured between. Times are :func:`format_time` strings."""

    host: str
    resource_id: str
    instance_id: str
    device: str | None
    meter: str
    unit: str | None
    kind: str
    window_start: str
    window_end: str
    last_at: str
    count: int
    min: float
    max: float
    sum: float
    last: float

    def kafka_key(self) -> bytes:
        return self.host.encode()

    def to_json(self) -> bytes:
        return orjson.dumps(self)


_SAMPLE_DOCS = {
    "host": "compute host the sample was read on", "resource_id": "instance uuid, or "
    "<instance>-<device> for a disk or interface meter (Ceilometer's resource ids)",
    "instance_id": "nova instance uuid (the domain uuid when the domain has no nova metadata)",
    "device": "disk target or interface name, for per-device meters",
    "meter": "Ceilometer meter name (cpu, memory.usage, disk.device.read.bytes, ...)",
    "unit": "Ceilometer unit (ns, MB, B, packet, ...)", "kind": "counter, gauge, timer, ...",
    "window_start": "start of the receiver's flush window", "window_end": "its end",
    "last_at": "when the window's last value arrived", "count": "values in the window",
    "min": "smallest value", "max": "largest value", "sum": "sum of the values",
    "last": "the newest value (a counter's raw reading)",
    "rate": "counters: increase per second since the previous window's last value (a reset, "
            "when the counter went down, counts from zero); gauges: null",
}

SAMPLE_COLUMNS: tuple[Column, ...] = _columns(
    "host:string! resource_id:string! instance_id:string! device:string meter:string! unit:string "
    "kind:string! window_start:timestamptz! window_end:timestamptz! last_at:timestamptz! count:long! "
    "min:double max:double sum:double last:double", _SAMPLE_DOCS)

HOST_SAMPLES = TableDef(
    name="host_samples",
    columns=(*SAMPLE_COLUMNS, *_columns("rate:double", _SAMPLE_DOCS)),
    identifier=("host", "resource_id", "meter", "window_start"),
    partitions=(Partition("window_start", "day"),),
    doc="hypervisor samples with Ceilometer meter names and units, per flush window (append only)",
)

TABLES[HOST_SAMPLES.name] = HOST_SAMPLES
