"""Throughput of the archive job: Kafka ``notifications`` topic -> Iceberg, bounded runs.

Starts a stack of its own (ports 5732/9432/9433, a temporary state dir), fills a
topic with N normalized envelopes built from the sample corpus, and times the
bounded job twice: over a topic holding 1 record (the fixed cost of starting
Flink, planning and committing) and over the N records. The difference divided
into N is the sustained rate. Prints numbers; asserts nothing.

    .venv/bin/python bench/bench_archive_job.py --n 200000 --repeat 3
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Producer

from connectors.kafka_producer import produce, producer_settings
from connectors.wire import Rejected, parse
from jobs.command import run_jobs
from stacktide import local
from stacktide.catalog import load_catalog
from stacktide.config import Config, config_from_mapping
from stacktide.corpus import iter_samples
from stacktide.local.kafka import ensure_topics
from stacktide.schema import Envelope


def bench_config(state: Path) -> Config:
    data = {
        "cells": [{"name": "cell1", "transport_url": "rabbit://guest:guest@127.0.0.1:5732/"}],
        "kafka": {"bootstrap_servers": "127.0.0.1:9432", "partitions": 4},
        "local": {"state_dir": str(state), "rabbitmq_port": 5732, "kafka_port": 9432,
                  "kafka_controller_port": 9433},
        "jobs": {"checkpoint_interval_s": 5},
    }
    return config_from_mapping(data, "<bench>", base=state)


def envelopes() -> list[Envelope]:
    now = datetime.now(UTC)
    out = []
    for s in iter_samples(envelope="2.0"):
        env = parse(s.body, cell="cell1", exchange=s.exchange, routing_key=s.routing_key, received=now)
        if not isinstance(env, Rejected):
            out.append(env)
    return out


def fill(config: Config, templates: list[Envelope], n: int) -> None:
    producer = Producer(producer_settings(config.kafka, "stacktide-bench"))  # as the bridge writes
    topic = config.kafka.topic("notifications")
    for i in range(n):
        env = dataclasses.replace(templates[i % len(templates)], message_id=str(uuid.uuid4()))
        produce(producer, topic, env.kafka_key(), env.to_json(), lambda *_: None)
        if i % 10_000 == 0:
            producer.poll(0)
    producer.flush()


def timed_run(base: Config, templates: list[Envelope], n: int) -> float:
    tag = f"b{uuid.uuid4().hex[:6]}"
    config = dataclasses.replace(
        base,
        kafka=dataclasses.replace(base.kafka, topic_prefix=tag),
        iceberg=dataclasses.replace(base.iceberg, namespace=tag),
    )
    ensure_topics(config)
    fill(config, templates, n)
    started = time.monotonic()
    run_jobs(config, bounded=True, fresh=True)
    elapsed = time.monotonic() - started
    table = load_catalog(config.iceberg).load_table(f"{tag}.notifications")
    rows = table.scan(selected_fields=("message_id",)).to_arrow().num_rows
    if rows != n:
        raise SystemExit(f"expected {n} rows, found {rows}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stacktide-bench-") as tmp:
        config = bench_config(Path(tmp))
        local.up(config)
        try:
            templates = envelopes()
            fixed, full = [], []
            for _ in range(args.repeat):
                fixed.append(timed_run(config, templates, 1))
                full.append(timed_run(config, templates, args.n))
        finally:
            local.down(config)
    f, t = statistics.median(fixed), statistics.median(full)
    print(f"archive job, parallelism {config.jobs.parallelism}, {args.n} records, "
          f"median of {args.repeat}:")
    print(f"  bounded run over 1 record : {f:6.1f} s  (JVM, planning, final commit)")
    print(f"  bounded run over N records: {t:6.1f} s")
    print(f"  sustained rate            : {args.n / max(t - f, 1e-9):,.0f} records/s")
    print(f"  end-to-end rate incl. start: {args.n / t:,.0f} records/s")


if __name__ == "__main__":
    main()
