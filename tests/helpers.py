"""Helpers shared by the tests that run on the real stack (and by the benchmarks that
import them).

The session's stack is shared by every test, so each test works in a namespace of
its own (:func:`isolated`: topics, queues, Iceberg namespace) and, when it needs a
second cell, in a vhost of its own on the same broker (:func:`with_vhost_cell`).
Simulated traffic goes to Kafka as the bridge would write it (:func:`produce`); what the
jobs wrote is compared with the simulator's ground truth (:func:`truth_usage`) or with
another run's tables (:func:`current_rows`, :func:`difference`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pika
import pyarrow.parquet as pq
import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from connectors.bridge import connection_parameters
from connectors.kafka_producer import produce as send
from connectors.kafka_producer import producer_settings
from connectors.wire import parse
from jobs.lifecycle import load_rules, observe, to_us
from stacktide.catalog import load_catalog
from stacktide.config import CellConfig, Config
from stacktide.local import rabbitmq
from stacktide.local.kafka import ensure_topics
from stacktide.local.process import fresh_environment as fresh_environment  # tests import it here
from stacktide.schema import TABLES, Envelope
from stacktide.simulate.cloud import Params
from stacktide.simulate.delivery import Delivery
from stacktide.simulate.traffic import Traffic, generate
from stacktide.usage_report import current, read_current


def isolated(config: Config, name: str, exchanges: set[str] | frozenset[str] = frozenset()) -> Config:
    """A config whose topics, queues and Iceberg namespace belong to this test alone.

    *exchanges* are added to every cell's (the corpus uses ``swift`` besides the defaults).
    """
    tag = f"{name}{uuid.uuid4().hex[:6]}"
    cells = tuple(dataclasses.replace(c, exchanges=tuple(sorted({*c.exchanges, *exchanges})))
                  for c in config.cells)
    return dataclasses.replace(
        config,
        cells=cells,
        kafka=dataclasses.replace(config.kafka, topic_prefix=tag),
        bridge=dataclasses.replace(config.bridge, queue_prefix=tag),
        iceberg=dataclasses.replace(config.iceberg, namespace=tag),
        jobs=dataclasses.replace(config.jobs, checkpoint_interval_s=1.0),
    )


def with_vhost_cell(config: Config, name: str, vhost: str | None = None) -> Config:
    """*config* plus a cell *name* on a new vhost of the same broker (another "cell")."""
    vhost = vhost or f"{name}-{uuid.uuid4().hex[:6]}"
    rabbitmq.add_vhost(config, vhost)
    first = config.cells[0]
    cell = dataclasses.replace(first, name=name,
                               transport=dataclasses.replace(first.transport, virtual_host=vhost))
    return dataclasses.replace(config, cells=(*config.cells, cell))


def cell(config: Config, name: str) -> CellConfig:
    return next(c for c in config.cells if c.name == name)


def queue_depth(config: Config, queue: str, cell_name: str | None = None) -> int:
    """Messages ready in *queue* (raises ChannelClosedByBroker when there is no such queue)."""
    target = cell(config, cell_name) if cell_name else config.cells[0]
    conn = pika.BlockingConnection(connection_parameters(target))
    try:
        return int(conn.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        conn.close()


def queue_exists(config: Config, queue: str, cell_name: str | None = None) -> bool:
    try:
        queue_depth(config, queue, cell_name)
    except pika.exceptions.ChannelClosedByBroker:
        return False
    return True


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


def read_topic(config: Config, name: str, timeout: float = 60.0) -> list[Record]:
    """Every record of topic ``<prefix>.<name>``, up to the end it has when called.

    Reads each partition from its low to its high watermark, so the answer is the
    whole topic (not "whatever arrived within a poll timeout").
    """
    topic = config.kafka.topic(name)
    consumer = Consumer({"bootstrap.servers": config.kafka.bootstrap_servers,
                         "group.id": f"test-{uuid.uuid4().hex}", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
        partitions = sorted(metadata.topics[topic].partitions)
        ends = {}
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        records: list[Record] = []
        done = {p: False for p in ends}
        deadline = time.monotonic() + timeout
        while not all(done.values()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: read {len(records)} records, partitions "
                                   f"{[p for p, d in done.items() if not d]} incomplete")
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            p = msg.partition()
            records.append(Record(p, msg.offset(), msg.key(), msg.value(),
                                  dict(msg.headers() or [])))
            if msg.offset() + 1 >= ends[p]:
                done[p] = True
        return records
    finally:
        consumer.close()


def simulated_envelopes(traffic: Traffic, received: datetime) -> list[Envelope]:
    """The normalized envelopes of simulated *traffic*, in delivery order, as the bridge
    writes them to Kafka (parsed from the wire form the simulator renders)."""
    out = []
    for _, r in traffic.messages:
        m = r.captured()
        env = parse(m.body_bytes(), cell=m.cell, exchange=m.exchange, routing_key=m.routing_key,
                    received=received)
        assert isinstance(env, Envelope), env
        out.append(env)
    return out


def committed(config: Config) -> int:
    """Rows of the archive so far (0 until the job created the table)."""
    catalog, ident = load_catalog(config.iceberg), f"{config.iceberg.namespace}.notifications"
    if not catalog.table_exists(ident):
        return 0
    return int(catalog.load_table(ident).scan(selected_fields=("message_id",)).to_arrow().num_rows)


@contextmanager
def jobs_running(config_file: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``stacktide jobs run`` (streaming) of *config_file* as a child process, as an operator
    starts it, its output appended to *log*; at the end, if it still runs, killed with its JVM
    and Python workers."""
    with log.open("ab") as out:
        job = subprocess.Popen([sys.executable, "-m", "stacktide.cli", "--config", str(config_file),
                                "jobs", "run"], start_new_session=True, stdout=out,
                               stderr=subprocess.STDOUT, env=fresh_environment())
    try:
        yield job
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
        job.wait()


def stop_jobs(job: subprocess.Popen[bytes], log: Path, seconds: float = 180) -> None:
    """SIGTERM to a :func:`jobs_running` child: it stops the job with a savepoint and exits 0."""
    job.send_signal(signal.SIGTERM)
    assert job.wait(timeout=seconds) == 0, log.read_text()[-3000:]


def wait_for(condition: Any, job: subprocess.Popen[bytes], log: Path, seconds: float) -> None:
    """Until *condition*() holds, while *job* runs; its log's tail when it ends or time is up."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert job.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(1.0)


# ---- simulated traffic in, tables out ---------------------------------------------------

S = 1_000_000
HOUR = 3600 * S
RECEIVED = datetime(2030, 1, 1, tzinfo=UTC)
Usage = dict[tuple[str, str, int, str], tuple[int, int]]


def setup(stack: Config, name: str, settle_hours: float, state_dir: Path | None = None) -> Config:
    """An isolated config whose audit waits *settle_hours*: longer than the simulated delays,
    so an exists is verified only once the late notifications it depends on arrived."""
    config = isolated(stack, name)
    config = dataclasses.replace(
        config, usage=dataclasses.replace(config.usage, settle_seconds=settle_hours * 3600))
    if state_dir is not None:
        config = dataclasses.replace(config, local=dataclasses.replace(config.local,
                                                                       state_dir=state_dir))
    ensure_topics(config)
    return config


def envelopes(traffic: Traffic) -> list[Envelope]:
    return simulated_envelopes(traffic, RECEIVED)


def produce(config: Config, items: list[Envelope]) -> None:
    """Write *items* to the notifications topic as the bridge does: keyed by instance uuid,
    with the bridge's producer settings. Those are idempotent: without that, a batch retried
    (as the first writes to a topic just created can be) may land after later batches, and a
    partition's first events then come hours behind its watermark, late."""
    producer, failed = Producer(producer_settings(config.kafka, "stacktide-tests")), []
    topic = config.kafka.topic("notifications")
    def delivered(error: Any, _: Any) -> None:
        if error is not None:
            failed.append(error)

    for env in items:
        send(producer, topic, env.kafka_key(), env.to_json(), delivered)
    assert producer.flush(60) == 0 and not failed, failed[:3]


def truth_usage(traffic: Traffic) -> Usage:
    return {(i["cell"], i["instance_id"], to_us(u["period_start"]) or 0, u["flavor_id"]): (
        int(Decimal(u["seconds"]) * S), int(Decimal(u["running_seconds"]) * S))
        for i in traffic.truth["instances"] for u in i["usage"]}


def table_usage(config: Config) -> Usage:
    """Current instance_usage rows with some usage (a row corrected to nothing holds zeros)."""
    return {(r["cell"], r["instance_id"], to_us(r["period_start"].isoformat()) or 0,
             r["flavor_id"]): (r["microseconds"], r["running_microseconds"])
            for r in read_current(config, "instance_usage").to_pylist()
            if r["microseconds"] or r["running_microseconds"]}


def state_events(items: list[Envelope]) -> set[str]:
    """Message ids of the notifications that make a lifecycle history row (once each)."""
    rules = load_rules()
    return {o.message_id for o in map(lambda e: observe(e, rules), items)
            if o is not None and o.effect.sets}




def write_config(config: Config, path: Path) -> Path:
    """*config* (one cell on the local stack) as the YAML file a ``stacktide`` child process
    reads: the bridge's queues and the jobs' settings are the test's own, like its topics."""
    c = config
    path.write_text(yaml.safe_dump({
        "cells": [{"name": "cell1",
                   "transport_url": f"rabbit://guest:guest@127.0.0.1:{c.local.rabbitmq_port}/",
                   "durable_exchanges": c.cells[0].durable_exchanges}],
        "kafka": {"bootstrap_servers": c.kafka.bootstrap_servers,
                  "topic_prefix": c.kafka.topic_prefix, "partitions": c.kafka.partitions},
        "iceberg": {"catalog_name": c.iceberg.catalog_name, "uri": c.iceberg.uri,
                    "warehouse": c.iceberg.warehouse, "namespace": c.iceberg.namespace,
                    **({"user": c.iceberg.user, "password": c.iceberg.password}
                       if c.iceberg.user else {}),
                    **({"s3": dataclasses.asdict(c.iceberg.s3)} if c.iceberg.s3 else {})},
        "bridge": dataclasses.asdict(c.bridge),
        "jobs": dataclasses.asdict(c.jobs),
        "local": {"state_dir": str(c.local.state_dir), "rabbitmq_port": c.local.rabbitmq_port,
                  "kafka_port": c.local.kafka_port,
                  "kafka_controller_port": c.local.kafka_controller_port},
        "usage": {"period": c.usage.period, "settle_seconds": c.usage.settle_seconds},
    }))
    return path


def small_cloud_through_the_jobs(config: Config, seed: int, child: Path | None = None,
                                 ) -> tuple[Traffic, Usage, list[str]]:
    """30 instances over 12 hours (reordered, some late, some twice) through a bounded run of
    the jobs on *config*'s catalog and warehouse: usage equals the truth to the microsecond and
    the archive holds each message once. (traffic, expected usage, archived message ids).

    With *child* (a configuration file of *config*), the jobs run as ``stacktide jobs run`` in
    a process of its own, as an operator runs them: a JVM that earlier tests started in this
    process has its class path already, without the jars this configuration may need."""
    from jobs.command import run_jobs

    traffic = generate(Params(seed=seed, instances=30, hours=12), "legacy",
                       Delivery(seed, reorder_window_s=60.0, delay_fraction=0.03,
                                delay_hours=(0.5, 1.5), duplicate_fraction=0.05))
    items = envelopes(traffic)
    assert len(items) > len({e.message_id for e in items})  # some arrive twice
    produce(config, items)
    if child is None:
        assert run_jobs(config, bounded=True, fresh=True)
    else:
        done = subprocess.run([sys.executable, "-m", "stacktide.cli", "--config", str(child),
                               "jobs", "run", "--bounded", "--fresh"], capture_output=True,
                              text=True, env=fresh_environment(), check=False, timeout=1800)
        assert done.returncode == 0, done.stderr[-3000:]
    expected = check_usage(config, traffic, items)
    assert len({k[1] for k in expected}) >= 25
    archive = load_catalog(config.iceberg).load_table(f"{config.iceberg.namespace}.notifications")
    ids = archive.scan(selected_fields=("message_id",)).to_arrow().column("message_id").to_pylist()
    assert Counter(ids) == Counter({e.message_id for e in items})  # every one, once
    return traffic, expected, ids


def check_tenant_usage(conf: Path, traffic: Traffic, expected: Usage, capsys: Any) -> None:
    """``stacktide usage --tenant`` from the configuration file *conf* gives the first
    tenant's rows of *expected*, and their totals (existence, running) to the microsecond."""
    from stacktide.cli import main

    tenant = traffic.truth["instances"][0]["tenant_id"]
    mine = {(i["cell"], i["instance_id"]) for i in traffic.truth["instances"]
            if i["tenant_id"] == tenant}
    capsys.readouterr()
    assert main(["--config", str(conf), "usage", "--tenant", tenant, "--output", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    want = {k: v for k, v in expected.items() if k[:2] in mine}
    assert len(doc["rows"]) == len(want) > 0
    assert Decimal(doc["total"]["seconds"]) * S == sum(us for us, _ in want.values())
    assert Decimal(doc["total"]["running_seconds"]) * S == sum(r for _, r in want.values())


def current_rows(config: Config) -> dict[str, Any]:
    """What a reader sees: the current rows without their revision numbers (how often a row
    changed depends on when watermarks and checkpoints came), the histories, the archive."""
    catalog, ns = load_catalog(config.iceberg), config.iceberg.namespace

    def drop(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted(tuple((k, v) for k, v in r.items() if k != "revision") for r in rows)

    def history(name: str) -> list[tuple[Any, ...]]:
        return drop(catalog.load_table(f"{ns}.{name}").scan().to_arrow().to_pylist())

    def now(name: str) -> list[tuple[Any, ...]]:
        rows = catalog.load_table(f"{ns}.{name}").scan().to_arrow()
        return drop(current(rows, TABLES[name].identifier).to_pylist())

    return {
        "usage": table_usage(config),
        **{name: now(name) for name in ("instances", "usage_audit", "requests", "errors")},
        "instance_events": history("instance_events"),
        "archive": sorted(catalog.load_table(f"{ns}.notifications").scan(
            selected_fields=("message_id",)).to_arrow().column("message_id").to_pylist()),
    }


def difference(got: Any, want: Any) -> dict[str, Any]:
    """What only one side has, a few of each: an assertion message a person can read."""
    a, b = (set(x.items()) if isinstance(x, dict) else set(x) for x in (got, want))
    return {"only_restarted": sorted(a - b, key=repr)[:5],
            "only_undisturbed": sorted(b - a, key=repr)[:5], "counts": (len(got), len(want))}


def _unreferenced(table: Any, name: str, instances: set[str]) -> str:
    """Data files in *table*'s folder that no snapshot references, and which of them hold
    rows of *instances*: a written file whose commit was lost tells a lost commit apart
    from events the job never kept."""
    referenced: set[str] = set()
    for snapshot in table.metadata.snapshots:
        referenced |= {p.removeprefix("file:") for p in
                       table.inspect.files(snapshot.snapshot_id).column("file_path").to_pylist()}
    folder = Path(table.location().removeprefix("file:")) / "data"
    present = {str(p) for p in folder.rglob("*.parquet")} if folder.is_dir() else set()
    orphans = sorted(present - {str(Path(p)) for p in referenced})
    holding = [p for p in orphans if instances & set(
        pq.read_table(p, columns=["instance_id"]).column("instance_id").to_pylist())]
    return (f"{name}: {len(present)} data files, {len(orphans)} referenced by no snapshot, "
            f"{len(holding)} of those hold the differing instances: {holding[:5]}")


def out_of_order(config: Config, items: list[Envelope]) -> tuple[int, float]:
    """How many records of the notifications topic stand after one sent later than them
    (*items* in the order they were sent), and the most hours of event time such a record
    lies behind the newest before it in its partition: what a producer that reorders on
    retries does to a partition's watermark."""
    sent: dict[str, list[int]] = {}
    for i, env in enumerate(items):
        sent.setdefault(env.message_id, []).append(i)
    behind, worst = 0, 0.0
    last: dict[int, int] = {}  # partition: the highest send index read in it so far
    newest: dict[int, int] = {}  # partition: the newest event time read in it so far, µs
    for record in read_topic(config, "notifications"):
        ids = sent.get(json.loads(record.value)["message_id"])
        if not ids:
            continue  # not one of *items*
        index = ids.pop(0)
        at, p = to_us(items[index].generated) or 0, record.partition
        if index < last.get(p, -1):
            behind += 1
            worst = max(worst, (newest[p] - at) / 3.6e9)
        last[p], newest[p] = max(last.get(p, -1), index), max(newest.get(p, at), at)
    return behind, worst


def usage_evidence(config: Config, usage: dict[Any, Any], truth: dict[Any, Any],
                   items: list[Envelope] | None = None, logs: tuple[Path, ...] = ()) -> str:
    """When a run's usage differs from the ground truth: which instances, the stored history
    of the first one, the warnings of the run's Flink logs, and last a digest (the lines a CI
    log's tail keeps) of what tells the causes apart: periods missing or wrong, events never
    stored, late events the job logged skipping, records Kafka holds out of the order sent,
    data files no commit references. *logs*: more log files to search for skipped events
    (a Python operator's lines go to the output of the process that runs the job)."""
    differ = set(usage.items()) ^ set(truth.items())
    bad = sorted({key[1] for key, _ in differ})
    lines = [f"{difference(usage, truth)}", f"instances whose usage differs ({len(bad)}): {bad}"]
    digest = [f"usage differs for {len(bad)} instance(s), first {bad[0] if bad else None}: "
              f"{len(set(truth) - set(usage))} periods missing, {len(set(usage) - set(truth))} "
              f"extra, {sum(1 for k in set(usage) & set(truth) if usage[k] != truth[k])} wrong"]
    if bad:
        catalog = load_catalog(config.iceberg)
        history = catalog.load_table(
            f"{config.iceberg.namespace}.instance_events").scan().to_arrow().to_pylist()
        mine = sorted((r for r in history if r.get("instance_id") == bad[0]), key=lambda r: r["at"])
        lines.append(f"stored instance_events of {bad[0]}:")
        lines += [repr(r) for r in mine]
        if items is not None:
            want = state_events([e for e in items if e.instance_id == bad[0]])
            digest.append(f"its instance_events stored {len({r['message_id'] for r in mine})} "
                          f"of {len(want)}")
        orphans = [_unreferenced(catalog.load_table(f"{config.iceberg.namespace}.{name}"),
                                 name, set(bad)) for name in ("instance_events", "instance_usage",
                                                               "instances")]
        lines += orphans
        digest.append(orphans[0][:150])
    folder = config.local.state_dir / "flink" / "log"
    skipped: dict[str, None] = {}  # what follows "late event skipped", once (a line may be in two)
    for log_file in [*sorted(folder.glob("*.log") if folder.is_dir() else ()), *logs]:
        text = log_file.read_text(errors="replace").splitlines()
        warned = [x for x in text if (" WARN " in x or " ERROR " in x) and "Name collision" not in x]
        lines.append(f"{log_file.name}: {len(warned)} WARN/ERROR lines; the last 20:")
        lines += warned[-20:]
        skipped |= {x.split("late event skipped", 1)[1]: None for x in text
                    if "late event skipped" in x and any(b in x for b in bad)}
    digest.append(f"late events logged for them: {len(skipped)}"
                  + (f"; first: {next(iter(skipped))[:160]}" if skipped else ""))
    if items is not None:
        behind, worst = out_of_order(config, items)
        digest.append(f"topic records behind one sent after them: {behind} (up to {worst:.1f} h)")
    return "\n".join([*lines, "digest:", *digest])


def check_usage(config: Config, traffic: Traffic, items: list[Envelope] | None = None,
                logs: tuple[Path, ...] = ()) -> Usage:
    """The current usage rows equal the ground truth; else an error ending in the evidence's
    digest (a dict comparison's diff would fill the end of a CI log instead)."""
    usage, truth = table_usage(config), truth_usage(traffic)
    if usage != truth:
        raise AssertionError(usage_evidence(config, usage, truth, items, logs))
    return usage
