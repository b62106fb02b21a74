"""RabbitMQ -> bridge -> Kafka -> PyFlink -> Iceberg, on the real services.

The corpus is published as the services would publish it (both oslo wire
formats), with a redelivered duplicate and a few broken messages mixed in; the
bridge forwards it, the archive job runs bounded, and pyiceberg reads back the
table: every valid notification exactly once, with the right fields, and every
broken one in the dead-letter topic with its raw bytes and reason.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from connectors.bridge import Bridge
from connectors.kafka_producer import CellStats
from connectors.replay import publish
from connectors.wire import parse
from jobs.command import run_jobs
from jobs.lifecycle import load_rules, observe, to_us
from stacktide.catalog import load_catalog
from stacktide.config import Config
from stacktide.corpus import Sample, iter_samples
from stacktide.local.kafka import ensure_topics
from stacktide.schema import CapturedMessage, Envelope
from stacktide.usage_report import read_current
from tests.helpers import isolated, queue_depth, queue_exists, read_topic

pytestmark = pytest.mark.stack

BROKEN = [
    (b"{not json", "invalid-json"),
    (b"\xff\xfe\x00garbage", "not-utf8"),
    (json.dumps({"priority": "INFO", "payload": {}, "message_id": "x",
                 "_context_auth_token": "s3cr3t-token"}).encode(), "missing-event-type"),
]


def test_every_notification_lands_once(stack: Config) -> None:
    # Published in time order, as a cloud would: the keyed instance job then takes every
    # sample (in mixed order, a 2024 sample would make the 2014 ones years late, beyond the
    # allowed lateness: the archive keeps those, the instance job counts and skips them).
    # Each service has its own queue, and the bridge reads them side by side, so one hour of
    # the corpus is published at a time, the next once the bridge forwarded it: otherwise a
    # neutron sample of 2016 may reach a nova instance's partition before that instance's
    # 2014 events, and they become late (twelve years of samples published within seconds).
    samples = sorted(iter_samples(envelope="mixed"),
                     key=lambda s: _wire_timestamp(s.body) or datetime.max.replace(tzinfo=UTC))
    # The corpus also holds a swift middleware sample, on the 'swift' exchange.
    config = isolated(stack, "e2e", {s.exchange for s in samples})
    ensure_topics(config)
    cell = config.cells[0].name
    messages = [CapturedMessage.from_wire(cell, s.exchange, s.routing_key, s.body) for s in samples]
    messages.append(messages[0])  # a redelivery: same message, same message_id
    messages += [CapturedMessage.from_wire(cell, "nova", "notifications.error", body)
                 for body, _ in BROKEN]
    before = queue_depth(config, "notifications.info") if queue_exists(
        config, "notifications.info") else 0

    bridge = Bridge(config)
    bridge.declare()
    runner = threading.Thread(target=bridge.run, name="bridge", daemon=True)
    runner.start()
    stats, published = bridge.cells[0].stats, 0
    try:
        for batch in [*_hours(messages[:len(samples)], samples), messages[len(samples):]]:
            published += publish(config, batch)
            _wait_forwarded(stats, published, runner)
    finally:
        bridge.stop.set()
        runner.join(timeout=60)
    assert published == len(messages)
    assert stats.received == len(messages)
    assert stats.forwarded == len(samples) + 1
    assert stats.dead_lettered == len(BROKEN)

    # oslo's own queue (one per routing key, bound to every service's exchange, as each
    # service's notifier declares it) kept its copies: the bridge read only its own queues.
    info = sum(1 for m in messages if m.routing_key == "notifications.info")
    assert queue_depth(config, "notifications.info") == before + info

    assert run_jobs(config, bounded=True, fresh=True)
    table = load_catalog(config.iceberg).load_table(f"{config.iceberg.namespace}.notifications")
    rows = table.scan().to_arrow().to_pylist()
    by_id = {r["message_id"]: r for r in rows}
    assert len(rows) == len(by_id) == len(samples)
    assert Counter(r["cell"] for r in rows) == {cell: len(samples)}
    for s in samples:
        row = by_id[s.message_id]
        assert (row["event_type"], row["priority"], row["exchange"], row["routing_key"]) == (
            s.event_type, s.priority, s.exchange, s.routing_key), s.source
        assert row["format"] == s.fmt, s.source
        assert row["instance_id"] == s.instance_id, s.source
        sent_at = _wire_timestamp(s.body)
        if sent_at is not None:  # a few partial fixtures carry none: then received time
            assert row["generated"] == sent_at, s.source
        assert "auth_token" not in row["payload"]

    # The keyed instance job took the corpus too: every instance a lifecycle event names has
    # its current row, carrying the newest of those events.
    rules, newest, heard = load_rules(), dict[str, int](), dict[str, int]()
    for m in messages[:len(samples)]:
        env = parse(m.body_bytes(), cell=cell, exchange=m.exchange, routing_key=m.routing_key,
                    received=datetime.now(UTC))
        o = observe(env, rules) if isinstance(env, Envelope) else None
        if o is not None:
            heard[o.instance_id] = max(heard.get(o.instance_id, o.at), o.at)
            if o.effect.sets:
                newest[o.instance_id] = max(newest.get(o.instance_id, o.at), o.at)
    instances = {r["instance_id"]: r for r in read_current(config, "instances").to_pylist()}
    assert newest and set(instances) == set(newest)
    for iid, at in newest.items():
        assert to_us(instances[iid]["last_event_at"].isoformat()) == at, iid
    # The corpus spans 2012-2024 and never deletes most of its instances: their usage is held
    # once they were not heard of for usage.max_silence_hours, not extrapolated for years.
    silence = int(config.usage.max_silence_hours * 3600e6)
    last_period: dict[str, int] = {}
    for r in read_current(config, "instance_usage").to_pylist():
        start = to_us(r["period_start"].isoformat()) or 0
        last_period[r["instance_id"]] = max(last_period.get(r["instance_id"], start), start)
    assert last_period and set(last_period) <= set(heard)
    assert all(start < heard[iid] + silence for iid, start in last_period.items())
    assert any(start >= heard[iid] + silence - 2 * 3600e6 for iid, start in last_period.items())

    letters = read_topic(config, "dead-letters")
    assert sorted(r.headers["stacktide.reason"].decode().split(":")[0] for r in letters) == sorted(
        r for _, r in BROKEN)
    for letter in letters:
        assert letter.headers["stacktide.cell"] == cell.encode()
        assert b"s3cr3t-token" not in letter.value
    assert b"{not json" in [r.value for r in letters]


def _hours(messages: list[CapturedMessage], samples: list[Sample]) -> list[list[CapturedMessage]]:
    """*messages* (those of *samples*, in time order) cut where an hour since the batch's first
    passed: no message of a batch is more than an hour newer than another."""
    batches: list[list[CapturedMessage]] = []
    start: datetime | None = None
    for message, sample in zip(messages, samples, strict=True):
        at = _wire_timestamp(sample.body) or datetime.max.replace(tzinfo=UTC)
        if start is None or at - start >= timedelta(hours=1):
            batches.append([])
            start = at
        batches[-1].append(message)
    return batches


def _wait_forwarded(stats: CellStats, count: int, runner: threading.Thread, seconds: float = 60.0) -> None:
    """Until the bridge wrote *count* messages to Kafka (acknowledged there)."""
    deadline = time.monotonic() + seconds
    while (done := stats.forwarded + stats.dead_lettered) < count:
        if not runner.is_alive() or time.monotonic() > deadline:
            raise AssertionError(f"the bridge wrote {done} of {count} messages to Kafka "
                                 f"({'stopped' if not runner.is_alive() else f'{seconds:.0f} s'})")
        time.sleep(0.005)


def _wire_timestamp(body: bytes) -> datetime | None:
    obj = json.loads(body)
    if "oslo.message" in obj:
        obj = json.loads(obj["oslo.message"])
    raw = obj.get("timestamp") or (obj.get("metadata") or {}).get("timestamp")
    if not raw:
        return None
    t = datetime.fromisoformat(raw.replace(" ", "T"))
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)

