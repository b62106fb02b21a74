"""Exact usage on the real stack: simulated nova traffic -> Kafka -> the jobs -> Iceberg.

The simulator's ground truth (each instance's existence and running intervals, computed from
its own model, not from events) is what ``instance_usage`` must hold, to the microsecond,
whatever the delivery order, lateness and repetition. nova's exists must verify, except the
ones the simulator corrupted, which must fail on the corrupted field. The big run produces
the normalized envelopes straight to Kafka (what the bridge writes); a smaller one goes
through RabbitMQ and the real bridge, and is read back with the ``stacktide usage`` command.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.bridge import Bridge
from connectors.replay import publish
from jobs import queries
from jobs.command import run_jobs
from jobs.lifecycle import to_us
from stacktide.catalog import load_catalog
from stacktide.cli import main
from stacktide.config import Config
from stacktide.simulate.cloud import Params
from stacktide.simulate.delivery import Delivery
from stacktide.simulate.traffic import Traffic, generate
from stacktide.usage_report import read_current, usage_rows
from tests.helpers import (
    HOUR,
    S,
    check_usage,
    envelopes,
    produce,
    setup,
    state_events,
    table_usage,
    truth_usage,
    write_config,
)

pytestmark = pytest.mark.stack



def check_audit(config: Config, traffic: Traffic,
                dropped: dict[str, tuple[str, str, int]] | None = None) -> Counter[str]:
    """Every exists the simulator sent has a current usage_audit row: verified, or failed on
    exactly the field the simulator corrupted; each period whose exists was *dropped* before
    it reached Kafka (message id -> cell, instance, period start) is flagged as missing."""
    dropped = dropped or {}
    corrupted = {c["message_id"]: c["field"] for c in traffic.truth["corrupted"]}
    rows = {r["message_id"]: r for r in read_current(config, "usage_audit").to_pylist()}
    missing = {mid: rows.pop(mid) for mid in list(rows) if mid.startswith("missing:")}
    sent = {e["message_id"] for i in traffic.truth["instances"] for e in i["exists"]}
    assert set(rows) == sent - set(dropped)
    # A period whose exists names the wrong period (corrupted bounds) has no valid exists.
    misdated = {(i["cell"], i["instance_id"], to_us(e["audit_period_beginning"]) or 0)
                for i in traffic.truth["instances"] for e in i["exists"] if e["periodic"] and
                corrupted.get(e["message_id"]) in ("audit_period_beginning", "audit_period_ending")}
    assert {(r["cell"], r["instance_id"], to_us(r["audit_period_beginning"].isoformat()))
            for r in missing.values()} == set(dropped.values()) | (
                misdated if config.usage.audit_expected else set())
    for row in missing.values():
        fields = [m["field"] for m in json.loads(row["mismatches"])]
        assert (row["status"], fields) == ("failed", ["exists"]), row
    for mid, row in rows.items():
        fields = [m["field"] for m in json.loads(row["mismatches"])]
        if mid in corrupted:
            assert (row["status"], fields) == ("failed", [corrupted[mid]]), row
        else:
            assert (row["status"], fields) == ("verified", []), row
    return Counter(r["status"] for r in rows.values())


def drop_exists(traffic: Traffic, n: int, before: int) -> dict[str, tuple[str, str, int]]:
    """*n* periodic, uncorrupted exists of periods ending before *before*, chosen by seed:
    message id -> (cell, instance, period start). The test leaves them out of Kafka."""
    corrupted = {c["message_id"] for c in traffic.truth["corrupted"]}
    candidates = sorted(
        (e["message_id"], (i["cell"], i["instance_id"], to_us(e["audit_period_beginning"]) or 0))
        for i in traffic.truth["instances"] for e in i["exists"]
        if e["periodic"] and e["message_id"] not in corrupted
        and (to_us(e["audit_period_ending"]) or 0) <= before)
    return dict(random.Random(traffic.truth["seed"]).sample(candidates, n))


def test_usage_and_audit_equal_the_ground_truth(stack: Config) -> None:
    config = setup(stack, "usage", settle_hours=5)
    config = dataclasses.replace(  # nova's periodic audit runs: a period without exists fails
        config, usage=dataclasses.replace(config.usage, audit_expected=True))
    traffic = generate(Params(seed=7, instances=220, hours=72), "legacy",
                       Delivery(7, reorder_window_s=120.0, delay_fraction=0.03,
                                delay_hours=(1.0, 4.0), duplicate_fraction=0.05), corrupt=18)
    dropped = drop_exists(traffic, 6, before=(to_us(traffic.truth["start"]) or 0) + 60 * HOUR)
    items = [e for e in envelopes(traffic) if e.message_id not in dropped]
    produce(config, items)
    assert run_jobs(config, bounded=True, fresh=True)

    expected = truth_usage(traffic)
    assert len({k[1] for k in expected}) >= 200 and max(k[2] for k in expected) >= (
        to_us(traffic.truth["start"]) or 0) + 71 * HOUR
    assert table_usage(config) == expected
    assert check_audit(config, traffic, dropped)["failed"] == 18

    history = load_catalog(config.iceberg).load_table(
        f"{config.iceberg.namespace}.instance_events").scan().to_arrow()
    assert Counter(history.column("message_id").to_pylist()) == Counter(state_events(items))
    instances = {r["instance_id"]: r for r in read_current(config, "instances").to_pylist()}
    truth = {i["instance_id"]: i for i in traffic.truth["instances"]}
    assert set(instances) == set(truth)

    for iid, row in instances.items():
        deleted = truth[iid]["deleted_at"]
        assert row["deleted_at"] == (None if deleted is None else datetime.fromisoformat(
            deleted.replace("Z", "+00:00"))), iid
        assert (row["tenant_id"], row["cell"]) == (truth[iid]["tenant_id"], truth[iid]["cell"])

    # The ready Flink SQL of sql/ reads the same current rows as the pyiceberg reader.
    per_instance: Counter[tuple[str, str]] = Counter()
    for (cell, iid, _, _), (us, _) in expected.items():
        per_instance[cell, iid] += us
    rows = flink_query(config, queries.current_rows(config, "instance_usage"),
                       ("cell", "instance_id", "microseconds"))
    got: Counter[tuple[str, str]] = Counter()
    for r in rows:
        got[r["cell"], r["instance_id"]] += r["microseconds"]
    assert +got == +per_instance
    per_tenant: Counter[str] = Counter()
    for i in traffic.truth["instances"]:
        per_tenant[i["tenant_id"]] += per_instance[i["cell"], i["instance_id"]]
    tenants: Counter[str] = Counter()
    for r in flink_query(config, queries.usage_by_tenant(config), ("tenant_id", "microseconds")):
        tenants[r["tenant_id"]] += r["microseconds"]
    assert +tenants == +per_tenant


def flink_query(config: Config, sql: str, columns: tuple[str, ...]) -> list[dict[str, Any]]:
    """*columns* of the rows of *sql*, run by Flink in batch mode over the Iceberg catalog
    (timestamps left out: PyFlink cannot hand a TIMESTAMP_LTZ to Python when collecting)."""
    from pyflink.table.expressions import col

    from jobs.environment import JobJars, create_table_env
    from stacktide.local.jars import ensure_jars, pipeline_jars

    jars = ensure_jars(config)
    env = create_table_env(config, JobJars(pipeline_jars(config, jars), tuple(jars["hadoop"])),
                           job_name="stacktide-query", batch=True)
    result = env.sql_query(sql).select(*(col(c) for c in columns)).execute()
    with result.collect() as rows:
        return [dict(zip(columns, row, strict=True)) for row in rows]


def test_through_rabbitmq_and_the_bridge(stack: Config, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    config = setup(stack, "usagebr", settle_hours=4)
    traffic = generate(Params(seed=5, instances=25, hours=30, cells=(config.cells[0].name,)),
                       "both", Delivery(5, reorder_window_s=60.0, delay_fraction=0.03,
                                        delay_hours=(1.0, 3.0), duplicate_fraction=0.05),
                       corrupt=4)
    bridge = Bridge(config)
    bridge.declare()
    messages = [r.captured() for _, r in traffic.messages]
    assert publish(config, messages) == len(messages)
    bridge.run(idle_exit=3.0)
    assert bridge.cells[0].stats.forwarded == len(messages)
    assert run_jobs(config, bounded=True, fresh=True)

    check_usage(config, traffic)  # through the bridge: no sending order to check
    assert check_audit(config, traffic)["failed"] == 4
    tenant = traffic.truth["instances"][0]["tenant_id"]
    start = to_us(traffic.truth["start"]) or 0
    rows = usage_rows(config, tenant=tenant, start=datetime.fromtimestamp((start + 6 * HOUR) / S, UTC),
                      end=datetime.fromtimestamp((start + 18 * HOUR) / S, UTC))
    want = {k: v for k, v in truth_usage(traffic).items() if start + 6 * HOUR <= k[2] <
            start + 18 * HOUR and k[1] in {i["instance_id"] for i in traffic.truth["instances"]
                                           if i["tenant_id"] == tenant}}
    assert rows and {(r["cell"], r["instance_id"], to_us(r["period_start"].isoformat()),
                      r["flavor_id"]): (r["microseconds"], r["running_microseconds"])
                     for r in rows} == want

    # The reader command prints the same rows, and exact totals from the integer microseconds.
    first = datetime.fromtimestamp((start + 6 * HOUR) / S, UTC).isoformat()
    last = datetime.fromtimestamp((start + 18 * HOUR) / S, UTC).isoformat()
    command = ["--config", str(write_config(config, tmp_path / "c.yaml")), "usage",
               "--tenant", tenant, "--from", first, "--to", last]
    capsys.readouterr()
    assert main([*command, "--output", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["rows"]) == len(want)
    assert Decimal(doc["total"]["seconds"]) * S == sum(us for us, _ in want.values())
    assert Decimal(doc["total"]["running_seconds"]) * S == sum(r for _, r in want.values())
    assert main(command) == 0
    text = capsys.readouterr().out.splitlines()
    assert len(text) == len(want) + 2 and text[-1].startswith(f"{len(want)} rows; total ")
