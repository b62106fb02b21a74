"""``stacktide bridge --workers N`` and the hot path's bookkeeping.

The workers are real processes of the real command on the test stack: they share the
queues, each message reaches Kafka once, each worker serves metrics on its own port,
SIGTERM to the parent stops them all cleanly, and a worker that dies takes the
parent down with a non-zero code. The ack window's batching and the tallied metrics
are held equal to what they replace.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as PromCounter
from prometheus_client.parser import text_string_to_metric_families

from connectors.bridge_command import workers
from connectors.kafka_producer import AckWindow, CellStats, Forwarder
from connectors.metrics import LATENCY_BUCKETS, BridgeMetrics, HistogramTally, Tally
from connectors.replay import publish
from stacktide.config import Config, config_from_mapping
from stacktide.local.kafka import ensure_topics
from stacktide.local.process import wait_for
from stacktide.schema import CapturedMessage, parse_time
from tests.helpers import queue_depth, read_topic

STACKTIDE = Path(sys.executable).parent / "stacktide"


# ---- the ack window, the tallies, the receive stamp ---------------------------------------

def test_the_window_acks_a_confirmed_prefix_only_once_it_is_long_enough() -> None:
    w = AckWindow()
    for tag in range(1, 11):
        w.add(tag)
    for tag in (1, 2, 3, 5):
        w.confirm(tag)
    assert w.take_ackable(4) is None and len(w) == 10  # the prefix is 1..3: too short
    assert w.take_ackable(3) == 3 and len(w) == 7
    w.confirm(4)
    assert w.take_ackable() == 5
    w.confirm(99)  # not of this window: ignored
    assert w.take_ackable() is None and len(w) == 5


def test_the_window_treats_skipped_tags_as_acked_with_the_next_and_refuses_going_back() -> None:
    w = AckWindow()
    w.add(1)
    w.add(4)  # 2 and 3 never came through this window: a multiple ack past them covers them
    assert len(w) == 4
    w.confirm(1)
    assert w.take_ackable() == 3
    w.confirm(4)
    assert w.take_ackable() == 4 and len(w) == 0
    w.add(5)
    with pytest.raises(ValueError, match="not after"):
        w.add(5)


@given(st.permutations(list(range(1, 60))), st.integers(min_value=1, max_value=20))
def test_batched_acks_never_pass_an_unconfirmed_tag(order: list[int], batch: int) -> None:
    w = AckWindow()
    for tag in range(1, 60):
        w.add(tag)
    acked, confirmed = 0, set()
    for tag in order:
        w.confirm(tag)
        confirmed.add(tag)
        last = w.take_ackable(batch)
        if last is not None:
            assert last - acked >= batch and set(range(acked + 1, last + 1)) <= confirmed
            acked = last
    assert w.take_ackable() in (None, 59) and len(w) == 0


def test_tallies_add_what_inc_and_observe_would() -> None:
    registry = CollectorRegistry()
    direct = Histogram("direct", "d", buckets=LATENCY_BUCKETS, registry=registry)
    tallied = Histogram("tallied", "t", buckets=LATENCY_BUCKETS, registry=registry)
    tally = HistogramTally(tallied)
    values = [0.0, 0.0005, 0.001, 0.0011, 0.0049, 0.05, 0.3, 299.0, 300.0, 301.0, 1e9]
    for v in values:
        direct.observe(v)
        tally.observe(v)
    assert registry.get_sample_value("tallied_count") == 0  # nothing before the flush
    tally.flush()
    tally.flush()  # a second flush adds nothing
    for sample in ("_count", "_sum"):
        assert registry.get_sample_value(f"tallied{sample}") == registry.get_sample_value(f"direct{sample}")
    for bound in ("0.001", "0.005", "0.5", "300.0", "+Inf"):
        assert registry.get_sample_value("tallied_bucket", {"le": bound}) == \
            registry.get_sample_value("direct_bucket", {"le": bound})
    counter = PromCounter("things", "t", ["kind"], registry=registry)
    counts = Tally()
    for kind in "aabab":
        counts.add(counter.labels(kind))
    counts.flush()
    counts.flush()
    assert registry.get_sample_value("things_total", {"kind": "a"}) == 3
    assert registry.get_sample_value("things_total", {"kind": "b"}) == 2


def test_the_receive_stamp_is_the_envelope_form_of_now_to_the_millisecond() -> None:
    metrics = BridgeMetrics()
    kafka: Any = SimpleNamespace(topic=lambda name: f"t.{name}")
    forwarder = Forwarder(None, kafka, "c", metrics.cell("c", ["nova"]), CellStats())  # type: ignore[arg-type]
    before = datetime.now(UTC)
    stamp = forwarder.received_at()
    after = datetime.now(UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp)
    assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= parse_time(stamp) <= after
    assert forwarder.received_at() in (stamp, forwarder.received_at())  # reused within its ms
    time.sleep(0.002)
    assert forwarder.received_at() > stamp


def test_workers_come_from_the_flag_then_the_config_then_one() -> None:
    config: Any = SimpleNamespace(bridge=SimpleNamespace())
    assert workers(argparse.Namespace(workers=None), config) == 1
    config.bridge.workers = 3
    assert workers(argparse.Namespace(workers=None), config) == 3
    assert workers(argparse.Namespace(workers=2), config) == 2


# ---- real worker processes ----------------------------------------------------------------

def free_ports() -> int:
    """A port free with the next one: worker k of the bridge serves its metrics on port + k.
    The kernel's pick alone was not enough: in a busy run the next port could be some client
    connection's, and the second worker could not listen."""
    while True:
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port


def forwarded(port: int) -> float:
    """stacktide_bridge_forwarded_total of the worker serving on *port* (0 while it is not up)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == "stacktide_bridge_forwarded_total")


def worker_pids(parent: int) -> list[int]:
    try:
        text = Path(f"/proc/{parent}/task/{parent}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def setup(stack: Config, tmp_path: Path, n: int) -> tuple[Config, list[str], int]:
    """A config of its own (queues, topics, metrics port) with *n* messages waiting."""
    tag, port = f"workers{uuid.uuid4().hex[:6]}", free_ports()
    local = stack.local
    data = {
        "cells": [{"name": "cell1", "exchanges": ["nova"],
                   "transport_url": f"rabbit://guest:guest@127.0.0.1:{local.rabbitmq_port}/"}],
        "kafka": {"bootstrap_servers": stack.kafka.bootstrap_servers, "topic_prefix": tag},
        "bridge": {"queue_prefix": tag, "metrics_port": port, "prefetch": 100,
                   "reconnect_initial_s": 0.1, "reconnect_max_s": 0.5},
        "local": {"state_dir": str(local.state_dir), "rabbitmq_port": local.rabbitmq_port,
                  "kafka_port": local.kafka_port, "kafka_controller_port": local.kafka_controller_port},
    }
    config = config_from_mapping(data, "<test>", base=tmp_path)
    ensure_topics(config)
    config_file = tmp_path / "stacktide.yaml"
    config_file.write_text(yaml.safe_dump(data), encoding="utf-8")
    command = [str(STACKTIDE), "--config", str(config_file), "bridge"]
    assert subprocess.run([*command, "--declare-only"], timeout=60, check=False).returncode == 0
    messages = [CapturedMessage.from_wire("cell1", "nova", "notifications.info", json.dumps(
        {"message_id": f"{tag}-{i}", "event_type": "compute.instance.update", "priority": "INFO",
         "payload": {"instance_id": f"{tag}-{i % 97}"}}).encode()) for i in range(n)]
    assert publish(config, messages) == n
    return config, command, port


@pytest.mark.stack
def test_two_workers_share_the_queues_serve_two_ports_and_stop_on_sigterm(
        stack: Config, tmp_path: Path) -> None:
    n = 20_000
    config, command, port = setup(stack, tmp_path, n)
    parent = subprocess.Popen([*command, "--workers", "2"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: forwarded(port) + forwarded(port + 1) >= n, 120, 0.1)
        assert forwarded(port) > 0 and forwarded(port + 1) > 0  # both took a share
        parent.send_signal(signal.SIGTERM)
        out, err = parent.communicate(timeout=90)
    finally:
        if parent.poll() is None:
            parent.kill()
    assert parent.returncode == 0, err[-3000:]
    assert "event=stopping signal=SIGTERM workers=2" in err
    assert err.count("event=stopping signal=SIGTERM worker=") == 2  # forwarded, and tagged
    received = [int(r) for r in re.findall(r"cell=cell1 received=(\d+) forwarded=\d+", out)]
    assert len(received) == 2 and sum(received) == n and min(received) > 0, out
    assert queue_depth(config, config.bridge.queue_prefix + ".cell1.nova") == 0
    ids = Counter(json.loads(r.value)["message_id"] for r in read_topic(config, "notifications"))
    assert len(ids) == n and set(ids.values()) == {1}  # each once: the queue split, not copied


@pytest.mark.stack
def test_a_worker_that_dies_stops_the_others_and_the_parent_fails(stack: Config, tmp_path: Path) -> None:
    n = 2_000
    config, command, port = setup(stack, tmp_path, n)
    parent = subprocess.Popen([*command, "--workers", "2"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: len(worker_pids(parent.pid)) == 2 and _listening(port)
                        and _listening(port + 1), 60, 0.1)
        victim, survivor = worker_pids(parent.pid)
        os.kill(victim, signal.SIGKILL)
        _, err = parent.communicate(timeout=90)
    finally:
        if parent.poll() is None:
            parent.kill()
    assert parent.returncode == 1, err[-3000:]
    assert f"pid={victim} code=-9: stopping the others" in err
    assert "event=stopping signal=SIGTERM worker=" in err  # the survivor was stopped cleanly
    assert not Path(f"/proc/{survivor}").exists()  # and waited for
    again = subprocess.run([*command, "--idle-exit", "2"], capture_output=True, text=True, timeout=120,
                           check=False)
    assert again.returncode == 0, again.stderr[-2000:]
    ids = Counter(json.loads(r.value)["message_id"] for r in read_topic(config, "notifications"))
    assert len(ids) == n  # nothing lost: what the killed worker held went back to the queue


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0

