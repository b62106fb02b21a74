"""``stacktide demo``: the whole path once, on the embedded default stack.

Starts the stack, publishes the sample corpus onto RabbitMQ as the services
would, runs the bridge until the traffic is forwarded, runs the jobs over what
reached Kafka, then prints what landed in Iceberg, read back with pyiceberg.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from stacktide.config import Config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--envelope", choices=["1.0", "2.0", "mixed"], default="mixed",
                        help="oslo wire format of the replayed samples")


def run(args: argparse.Namespace, config: Config) -> int:
    from connectors.bridge import Bridge
    from connectors.replay import corpus_messages, publish
    from jobs.command import run_jobs
    from stacktide import local

    steps: list[tuple[str, float]] = []

    def step(name: str, started: float) -> None:
        steps.append((name, time.monotonic() - started))
        print(f"== {name}: {steps[-1][1]:.1f} s", flush=True)

    t = time.monotonic()
    local.up(config)
    step("stack up", t)
    t = time.monotonic()
    bridge = Bridge(config)
    bridge.declare()  # the bridge's queues must be bound before the traffic is published
    # A new seed per run: each demo is new traffic, not a redelivery of the last one.
    seed = time.time_ns() % 2**31
    published = publish(config, corpus_messages(config.cells[0].name, args.envelope, seed))
    step(f"published {published} sample notifications to RabbitMQ", t)
    t = time.monotonic()
    bridge.run(idle_exit=3.0)
    forwarded = sum(c.stats.forwarded for c in bridge.cells)
    dead = sum(c.stats.dead_lettered for c in bridge.cells)
    step(f"bridge forwarded {forwarded} to Kafka ({dead} dead-lettered)", t)
    before = table_rows(config)
    t = time.monotonic()
    run_jobs(config, bounded=True)
    step("jobs ran (bounded)", t)
    print_landed(config, before)
    return 0


def table_rows(config: Config) -> int:
    from stacktide.catalog import load_catalog

    catalog = load_catalog(config.iceberg)
    ident = f"{config.iceberg.namespace}.notifications"
    if not catalog.table_exists(ident):
        return 0
    return int(catalog.load_table(ident).scan(selected_fields=("message_id",)).to_arrow().num_rows)


def print_landed(config: Config, before: int) -> None:
    from stacktide.catalog import load_catalog

    table = load_catalog(config.iceberg).load_table(f"{config.iceberg.namespace}.notifications")
    fields = ("cell", "exchange", "priority", "format", "event_type")
    rows = table.scan(selected_fields=fields).to_arrow()
    snapshot = table.current_snapshot()
    print(f"\nIceberg table {config.iceberg.catalog_name}.{config.iceberg.namespace}.notifications:"
          f" {rows.num_rows} rows ({rows.num_rows - before} from this run),"
          f" snapshot {snapshot.snapshot_id if snapshot else None}")
    for column in ("cell", "exchange", "priority", "format"):
        counts = Counter(rows.column(column).to_pylist())
        print(f"  by {column:9}: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    top = Counter(rows.column("event_type").to_pylist()).most_common(8)
    print("  top event types: " + ", ".join(f"{k}={v}" for k, v in top))
    print_instances(config)


def print_instances(config: Config) -> None:
    """What the keyed instance job made of the same traffic (current revisions)."""
    from stacktide.usage_report import read_current, seconds

    instances = read_current(config, "instances")
    usage = read_current(config, "instance_usage")
    audit = Counter(read_current(config, "usage_audit").column("status").to_pylist())
    states = Counter(instances.column("state").to_pylist()).most_common(6)
    print(f"\ninstances: {instances.num_rows} (" + ", ".join(f"{k}={v}" for k, v in states) + ")")
    total = sum(usage.column("microseconds").to_pylist())
    running = sum(usage.column("running_microseconds").to_pylist())
    print(f"instance_usage: {usage.num_rows} instance-periods, {seconds(total)} s existing, "
          f"{seconds(running)} s running (`stacktide usage --instance <id>` for one)")
    print("usage_audit (nova's exists): " + (", ".join(f"{k}={v}" for k, v in sorted(audit.items()))
                                              or "none in this traffic"))
