"""host agent -> UDP -> bridge -> Kafka -> samples job -> Iceberg, on the real services.

``stacktide host-agent`` polls libvirt's test driver (a node file of several domains, disks
and NICs) and sends statsd lines to ``stacktide bridge`` running only its UDP receiver; a
statsd client sends a counter that goes down (a domain restart) and a malformed line too.
The jobs run bounded and pyiceberg reads ``host_samples`` back: every record of the samples
topic once, with the agent's meters and instances, and counter rates across windows that
survive the reset.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from jobs.command import run_jobs
from stacktide.catalog import load_catalog
from stacktide.config import DEFAULT_CONFIG, Config, UdpConfig
from stacktide.local.kafka import ensure_topics
from tests.helpers import isolated, read_topic
from tests.host_agent.domains import write_node

pytestmark = pytest.mark.stack

FLUSH_S = 0.5


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_samples_land_in_iceberg_with_rates(stack: Config, tmp_path: Path) -> None:
    port = _free_udp_port()
    config = dataclasses.replace(isolated(stack, "samples"),
                                 udp=UdpConfig(port=port, flush_interval_s=FLUSH_S))
    ensure_topics(config)
    expected = write_node(tmp_path / "node.xml", domains=4, disks=1, nics=1)
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
            for value in (100, 300, 50):  # a counter that restarts at zero between the 2nd and 3rd
                out.sendto(b"reset.counter:%d|c|#host:statsd-client,instance:r1,unit:B\nnot a line" % value,
                           ("127.0.0.1", port))
                time.sleep(FLUSH_S * 2.5)  # one value per receiver window
        stdout, _ = bridge.communicate(timeout=60)
    finally:
        if bridge.poll() is None:
            bridge.kill()
            bridge.wait()
    assert bridge.returncode == 0
    sent = int(agent.stdout.split("samples=")[1].split()[0])
    assert f"lines={sent + 6} malformed=3" in stdout  # every datagram arrived on loopback

    records = [json.loads(r.value) for r in read_topic(config, "samples")]
    assert sum(r["count"] for r in records) == sent + 3
    assert all(r.key == r_value["host"].encode() for r, r_value in
               zip(read_topic(config, "samples"), records, strict=True))

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
