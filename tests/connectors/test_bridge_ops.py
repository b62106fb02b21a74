"""Operating the bridge: /metrics, /healthz, logs without secrets, backoff, SIGTERM, options.

The endpoint is read over HTTP from an ephemeral port; SIGTERM is sent to the real
``stacktide bridge`` process started from a YAML config of the test stack.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any

import pika
import pytest
import yaml
from confluent_kafka import Consumer
from prometheus_client.parser import text_string_to_metric_families

from connectors.bridge import Bridge, backoff, connection_parameters
from connectors.replay import publish
from stacktide.cli import main
from stacktide.config import Config, config_from_mapping
from stacktide.errors import ConfigError
from stacktide.local import rabbitmq
from stacktide.local.kafka import ensure_topics
from stacktide.local.process import wait_for
from stacktide.schema import CapturedMessage

STACKTIDE = Path(sys.executable).parent / "stacktide"
PASSWORD, OTHER_PASSWORD = "Pw-0f-the-cell-9x", "Pw-0f-the-dead-cell-7q"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_data(stack: Config, tag: str, cells: dict[str, str], kafka: str | None = None,
                **bridge: Any) -> dict[str, Any]:
    """Cells (name -> vhost, or a full URL) of the test stack; queues and topics carry *tag*."""
    local = stack.local
    return {
        "cells": [{"name": name, "transport_url": where if "://" in where else
                   f"rabbit://guest:guest@127.0.0.1:{local.rabbitmq_port}/{where}"}
                  for name, where in cells.items()],
        "kafka": {"bootstrap_servers": kafka or stack.kafka.bootstrap_servers, "topic_prefix": tag},
        "bridge": {"queue_prefix": tag, "reconnect_initial_s": 0.1, "reconnect_max_s": 0.5,
                   "lag_interval_s": 0.2, **bridge},
        "local": {"state_dir": str(local.state_dir), "rabbitmq_port": local.rabbitmq_port,
                  "kafka_port": local.kafka_port, "kafka_controller_port": local.kafka_controller_port},
    }


def make(data: dict[str, Any]) -> Config:
    return config_from_mapping(data, "<test>", base=Path("/"))


def notes(n: int, run: str, cell: str = "cell1") -> list[CapturedMessage]:
    return [CapturedMessage.from_wire(cell, "nova", "notifications.info", json.dumps(
        {"message_id": f"{run}-{i}", "event_type": "compute.instance.update", "priority": "INFO",
         "payload": {"instance_id": f"{run}-{i}"}}).encode()) for i in range(n)]


@contextmanager
def running(bridge: Bridge) -> Iterator[None]:
    thread = threading.Thread(target=bridge.run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        bridge.stop.set()
        thread.join(timeout=60)
        assert not thread.is_alive()


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def queue_depth(config: Config, queue: str) -> int:
    conn = pika.BlockingConnection(connection_parameters(config.cells[0]))
    try:
        return int(conn.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        conn.close()


def kafka_ids(config: Config, at_least: int) -> Counter[str]:
    consumer = Consumer({"bootstrap.servers": config.kafka.bootstrap_servers,
                         "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"})
    consumer.subscribe([config.kafka.topic("notifications")])
    ids: Counter[str] = Counter()
    quiet = deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            batch = [m for m in consumer.consume(5000, timeout=0.2) if m.error() is None]
            ids.update(json.loads(m.value() or b"{}")["message_id"] for m in batch)
            quiet = time.monotonic() if batch else quiet
            if sum(ids.values()) >= at_least and time.monotonic() - quiet >= 1.0:
                break
    finally:
        consumer.close()
    return ids


@pytest.mark.stack
def test_metrics_healthz_and_logs_name_cells_never_a_password(
        stack: Config, caplog: pytest.LogCaptureFixture) -> None:
    tag = f"ops{uuid.uuid4().hex[:6]}"
    rabbitmq.add_vhost(stack, tag)
    rabbitmq.add_user(stack, f"{tag}-user", PASSWORD, (tag,))
    port = stack.local.rabbitmq_port
    config = make(config_data(stack, tag, {
        "cell-a": f"rabbit://{tag}-user:{PASSWORD}@127.0.0.1:{port}/{tag}",
        "cell-down": f"rabbit://{tag}-user:{OTHER_PASSWORD}@127.0.0.1:{free_port()}/"}))
    ensure_topics(config)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="pika")  # its connection narrative too, whatever ran before
    bridge = Bridge(config)
    bridge.cells[0].declare()
    publish(config, [*notes(20, tag, "cell-a"),
                     CapturedMessage.from_wire("cell-a", "nova", "notifications.error", b"{oops")],
            cell="cell-a")
    server = bridge.serve(port=0)
    assert server.port > 0 and server.host == "127.0.0.1"
    with running(bridge):
        queue = f"{tag}.cell-a.nova"
        assert wait_for(lambda: bridge.cells[0].stats.forwarded == 20 and
                        bridge.cells[0].lag.get(queue) == 0, 30)
        assert wait_for(lambda: bridge.metrics.sample(  # a few reconnect attempts of cell-down
            "stacktide_bridge_reconnects_total", {"cell": "cell-down"}) >= 5, 10)
        status, text = get(server.port, "/metrics")
        health_code, health_body = get(server.port, "/healthz")
        assert get(server.port, "/nowhere")[0] == 404
    assert status == 200
    m = samples(text)

    def value(name: str, **labels: str) -> float:
        return m[(name, frozenset(labels.items()))]

    assert value("stacktide_bridge_received_total", cell="cell-a", exchange="nova") == 21
    assert value("stacktide_bridge_forwarded_total", cell="cell-a", exchange="nova") == 20
    assert value("stacktide_bridge_forwarded_total", cell="cell-a", exchange="glance") == 0
    assert value("stacktide_bridge_dead_lettered_total", cell="cell-a", exchange="nova",
                 reason="invalid-json") == 1
    assert value("stacktide_bridge_kafka_delivery_seconds_count", cell="cell-a") == 21
    assert value("stacktide_bridge_connected", cell="cell-a") == 1
    assert value("stacktide_bridge_connected", cell="cell-down") == 0
    assert value("stacktide_bridge_in_flight_messages", cell="cell-a") == 0
    assert value("stacktide_bridge_consumer_lag_messages", cell="cell-a", queue=queue) == 0
    assert value("stacktide_bridge_reconnects_total", cell="cell-down") >= 5

    assert health_code == 503
    health = json.loads(health_body)
    assert health["status"] == "unhealthy" and health["unreachable"] == ["cell-down"]
    assert health["cells"]["cell-a"] == {"connected": True, "last_error": None}

    logs = caplog.text
    assert f"{tag}-user:***@127.0.0.1" in logs  # the consuming line names the broker, redacted
    for secret in (PASSWORD, OTHER_PASSWORD):
        assert secret not in logs and secret not in text and secret not in health_body
    delays = [float(x) for x in re.findall(r"cell=cell-down .*retry_in_s=([0-9.]+)", logs)]
    assert delays[:5] == [0.1, 0.2, 0.4, 0.5, 0.5]  # doubling, capped at reconnect_max_s


@pytest.mark.stack
def test_with_kafka_down_nothing_is_acked_and_lag_and_in_flight_show_it(stack: Config) -> None:
    tag = f"nokafka{uuid.uuid4().hex[:6]}"
    rabbitmq.add_vhost(stack, tag)
    config = make(config_data(stack, tag, {"cell1": tag}, kafka=f"127.0.0.1:{free_port()}",
                              prefetch=10, shutdown_timeout_s=0.5))
    bridge = Bridge(config)
    bridge.declare()
    publish(config, notes(100, tag))
    queue = f"{tag}.cell1.nova"
    port = bridge.serve(port=0).port
    with running(bridge):
        assert wait_for(lambda: bridge.cells[0].in_flight == 10 and bridge.cells[0].lag.get(queue) == 90, 30)
        m = samples(get(port, "/metrics")[1])
        code, _ = get(port, "/healthz")
    assert m[("stacktide_bridge_in_flight_messages", frozenset({("cell", "cell1")}))] == 10
    assert m[("stacktide_bridge_consumer_lag_messages",
              frozenset({("cell", "cell1"), ("queue", queue)}))] == 90
    assert code == 200  # health is about the cells' brokers; Kafka's outage shows as in-flight
    assert bridge.cells[0].stats.forwarded == 0
    assert queue_depth(config, queue) == 100  # unconfirmed by Kafka: never acked, all still there


@pytest.mark.stack
def test_sigterm_stops_consuming_flushes_acks_and_repeats_nothing(stack: Config, tmp_path: Path) -> None:
    tag, n, port = f"term{uuid.uuid4().hex[:6]}", 30_000, free_port()
    data = config_data(stack, tag, {"cell1": f"rabbit://guest:guest@127.0.0.1:{stack.local.rabbitmq_port}/"},
                       metrics_port=port)
    config = make(data)
    ensure_topics(config)
    config_file = tmp_path / "stacktide.yaml"
    config_file.write_text(yaml.safe_dump(data), encoding="utf-8")
    command = [str(STACKTIDE), "--config", str(config_file), "bridge"]
    assert subprocess.run([*command, "--declare-only"], timeout=60, check=False).returncode == 0
    assert publish(config, notes(n, tag)) == n

    bridge = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def forwarded() -> float:
        text = get(port, "/metrics")[1] if _listening(port) else ""
        return sum(v for (name, _), v in samples(text).items() if name == "stacktide_bridge_forwarded_total")

    assert wait_for(lambda: forwarded() >= 1000, 60, 0.02)
    signalled = time.monotonic()
    bridge.send_signal(signal.SIGTERM)
    out, err = bridge.communicate(timeout=60)
    stopped = time.monotonic() - signalled
    assert bridge.returncode == 0, err[-2000:]
    assert "event=stopping signal=SIGTERM" in err
    summary = re.search(r"cell=cell1 received=(\d+) forwarded=(\d+) dead_lettered=0", out)
    assert summary is not None, out
    sent = int(summary[2])
    left = queue_depth(config, f"{tag}.cell1.nova")
    ids = kafka_ids(config, sent)
    print(f"\nSIGTERM after {sent} of {n}: exited in {stopped:.2f} s, {left} left in RabbitMQ")
    assert 0 < left < n  # stopped mid-stream
    assert len(ids) == sum(ids.values()) == sent  # all it forwarded is in Kafka, once
    assert sent + left == n  # and was acked: nothing redelivered, nothing lost

    again = subprocess.run([*command, "--idle-exit", "2"], capture_output=True, text=True, timeout=120,
                           check=False)
    assert again.returncode == 0, again.stderr[-2000:]
    ids = kafka_ids(config, n)
    assert sorted(ids) == sorted(f"{tag}-{i}" for i in range(n)) and set(ids.values()) == {1}


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_backoff_doubles_up_to_its_cap() -> None:
    assert list(islice(backoff(1.0, 30.0), 7)) == [1, 2, 4, 8, 16, 30, 30]
    assert list(islice(backoff(0.25, 0.25), 3)) == [0.25, 0.25, 0.25]


def test_bridge_options_load_and_bad_ones_stop_start_up() -> None:
    base = {"cells": [{"name": "c", "transport_url": "rabbit://u:p@127.0.0.1:5672/"}]}
    config = config_from_mapping({**base, "bridge": {"quorum_queues": True, "metrics_port": 9464,
                                                     "metrics_host": "0.0.0.0", "lag_interval_s": 2}},
                                 "f.yaml", base=Path("/"))
    b = config.bridge
    assert (b.quorum_queues, b.metrics_port, b.metrics_host, b.lag_interval_s) == (True, 9464, "0.0.0.0", 2.0)
    assert (b.reconnect_initial_s, b.reconnect_max_s, b.shutdown_timeout_s) == (1.0, 5.0, 30.0)
    for bad, key in (({"quorum_queues": "yes"}, "bridge.quorum_queues"),
                     ({"metrics_port": 70000}, "bridge.metrics_port"),
                     ({"reconnect_initial_s": 5, "reconnect_max_s": 1}, "bridge.reconnect_max_s"),
                     ({"prefetch": 0}, "bridge.prefetch"),
                     ({"colour": "blue"}, "bridge.colour")):
        with pytest.raises(ConfigError, match=re.escape(key)):
            config_from_mapping({**base, "bridge": bad}, "f.yaml", base=Path("/"))


def test_tls_cells_verify_each_host_by_name(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=stacktide-test-ca", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    config = make({"cells": [{"name": "c", "transport_url":
                              f"amqps://u:p@r1,u:p@r2:5673/v?ssl_ca_file={cert}&ssl_cert_file={cert}"
                              f"&ssl_key_file={key}&ssl_version=TLSv1_2"}]})
    params = connection_parameters(config.cells[0])
    assert [(p.host, p.port) for p in params] == [("r1", 5671), ("r2", 5673)]
    assert [p.ssl_options.server_hostname for p in params] == ["r1", "r2"]
    context = params[0].ssl_options.context
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version == context.maximum_version == ssl.TLSVersion.TLSv1_2
    assert any(("commonName", "stacktide-test-ca") in rdn for c in context.get_ca_certs()
               for rdn in c["subject"])
    plain = make({"cells": [{"name": "c", "transport_url": "rabbit://u:p@h/"}]})
    assert connection_parameters(plain.cells[0])[0].ssl_options is None


def test_a_taken_metrics_port_stops_start_up(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config_file = tmp_path / "stacktide.yaml"
        config_file.write_text(yaml.safe_dump({
            "cells": [{"name": "c", "transport_url": f"rabbit://u:p@127.0.0.1:{free_port()}/"}],
            "bridge": {"metrics_port": taken.getsockname()[1]}}), encoding="utf-8")
        assert main(["--config", str(config_file), "bridge"]) == 2
    assert "event=metrics_unavailable" in caplog.text


@pytest.mark.stack
def test_declare_only_with_create_topics_sets_up_a_new_deployment(stack: Config, tmp_path: Path) -> None:
    """The one-shot set-up of docker/compose.yaml: queues bound on the cell, and the topics with
    the configured partitions and room for 16 MiB messages (not the broker's defaults)."""
    from confluent_kafka.admin import AdminClient, ConfigResource

    tag = f"setup{uuid.uuid4().hex[:6]}"
    data = config_data(stack, tag, {"cell1": ""})
    data["kafka"]["partitions"] = 3
    config = make(data)
    config_file = tmp_path / "stacktide.yaml"
    config_file.write_text(yaml.safe_dump(data), encoding="utf-8")
    done = subprocess.run([str(STACKTIDE), "--config", str(config_file), "bridge", "--declare-only",
                           "--create-topics"], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "event=topics_ready" in done.stderr
    admin = AdminClient({"bootstrap.servers": config.kafka.bootstrap_servers})
    topics = admin.list_topics(timeout=30).topics
    for name in ("notifications", "samples", "dead-letters", "alerts"):
        assert len(topics[config.kafka.topic(name)].partitions) == 3, name
    resource = ConfigResource(ConfigResource.Type.TOPIC, config.kafka.topic("notifications"))
    described = admin.describe_configs([resource])[resource].result(timeout=30)
    assert described["max.message.bytes"].value == str(16 * 1024 * 1024)
    queue = f"{tag}.cell1.nova"
    conn = pika.BlockingConnection(connection_parameters(config.cells[0]))
    try:
        assert conn.channel().queue_declare(queue, passive=True).method.message_count == 0
    finally:
        conn.close()
    # Run again, as every `docker compose up` does: what exists is left alone.
    again = subprocess.run([str(STACKTIDE), "--config", str(config_file), "bridge", "--declare-only",
                            "--create-topics"], capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stderr[-2000:]
