"""Every cell at once, on the real RabbitMQ (one vhost per cell) and Kafka.

Each test gets vhosts, queues and topics of its own. Cells fail alone: a cell on a
closed port or whose vhost is deleted mid-run never stalls the others, and comes
back by itself. Replicas share the bridge's queues; other consumers' queues keep
every message.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pika
import pytest
from confluent_kafka import Consumer

from connectors.bridge import Bridge, connection_parameters
from connectors.replay import publish
from stacktide.config import DEFAULT_EXCHANGES, DEFAULT_TOPICS, PRIORITIES, Config, config_from_mapping
from stacktide.local import rabbitmq
from stacktide.local.kafka import ensure_topics
from stacktide.local.process import wait_for
from stacktide.schema import CapturedMessage

pytestmark = pytest.mark.stack

SECRETS = ("ctx-token-5ecr3t", "admin-pw-5ecr3t", "deep-token-5ecr3t", "client-5ecr3t-in-list")


def body(mid: str, event_type: str, priority: str, envelope: str) -> bytes:
    """An oslo notification carrying secrets at several depths beside keys that must stay."""
    msg = {
        "message_id": mid, "event_type": event_type, "priority": priority.upper(),
        "publisher_id": "compute.host1", "timestamp": "2026-01-02 03:04:05.678901",
        "_context_auth_token": SECRETS[0], "_context_request_id": f"req-{mid}",
        "payload": {"instance_id": mid, "Admin_Password": SECRETS[1],
                    "nested": {"deep": {"auth_token": SECRETS[2], "keep": "ok"},
                               "items": [{"client_secret": SECRETS[3], "keep": 1}]}},
    }
    text = json.dumps(msg)
    if envelope == "2.0":
        text = json.dumps({"oslo.version": "2.0", "oslo.message": text})
    return text.encode()


def every_kind(cell: str) -> list[CapturedMessage]:
    """One message per exchange x topic x priority x envelope."""
    return [
        CapturedMessage.from_wire(cell, exchange, f"{topic}.{priority}",
                                  body(str(uuid.uuid4()), f"{exchange}.thing.{priority}", priority, env))
        for exchange in DEFAULT_EXCHANGES for topic in DEFAULT_TOPICS for priority in PRIORITIES
        for env in ("1.0", "2.0")
    ]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cells_config(stack: Config, tag: str, cells: dict[str, str], **bridge: Any) -> Config:
    """A config of *cells* (name -> vhost, or a full URL) whose queues and topics carry *tag*."""
    port = stack.local.rabbitmq_port
    return config_from_mapping({
        "cells": [{"name": name, "transport_url": where if "://" in where
                   else f"rabbit://guest:guest@127.0.0.1:{port}/{where}"} for name, where in cells.items()],
        "kafka": {"bootstrap_servers": stack.kafka.bootstrap_servers, "topic_prefix": tag},
        "bridge": {"queue_prefix": tag, "reconnect_initial_s": 0.1, "reconnect_max_s": 0.5,
                   "lag_interval_s": 0.5, **bridge},
        "local": {"state_dir": str(stack.local.state_dir), "rabbitmq_port": port,
                  "kafka_port": stack.local.kafka_port,
                  "kafka_controller_port": stack.local.kafka_controller_port},
    }, "<test>", base=stack.local.state_dir)


def new_tag(name: str) -> str:
    return f"{name}{uuid.uuid4().hex[:6]}"


@contextmanager
def running(*bridges: Bridge) -> Iterator[None]:
    threads = [threading.Thread(target=b.run, daemon=True) for b in bridges]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        for b in bridges:
            b.stop.set()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads), "a bridge did not stop"


def read_topic(config: Config, name: str, count: int, timeout_s: float = 60.0,
               settle_s: float = 1.0) -> list[Any]:
    """The messages of topic *name*: at least *count*, plus whatever arrives within *settle_s*."""
    consumer = Consumer({"bootstrap.servers": config.kafka.bootstrap_servers,
                         "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"})
    consumer.subscribe([config.kafka.topic(name)])
    found: list[Any] = []
    deadline, quiet_since = time.monotonic() + timeout_s, time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = [m for m in consumer.consume(1000, timeout=0.2) if m.error() is None]
            found += batch
            now = time.monotonic()
            quiet_since = now if batch else quiet_since
            if len(found) >= count and now - quiet_since >= settle_s:
                break
    finally:
        consumer.close()
    return found


def envelopes(config: Config, count: int, **kwargs: Any) -> list[dict[str, Any]]:
    return [json.loads(m.value()) for m in read_topic(config, "notifications", count, **kwargs)]


def queue_depth(config: Config, cell: int, queue: str) -> int:
    conn = pika.BlockingConnection(connection_parameters(config.cells[cell]))
    try:
        return int(conn.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        conn.close()


def forwarded(bridge: Bridge, cell: int) -> int:
    return bridge.cells[cell].stats.forwarded


def test_all_cells_exchanges_priorities_and_envelopes_land_with_their_cell(stack: Config) -> None:
    tag = new_tag("cells")
    for v in ("a", "b"):
        rabbitmq.add_vhost(stack, f"{tag}-{v}")
    down_url = f"rabbit://guest:guest@127.0.0.1:{closed_port()}/"
    config = cells_config(stack, tag, {"cell-a": f"{tag}-a", "cell-b": f"{tag}-b", "cell-down": down_url})
    ensure_topics(config)
    bridge = Bridge(config)
    bridge.cells[0].declare()
    bridge.cells[1].declare()
    # Another consumer's queue (Ceilometer's) on every exchange of cell-a: it must keep everything.
    conn = pika.BlockingConnection(connection_parameters(config.cells[0]))
    channel = conn.channel()
    channel.queue_declare("ceilometer.notifications", durable=True)
    for exchange in DEFAULT_EXCHANGES:
        for topic in DEFAULT_TOPICS:
            channel.queue_bind("ceilometer.notifications", exchange, routing_key=f"{topic}.*")
    conn.close()
    sent = {name: every_kind(name) for name in ("cell-a", "cell-b")}
    for name, messages in sent.items():
        assert publish(config, messages, cell=name) == len(messages) == 7 * 2 * 7 * 2

    with running(bridge):
        started = time.monotonic()
        assert wait_for(lambda: forwarded(bridge, 0) + forwarded(bridge, 1) == 392, 60)
        took = time.monotonic() - started
        code, health = bridge.health()
        assert code == 503 and health["unreachable"] == ["cell-down"]
        assert "Refused" in (health["cells"]["cell-down"]["last_error"] or "")
        assert bridge.metrics.sample("stacktide_bridge_reconnects_total", {"cell": "cell-down"}) >= 2
    print(f"\n392 messages from 2 cells forwarded in {took:.2f} s beside an unreachable cell")

    records = read_topic(config, "notifications", 392)
    got = [json.loads(m.value()) for m in records]
    expected = {json.loads(json.loads(m.body).get("oslo.message", m.body))["message_id"]:
                (name, m.exchange, m.routing_key) for name, ms in sent.items() for m in ms}
    assert len(got) == 392
    assert {e["message_id"]: (e["cell"], e["exchange"], e["routing_key"]) for e in got} == expected
    assert {e["priority"] for e in got} == set(PRIORITIES)
    for e in got:
        assert e["routing_key"].endswith(f".{e['priority']}")
        assert e["payload"]["nested"]["deep"] == {"keep": "ok"}
        assert e["payload"]["nested"]["items"] == [{"keep": 1}]
        assert e["request_id"] == f"req-{e['message_id']}"
    raw = b"".join(m.value() for m in records)
    assert not [s for s in SECRETS if s.encode() in raw]
    assert queue_depth(config, 0, "ceilometer.notifications") == len(sent["cell-a"])
    assert queue_depth(config, 0, f"{tag}.cell-a.nova") == 0


def test_a_deleted_vhost_stalls_only_its_own_cell_which_comes_back(stack: Config) -> None:
    tag = new_tag("vhostdel")
    for v in ("a", "b"):
        rabbitmq.add_vhost(stack, f"{tag}-{v}")
    config = cells_config(stack, tag, {"cell-a": f"{tag}-a", "cell-b": f"{tag}-b"})
    ensure_topics(config)
    bridge = Bridge(config)

    def batch(cell: str, n: int) -> list[CapturedMessage]:
        return [CapturedMessage.from_wire(cell, "nova", "notifications.info",
                                          body(str(uuid.uuid4()), "compute.instance.update", "info", "2.0"))
                for _ in range(n)]

    with running(bridge):
        assert wait_for(lambda: bridge.health()[0] == 200, 30)
        publish(config, batch("cell-a", 50), cell="cell-a")
        publish(config, batch("cell-b", 50), cell="cell-b")
        assert wait_for(lambda: forwarded(bridge, 0) == forwarded(bridge, 1) == 50, 30)

        rabbitmq.delete_vhost(stack, f"{tag}-a")
        assert wait_for(lambda: bridge.health()[1]["unreachable"] == ["cell-a"], 30)
        publish(config, batch("cell-b", 50), cell="cell-b")  # cell-b goes on meanwhile
        assert wait_for(lambda: forwarded(bridge, 1) == 100, 30)
        assert not bridge.cells[0].connected
        time.sleep(1.5)  # several failed reconnects: backoff reaches its 0.5 s cap
        failures = bridge.metrics.sample("stacktide_bridge_reconnects_total", {"cell": "cell-a"})
        assert 3 <= failures <= 15

        rabbitmq.add_vhost(stack, f"{tag}-a")
        recreated = time.monotonic()
        assert wait_for(lambda: bridge.cells[0].connected, 30)
        recovery = time.monotonic() - recreated
        publish(config, batch("cell-a", 50), cell="cell-a")  # its queues were declared anew
        assert wait_for(lambda: forwarded(bridge, 0) == 100, 30)
        assert bridge.health()[0] == 200
    print(f"\ncell-a reconnected {recovery:.2f} s after its vhost came back "
          f"({failures:.0f} failed attempts while it was gone)")
    assert recovery < 2.0  # the backoff is capped at 0.5 s
    got = envelopes(config, 200)
    assert len(got) == len({e["message_id"] for e in got}) == 200
    assert sum(e["cell"] == "cell-a" for e in got) == 100


def test_two_replicas_share_quorum_queues_and_forward_each_message_once(stack: Config) -> None:
    tag = new_tag("replicas")
    rabbitmq.add_vhost(stack, tag)
    config = cells_config(stack, tag, {"cell1": tag}, quorum_queues=True, prefetch=50)
    ensure_topics(config)
    first, second = Bridge(config), Bridge(config)
    n = 3000
    messages = [CapturedMessage.from_wire("cell1", "nova", "notifications.info",
                                          body(f"m-{i}", "compute.instance.create.end", "info", "1.0"))
                for i in range(n)]
    with running(first, second):
        assert wait_for(lambda: first.health()[0] == second.health()[0] == 200, 30)
        kinds = rabbitmq.ctl(stack, "list_queues", "-p", tag, "--no-table-headers", "name", "type")
        assert all(line.split()[1] == "quorum" for line in kinds.splitlines() if line.startswith(tag))
        assert f"{tag}.cell1.nova" in kinds
        assert publish(config, messages, cell="cell1") == n
        assert wait_for(lambda: forwarded(first, 0) + forwarded(second, 0) >= n, 60)
        time.sleep(1.0)  # room for a duplicate to show up, were there one
    shares = (forwarded(first, 0), forwarded(second, 0))
    print(f"\nreplica shares of {n} messages: {shares}")
    assert sum(shares) == n and min(shares) > 0
    got = envelopes(config, n)
    assert sorted(e["message_id"] for e in got) == sorted(f"m-{i}" for i in range(n))
    assert queue_depth(config, 0, f"{tag}.cell1.nova") == 0
