"""host agent -> UDP -> bridge -> Kafka -> samples job -> Iceberg, on the real services.

``stacktide host-agent`` polls libvirt's test driver (a node file of several domains, disks
and NICs) and sends statsd lines to ``stacktide bridge`` running only its UDP receiver; a
statsd client sends a counter that goes down (a domain restart) and a malformed line too.
The jobs run bounded and pyiceberg reads ``host_samples`` back: every record of the samples
topic once, with the agent's meters and instances, and counter rates across windows that
survive the reset. Simulated nova traffic about the same instances runs through the same jobs
into ``instance_usage``, and the batch rollup of CPU used against vCPU allocated per instance
and hour must equal what the samples topic and the simulator's ground truth give.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import socket
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobs import queries
from jobs.command import run_jobs
from jobs.lifecycle import to_us
from stacktide.catalog import load_catalog
from stacktide.config import DEFAULT_CONFIG, Config, UdpConfig
from stacktide.local.kafka import ensure_topics
from stacktide.simulate.cloud import Params
from stacktide.simulate.traffic import Traffic, generate
from tests.e2e.test_usage_path import flink_query
from tests.helpers import envelopes, isolated, produce, read_topic
from tests.host_agent.domains import write_node

pytestmark = pytest.mark.stack

FLUSH_S = 0.5
HOUR_S = 3600
CPU_NS = (2_000_000_000, 5_500_000_000, 1_250_000_000)  # the last after a restart


def nova_traffic(config: Config) -> tuple[Traffic, list[str]]:
    """Simulated nova traffic from three hours ago to three hours ahead, and the instances
    that exist in the current hour (the hour the samples are taken in)."""
    hour = int(time.time()) // HOUR_S * HOUR_S
    traffic = generate(Params(seed=11, instances=60, start=(hour - 3 * HOUR_S) * 1_000_000,
                              hours=6, cells=(config.cells[0].name,)), "legacy")
    alive = [i["instance_id"] for i in traffic.truth["instances"] if any(
        _epoch_s(u["period_start"]) == hour and Decimal(u["seconds"]) > 0 for u in i["usage"])]
    assert len(alive) >= 3
    return traffic, alive


def _epoch_s(when: str | datetime) -> int:
    """Seconds since the epoch of an ISO time or a datetime (naive: the local time zone, as a
    Flink session without a configured zone renders ``TIMESTAMP_LTZ``)."""
    if isinstance(when, datetime):
        return int(when.timestamp())
    return (to_us(when) or 0) // 1_000_000


def expected_cpu(records: list[dict[str, Any]], traffic: Traffic) -> dict[tuple[str, int], tuple[
        float | None, float | None]]:
    """(instance, hour) -> (CPU seconds used, vCPU seconds allocated), from the samples topic's
    records and the simulator's ground truth."""
    series: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for r in records:
        if r["meter"] == "cpu":
            series[r["instance_id"]].append((datetime.fromisoformat(r["last_at"]), r["last"]))
    used: dict[tuple[str, int], float] = defaultdict(float)
    for instance, readings in series.items():
        readings.sort()
        for i, (at, value) in enumerate(readings):
            before = readings[i - 1][1] if i else None
            increase = 0.0 if before is None else value - before if value >= before else value
            used[instance, int(at.timestamp()) // HOUR_S * HOUR_S] += increase / 1e9
    allocated: dict[tuple[str, int], float] = defaultdict(float)
    for inst in traffic.truth["instances"]:
        for u in inst["usage"]:
            if Decimal(u["seconds"]) > 0:
                allocated[inst["instance_id"], _epoch_s(u["period_start"])] += float(
                    Decimal(u["seconds"]) * u["vcpus"])
    return {k: (used.get(k), allocated.get(k)) for k in used.keys() | allocated.keys()}


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_samples_land_in_iceberg_with_rates(stack: Config, tmp_path: Path) -> None:
    port = _free_udp_port()
    config = dataclasses.replace(isolated(stack, "samples"),
                                 udp=UdpConfig(port=port, flush_interval_s=FLUSH_S))
    ensure_topics(config)
    traffic, alive = nova_traffic(config)
    produce(config, envelopes(traffic))
    expected = write_node(tmp_path / "node.xml", domains=4, disks=1, nics=1, instances=alive[:2])
    conf = tmp_path / "stacktide.yaml"
    conf.write_text(yaml.safe_dump({
        "kafka": {"bootstrap_servers": config.kafka.bootstrap_servers,
                  "topic_prefix": config.kafka.topic_prefix},
        "local": {"state_dir": str(config.local.state_dir)},
        "udp": {"port": port, "flush_interval_s": FLUSH_S},
        "host_agent": {"uri": f"test://{tmp_path / 'node.xml'}", "host": "cmp-e2e", "udp_port": port,
                       "interval_s": 0.7, "meters": str(DEFAULT_CONFIG.parent / "meters.yaml")},
    }))
    cli = [sys.executable, "-m", "stacktide.cli", "--config", str(conf)]
    bridge = subprocess.Popen([*cli, "bridge", "--idle-exit", "8"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(2.0)  # the receiver binds its socket
        agent = subprocess.run([*cli, "host-agent", "--polls", "4"], capture_output=True, text=True,
                               timeout=120, check=True)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
            for value, cpu_ns in zip((100, 300, 50), CPU_NS, strict=True):  # both restart after the 2nd
                out.sendto(b"reset.counter:%d|c|#host:statsd-client,instance:r1,unit:B\nnot a line\n"
                           b"cpu:%d|c|#host:statsd-client,instance:%s,unit:ns"
                           % (value, cpu_ns, alive[2].encode()), ("127.0.0.1", port))
                time.sleep(FLUSH_S * 2.5)  # one value per receiver window
        stdout, _ = bridge.communicate(timeout=60)
    finally:
        if bridge.poll() is None:
            bridge.kill()
            bridge.wait()
    assert bridge.returncode == 0
    sent = int(agent.stdout.split("samples=")[1].split()[0])
    assert f"lines={sent + 9} malformed=3" in stdout  # every datagram arrived on loopback

    consumed = read_topic(config, "samples")  # read once: partitions interleave differently each time
    records = [json.loads(r.value) for r in consumed]
    assert sum(r["count"] for r in records) == sent + 6
    assert all(r.key == value["host"].encode() for r, value in zip(consumed, records, strict=True))

    assert run_jobs(config, bounded=True, fresh=True)
    table = load_catalog(config.iceberg).load_table(f"{config.iceberg.namespace}.host_samples")
    rows = table.scan().to_arrow().to_pylist()
    key = ("host", "resource_id", "meter", "window_start")
    assert sorted(tuple(str(r[k]) for k in key[:3]) for r in rows) == sorted(
        tuple(r[k] for k in key[:3]) for r in records)
    assert len({tuple(r[k] for k in key) for r in rows}) == len(rows) == len(records)

    agent_rows = [r for r in rows if r["host"] == "cmp-e2e"]
    assert {r["instance_id"] for r in agent_rows} == set(expected.values())
    cpu = sorted((r for r in agent_rows if r["meter"] == "cpu" and r["instance_id"] == next(
        iter(expected.values()))), key=lambda r: r["last_at"])
    assert sum(r["count"] for r in cpu) == 4 and cpu[0]["unit"] == "ns"
    assert cpu[0]["rate"] is None and all(r["rate"] is not None and r["rate"] >= 0 for r in cpu[1:])
    assert all(r["rate"] is None for r in agent_rows if r["meter"] == "vcpus")

    reset = sorted((r for r in rows if r["meter"] == "reset.counter"), key=lambda r: r["last_at"])
    assert [r["last"] for r in reset] == [100, 300, 50]
    dt = [(b["last_at"] - a["last_at"]).total_seconds() for a, b in itertools.pairwise(reset)]
    assert reset[0]["rate"] is None
    assert reset[1]["rate"] == pytest.approx(200 / dt[0], rel=1e-2)
    assert reset[2]["rate"] == pytest.approx(50 / dt[1], rel=1e-2)  # after the reset: from zero

    rollup = flink_query(config, queries.instance_cpu(config), (
        "instance_id", "period_start", "tenant_id", "cpu_readings", "cpu_seconds", "vcpu_seconds",
        "cpu_ratio"))
    got = {(r["instance_id"], _epoch_s(r["period_start"])): r for r in rollup}
    want = expected_cpu(records, traffic)
    assert got.keys() == want.keys()
    tenants = {i["instance_id"]: i["tenant_id"] for i in traffic.truth["instances"]}
    for at, (used, allocated) in want.items():
        row = got[at]
        assert row["cpu_seconds"] == (None if used is None else pytest.approx(used, abs=1e-9)), at
        assert row["vcpu_seconds"] == (None if allocated is None else pytest.approx(allocated)), at
        ratio = used / allocated if used is not None and allocated else None
        assert row["cpu_ratio"] == (None if ratio is None else pytest.approx(ratio)), at
        assert row["tenant_id"] == (tenants[at[0]] if allocated is not None else None), at
    # the statsd client's counter: two increases, the second from zero after the restart
    statsd_cpu = [r["cpu_seconds"] for r in rollup if r["instance_id"] == alive[2] and r["cpu_seconds"]]
    assert sum(statsd_cpu) == pytest.approx((CPU_NS[1] - CPU_NS[0] + CPU_NS[2]) / 1e9)
    # the agent's instances nova knows of: both sides present in the hour they were sampled in
    assert any(got[i, h]["cpu_ratio"] is not None for i, h in got if i in alive[:2])


def test_agent_direct_to_kafka(stack: Config, tmp_path: Path) -> None:
    """``target: kafka``: the agent aggregates each poll itself and produces the same records."""
    config = isolated(stack, "direct")
    ensure_topics(config)
    expected = write_node(tmp_path / "node.xml", domains=3, disks=1, nics=1)
    conf = tmp_path / "stacktide.yaml"
    conf.write_text(yaml.safe_dump({
        "kafka": {"bootstrap_servers": config.kafka.bootstrap_servers,
                  "topic_prefix": config.kafka.topic_prefix},
        "host_agent": {"uri": f"test://{tmp_path / 'node.xml'}", "host": "cmp-direct", "target": "kafka",
                       "interval_s": 0.3, "meters": str(DEFAULT_CONFIG.parent / "meters.yaml")},
    }))
    out = subprocess.run([sys.executable, "-m", "stacktide.cli", "--config", str(conf), "host-agent",
                          "--polls", "2"], capture_output=True, text=True, timeout=120, check=True)
    sent = int(out.stdout.split("samples=")[1].split()[0])
    records = read_topic(config, "samples")
    values = [json.loads(r.value) for r in records]
    assert len(values) == sent  # one window per poll: each sample is a record of count 1
    assert all(v["count"] == 1 and r.key == b"cmp-direct" for r, v in zip(records, values, strict=True))
    assert {v["instance_id"] for v in values} == set(expected.values())
    assert len({v["window_start"] for v in values}) == 2


def test_a_bridge_with_cells_and_a_udp_section_forwards_both(stack: Config, tmp_path: Path) -> None:
    """One ``stacktide bridge`` process: the cells' notifications to the notifications topic
    and the statsd datagrams to the samples topic."""
    from connectors.bridge import Bridge
    from connectors.replay import publish
    from tests.helpers import write_config

    port = _free_udp_port()
    config = dataclasses.replace(isolated(stack, "cellsudp"),
                                 udp=UdpConfig(port=port, flush_interval_s=FLUSH_S))
    ensure_topics(config)
    traffic = generate(Params(seed=9, instances=3, hours=2, cells=(config.cells[0].name,)))
    messages = [r.captured() for _, r in traffic.messages]
    Bridge(config).declare()  # the bridge's queues exist before anything is published
    assert publish(config, messages) == len(messages)
    data = yaml.safe_load(write_config(config, tmp_path / "c.yaml").read_text())
    data["bridge"] = {"queue_prefix": config.bridge.queue_prefix}
    data["udp"] = {"port": port, "flush_interval_s": FLUSH_S}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    bridge = subprocess.Popen([sys.executable, "-m", "stacktide.cli", "--config",
                               str(tmp_path / "c.yaml"), "bridge", "--idle-exit", "6"],
                              stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(2.0)  # the receiver binds its socket
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
            for value in (5, 7):
                out.sendto(b"cpu:%d|c|#host:cmp-1,instance:i-1,unit:ns" % value, ("127.0.0.1", port))
                time.sleep(FLUSH_S * 2.5)
        stdout, _ = bridge.communicate(timeout=60)
    finally:
        if bridge.poll() is None:
            bridge.kill()
            bridge.wait()
    assert bridge.returncode == 0, stdout
    assert f"forwarded={len(messages)}" in stdout, stdout
    notifications = {json.loads(r.value)["message_id"] for r in read_topic(config, "notifications")}
    assert notifications == {e.message_id for e in envelopes(traffic)}
    samples = [json.loads(r.value) for r in read_topic(config, "samples")]
    assert sum(s["count"] for s in samples) == 2 and sum(s["sum"] for s in samples) == 12, samples
