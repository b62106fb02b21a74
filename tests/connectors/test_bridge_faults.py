"""Bad input and broken processes: nothing lost, nothing leaked, the bridge never stuck.

Bad input runs on the session stack through the real bridge and Kafka. The
destructive tests (SIGKILL of the ``stacktide bridge`` process mid-replay, RabbitMQ
and Kafka restarts mid-stream) run on a dedicated stack on ports of their own, so
that the session stack's other users are not disturbed; they print the measured
recovery times (``pytest -s``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Consumer, KafkaError
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from prometheus_client.parser import text_string_to_metric_families

from connectors.bridge import Bridge
from connectors.kafka_producer import MAX_DEAD_LETTER_BYTES, REFUSED_BYTES
from connectors.replay import publish
from connectors.wire import scrub_body
from stacktide.config import PRIORITIES, BridgeConfig, Config, config_from_mapping
from stacktide.local import kafka, rabbitmq
from stacktide.local.kafka import ensure_topics
from stacktide.local.process import wait_for
from stacktide.schema import CapturedMessage
from tests.helpers import queue_depth

pytestmark = pytest.mark.stack

STACKTIDE = Path(sys.executable).parent / "stacktide"
SECRET = "dl-5ecr3t-token"
BIG = 10 * 1024 * 1024


def config_data(stack: Config, tag: str, **bridge: Any) -> dict[str, Any]:
    """Config of one cell on *stack* whose queues and topics carry *tag* (also written as YAML)."""
    local = stack.local
    return {
        "cells": [{"name": "cell1", "transport_url": f"rabbit://guest:guest@127.0.0.1:{local.rabbitmq_port}/"}],
        "kafka": {"bootstrap_servers": f"127.0.0.1:{local.kafka_port}", "topic_prefix": tag},
        "bridge": {"queue_prefix": tag, "reconnect_initial_s": 0.1, "reconnect_max_s": 1.0,
                   "lag_interval_s": 0.5, **bridge},
        "local": {"state_dir": str(local.state_dir), "rabbitmq_port": local.rabbitmq_port,
                  "kafka_port": local.kafka_port, "kafka_controller_port": local.kafka_controller_port},
    }


def make(data: dict[str, Any], stack: Config) -> Config:
    config = config_from_mapping(data, "<test>", base=stack.local.state_dir)
    ensure_topics(config)
    return config


def notification(mid: str) -> bytes:
    return json.dumps({"message_id": mid, "event_type": "compute.instance.update", "priority": "INFO",
                       "publisher_id": "compute.host1", "timestamp": "2026-01-02 03:04:05",
                       "payload": {"instance_id": mid, "state": "active"}}).encode()


def wire(i: int, run: str) -> CapturedMessage:
    return CapturedMessage.from_wire("cell1", "nova", "notifications.info", notification(f"{run}-{i}"),
                                     {"content_type": "application/json", "delivery_mode": 2})


def read_topic(config: Config, name: str, count: int, timeout_s: float = 90.0) -> list[Any]:
    """At least *count* messages of topic *name*, plus whatever arrives within a second after."""
    consumer = Consumer({"bootstrap.servers": config.kafka.bootstrap_servers,
                         "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"})
    consumer.subscribe([config.kafka.topic(name)])
    found: list[Any] = []
    deadline = quiet = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            batch = [m for m in consumer.consume(5000, timeout=0.2) if m.error() is None]
            found += batch
            quiet = time.monotonic() if batch else quiet
            if len(found) >= count and time.monotonic() - quiet >= 1.0:
                break
    finally:
        consumer.close()
    return found


def message_ids(config: Config, count: int) -> Counter[str]:
    return Counter(json.loads(m.value())["message_id"] for m in read_topic(config, "notifications", count))


# ---- bad input, through the real bridge and Kafka ------------------------------------------

def _bad_inputs() -> dict[str, tuple[str, bytes]]:
    """routing key -> (expected reason code, body); each case on its own priority's key."""
    big = json.dumps({"event_type": "x", "priority": "INFO", "payload": {"blob": "b" * BIG}}).encode()
    huge = json.dumps({"event_type": "x", "priority": "INFO", "payload": {"blob": "h" * 20_000_000}})
    cases = [
        ("unknown-priority", json.dumps({"event_type": "a.b", "priority": "LOUD", "payload": {}}).encode()),
        ("missing-event-type", json.dumps({"priority": "INFO", "_context_auth_token": SECRET,
                                           "payload": {"user": {"password": SECRET, "keep": 1}}}).encode()),
        ("not-utf8", b'{"event_type": "\xff\xfe"}'),
        ("invalid-json", b"{not json"),
        ("bad-envelope", json.dumps({"oslo.version": "2.0", "oslo.message": "{broken"}).encode()),
        ("too-large", big),
        ("too-large", huge.encode()),
    ]
    return {f"notifications.{p}": case for p, case in zip(PRIORITIES, cases, strict=True)}


BAD = _bad_inputs()


@pytest.fixture(scope="module")
def dead_letters(stack: Config) -> tuple[Bridge, dict[str, tuple[bytes, dict[str, bytes]]]]:
    """Every bad case through one bridge run: routing key -> (dead-letter value, headers)."""
    config = make(config_data(stack, f"bad{uuid.uuid4().hex[:6]}"), stack)
    bridge = Bridge(config)
    bridge.declare()
    publish(config, [CapturedMessage.from_wire("cell1", "nova", key, raw) for key, (_, raw) in BAD.items()])
    bridge.run(idle_exit=2.0)
    letters = read_topic(config, "dead-letters", len(BAD))
    return bridge, {dict(m.headers())["stacktide.routing-key"].decode(): (m.value(), dict(m.headers()))
                    for m in letters}


@pytest.mark.parametrize("key", sorted(BAD), ids=[f"{BAD[k][0]}-{k.split('.')[1]}" for k in sorted(BAD)])
def test_each_bad_input_is_dead_lettered_with_its_bytes_and_headers(
        dead_letters: tuple[Bridge, dict[str, tuple[bytes, dict[str, bytes]]]], key: str) -> None:
    bridge, letters = dead_letters
    code, raw = BAD[key]
    value, headers = letters[key]
    assert headers["stacktide.reason"].decode().split(":")[0] == code
    assert (headers["stacktide.cell"], headers["stacktide.exchange"]) == (b"cell1", b"nova")
    assert headers["stacktide.received-at"].decode().startswith("20")
    expected = scrub_body(raw)
    if len(expected) > MAX_DEAD_LETTER_BYTES:  # Kafka's limit: the head, and the size it had
        assert headers["stacktide.truncated-from"] == str(len(raw)).encode()
        assert len(value) == MAX_DEAD_LETTER_BYTES and raw.startswith(value)
    else:
        assert "stacktide.truncated-from" not in headers
        assert hashlib.sha256(value).digest() == hashlib.sha256(expected).digest()
        if SECRET.encode() not in raw:
            assert value == raw  # no secret to remove: the exact bytes
    assert SECRET.encode() not in value
    counted = bridge.metrics.sample("stacktide_bridge_dead_lettered_total",
                                    {"cell": "cell1", "exchange": "nova", "reason": code})
    assert counted == sum(c == code for c, _ in BAD.values())
    assert bridge.cells[0].stats.dead_lettered == len(BAD) and bridge.cells[0].stats.forwarded == 0


def test_a_write_its_topic_refuses_as_too_large_is_dead_lettered_and_never_stalls(stack: Config) -> None:
    tag = f"refused{uuid.uuid4().hex[:6]}"
    config = config_from_mapping(config_data(stack, tag), "<test>", base=stack.local.state_dir)
    admin = AdminClient({"bootstrap.servers": config.kafka.bootstrap_servers})
    made = admin.create_topics([NewTopic(config.kafka.topic(t), num_partitions=1, replication_factor=1)
                                for t in ("notifications", "dead-letters")])  # Kafka's 1 MB default
    for future in made.values():
        future.result(timeout=30)
    blob = base64.b64encode(os.urandom(1_500_000)).decode()  # 2 MB that lz4 cannot shrink below 1 MB
    big = json.dumps({"message_id": "big", "event_type": "compute.instance.update", "priority": "INFO",
                      "payload": {"blob": blob}}).encode()
    broken = b"{" + blob.encode()  # invalid JSON, and too large for the dead-letter topic as it is
    bridge = Bridge(config)
    bridge.declare()
    odd = [CapturedMessage.from_wire("cell1", "nova", "notifications.info", b) for b in (big, broken)]
    publish(config, [*(wire(i, tag) for i in range(5)), *odd, *(wire(i, tag) for i in range(5, 10))])
    bridge.run(idle_exit=2.0)

    stats = bridge.cells[0].stats
    assert (stats.forwarded, stats.dead_lettered) == (10, 2)
    assert bridge.metrics.sample("stacktide_bridge_reconnects_total", {"cell": "cell1"}) == 0
    letters = {dict(m.headers())["stacktide.reason"].decode().split(":")[0]: m
               for m in read_topic(config, "dead-letters", 2)}
    assert sorted(letters) == ["invalid-json", "kafka-refused"]
    refused = letters["kafka-refused"]
    headers = dict(refused.headers())
    assert int(headers["stacktide.truncated-from"]) > 2_000_000  # the envelope's size
    assert refused.value().startswith(b'{"message_id":"big","cell":"cell1"')
    assert len(refused.value()) == REFUSED_BYTES
    assert headers["stacktide.routing-key"] == b"notifications.info"
    broken_letter = letters["invalid-json"]
    assert dict(broken_letter.headers())["stacktide.truncated-from"] == str(len(broken)).encode()
    assert broken.startswith(broken_letter.value()) and len(broken_letter.value()) == REFUSED_BYTES
    assert bridge.metrics.sample("stacktide_bridge_dead_lettered_total", {
        "cell": "cell1", "exchange": "nova", "reason": "kafka-refused"}) == 1
    assert sorted(message_ids(config, 10)) == sorted(f"{tag}-{i}" for i in range(10))


# ---- processes and brokers killed mid-stream (dedicated stack) -----------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[str, float]:
    """Sums per metric name of the bridge's /metrics (0 when unreachable)."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return {}
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            sums[s.name] = sums.get(s.name, 0.0) + s.value
    return sums


def start_bridge(config_file: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([str(STACKTIDE), "--config", str(config_file), "bridge"],
                                stdout=out, stderr=subprocess.STDOUT)


def test_sigkill_mid_replay_then_restart_loses_nothing(fault_stack: Config, tmp_path: Path) -> None:
    port, n, run = free_port(), 50_000, uuid.uuid4().hex[:6]
    data = config_data(fault_stack, f"kill{run}", metrics_port=port)
    config = make(data, fault_stack)
    config_file = tmp_path / "stacktide.yaml"
    config_file.write_text(yaml.safe_dump(data), encoding="utf-8")
    declared = subprocess.run([str(STACKTIDE), "--config", str(config_file), "bridge", "--declare-only"],
                              capture_output=True, timeout=60, check=False)
    assert declared.returncode == 0, declared.stderr.decode()[-2000:]

    replay = threading.Thread(target=publish, args=(config, (wire(i, run) for i in range(n))))
    started = time.monotonic()
    bridge = start_bridge(config_file, tmp_path / "bridge.log")
    replay.start()
    assert wait_for(lambda: scrape(port).get("stacktide_bridge_forwarded_total", 0) >= 10_000, 120)
    bridge.send_signal(signal.SIGKILL)
    assert bridge.wait(10) == -signal.SIGKILL
    killed = time.monotonic()
    assert replay.is_alive(), "the replay should still be running when the bridge dies"

    bridge = start_bridge(config_file, tmp_path / "bridge.log")
    try:
        assert wait_for(lambda: scrape(port).get("stacktide_bridge_connected", 0) == 1, 60, 0.05)
        reconnected = time.monotonic() - killed
        replay.join(timeout=180)
        assert not replay.is_alive()
        drained = ("stacktide_bridge_consumer_lag_messages", "stacktide_bridge_in_flight_messages")
        assert wait_for(lambda: bool(m := scrape(port)) and not any(m.get(k, 1) for k in drained), 120)
        caught_up = time.monotonic() - killed
    finally:
        bridge.send_signal(signal.SIGTERM)
        assert bridge.wait(60) == 0
    ids = message_ids(config, n)
    missing = {f"{run}-{i}" for i in range(n)} - set(ids)
    print(f"\nSIGKILL at {killed - started:.1f} s into a {n}-message replay: restarted bridge consuming "
          f"after {reconnected:.2f} s, caught up {caught_up:.1f} s after the kill; "
          f"{sum(ids.values()) - len(ids)} duplicates, {len(missing)} missing")
    assert not missing and len(ids) == n


def _restart_mid_stream(fault_stack: Config, restart: Callable[[Config], int], what: str) -> None:
    n, run = 20_000, uuid.uuid4().hex[:6]
    config = make(config_data(fault_stack, f"{what}{run}"), fault_stack)
    bridge = Bridge(config)
    bridge.declare()
    assert publish(config, (wire(i, run) for i in range(n))) == n
    thread = threading.Thread(target=bridge.run, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: bridge.cells[0].stats.forwarded >= 2_000, 60, 0.01)
        began = time.monotonic()
        restart(fault_stack)
        restarted = time.monotonic()
        cell, queue = bridge.cells[0], f"{what}{run}.cell1.nova"
        assert wait_for(lambda: cell.connected and cell.lag.get(queue, 1) == 0
                        and cell.in_flight == 0, 120), (
            f"not drained 120 s after the {what} restart: connected={cell.connected} "
            f"lag={cell.lag} in_flight={cell.in_flight} forwarded={cell.stats.forwarded} "
            f"received={cell.stats.received} last_error={cell.last_error!r}")
        recovered = time.monotonic()
    finally:
        bridge.stop.set()
        thread.join(timeout=60)
    ids = message_ids(config, n)
    missing = {f"{run}-{i}" for i in range(n)} - set(ids)
    print(f"\n{what} restart mid-stream: down and up in {restarted - began:.1f} s, drained "
          f"{recovered - restarted:.1f} s later; {sum(ids.values()) - len(ids)} duplicates, "
          f"{len(missing)} missing")
    assert not missing and len(ids) == n
    reconnects = bridge.metrics.sample("stacktide_bridge_reconnects_total", {"cell": "cell1"})
    # A RabbitMQ restart ends the session; a Kafka one only slows confirmations down.
    assert reconnects >= 1 if what == "rabbitmq" else reconnects == 0


def test_rabbitmq_restart_mid_stream_loses_nothing(fault_stack: Config) -> None:
    _restart_mid_stream(fault_stack, rabbitmq.restart, "rabbitmq")


def test_kafka_restart_mid_stream_loses_nothing(fault_stack: Config) -> None:
    _restart_mid_stream(fault_stack, kafka.restart, "kafka")


def test_a_fatal_producer_error_gets_the_cell_a_new_producer_and_loses_nothing(
        stack: Config, caplog: pytest.LogCaptureFixture) -> None:
    """librdkafka cannot be made to fail fatally on demand from Python, so the fatal error
    is handed to the producer's ``error_cb`` as librdkafka would; the rest is real: the
    session ends, the cell makes a new producer and RabbitMQ redelivers what was unacked."""
    n, run = 5_000, uuid.uuid4().hex[:6]
    config = make(config_data(stack, f"fatal{run}"), stack)
    bridge = Bridge(config)
    bridge.declare()
    assert publish(config, (wire(i, run) for i in range(n))) == n
    cell, queue = bridge.cells[0], f"fatal{run}.cell1.nova"
    thread = threading.Thread(target=bridge.run, daemon=True)
    with caplog.at_level("WARNING", logger="connectors.bridge"):
        thread.start()
        try:
            assert wait_for(lambda: cell.stats.forwarded >= 500, 60, 0.01)
            cell._on_kafka_error(KafkaError(KafkaError._FATAL, "injected: sequence gap", fatal=True))
            assert wait_for(lambda: cell.producers_made == 2, 30, 0.01)
            assert wait_for(lambda: cell.connected and cell.lag.get(queue, 1) == 0
                            and cell.in_flight == 0, 60), (cell.lag, cell.in_flight, cell.last_error)
        finally:
            bridge.stop.set()
            thread.join(timeout=60)
    said = [r.getMessage() for r in caplog.records]
    assert any("event=kafka_fatal" in m and "sequence gap" in m for m in said), said
    assert any("event=disconnected" in m and "fatal Kafka producer error" in m for m in said), said
    assert any("event=producer_renewed" in m for m in said), said
    ids = message_ids(config, n)
    assert {f"{run}-{i}" for i in range(n)} == set(ids)
    assert bridge.metrics.sample("stacktide_bridge_reconnects_total", {"cell": "cell1"}) >= 1


# ---- durable exchanges: the bindings through a RabbitMQ restart ----------------------------

def _exchange_config(fault_stack: Config, tag: str, durable: bool, **bridge: Any) -> Config:
    """One cell, one exchange and one topic of its own (*tag*), durable or oslo's default."""
    data = config_data(fault_stack, tag, **bridge)
    data["cells"][0].update(exchanges=[tag], topics=[tag], durable_exchanges=durable)
    return make(data, fault_stack)


def _service_message(config: Config, run: str) -> CapturedMessage:
    cell = config.cells[0]
    return CapturedMessage.from_wire(cell.name, cell.exchanges[0], f"{cell.topics[0]}.info",
                                     notification(run), {"content_type": "application/json",
                                                         "delivery_mode": 2})


def test_durable_exchanges_keep_the_bridge_queues_bound_through_a_rabbitmq_restart(
        fault_stack: Config) -> None:
    """What a service publishes right after a restart, before any bridge is back, reaches the
    bridge's queue only when the exchange is durable; oslo's non-durable one is created anew
    by the publisher, without the binding."""
    run = uuid.uuid4().hex[:6]
    durable = _exchange_config(fault_stack, f"dur{run}", True)
    plain = _exchange_config(fault_stack, f"eph{run}", False)
    queues = {}
    for config in (durable, plain):
        queues[config.cells[0].durable_exchanges] = Bridge(config).cells[0].declare()[0]
    rabbitmq.restart(fault_stack)
    for config in (durable, plain):  # the services' notifiers declare their exchange first
        assert publish(config, [_service_message(config, f"{run}-{config.cells[0].name}")]) == 1
    assert queue_depth(durable, queues[True]) == 1
    assert queue_depth(plain, queues[False]) == 0  # the queue survived, its binding did not
    assert queue_depth(plain, f"eph{run}.info") == 1  # the service's own default queue has it


def test_bridge_back_soon_after_a_rabbitmq_restart(fault_stack: Config) -> None:
    """With the default back-off the bridge consumes again within seconds of the broker being
    up (the window in which a non-durable exchange loses notifications), and what was
    published at once on a durable exchange reaches Kafka. Prints the window."""
    run = uuid.uuid4().hex[:6]
    defaults = BridgeConfig()
    config = _exchange_config(fault_stack, f"win{run}", True,
                              reconnect_initial_s=defaults.reconnect_initial_s,
                              reconnect_max_s=defaults.reconnect_max_s)
    bridge = Bridge(config)
    thread = threading.Thread(target=bridge.run, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: bridge.cells[0].connected, 60, 0.01)
        began = time.monotonic()
        rabbitmq.restart(fault_stack)
        up = time.monotonic()
        assert publish(config, [_service_message(config, f"{run}-after")]) == 1
        early = not bridge.cells[0].connected
        assert wait_for(lambda: bridge.cells[0].connected, 120, 0.01)
        bound = time.monotonic()
        assert [json.loads(m.value())["message_id"] for m in read_topic(config, "notifications", 1)
                ] == [f"{run}-after"]
    finally:
        bridge.stop.set()
        thread.join(timeout=60)
    print(f"\nRabbitMQ restart: down and up in {up - began:.1f} s; the bridge (reconnect "
          f"{defaults.reconnect_initial_s:g} s doubling to {defaults.reconnect_max_s:g} s) bound "
          f"again {bound - up:.2f} s after the broker was up; published "
          f"{'before' if early else 'after'} it was back")
