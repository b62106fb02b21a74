"""stacktide capture and replay on the real broker: byte-exact round trips, no stolen messages.

A capture of live traffic, replayed into another cell (a fresh vhost where no
exchange exists yet) and captured there again, must give the same bodies byte for
byte, the same exchanges, routing keys and properties. Replay must fail loudly on a
nack or a return; capture must leave every other queue its copy and nothing behind.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pika
import pytest

from connectors.bridge import Bridge, connection_parameters
from connectors.capture import Progress, Recorder, message_properties
from connectors.replay import (
    OSLO_PROPERTIES,
    ReplayError,
    amqp_properties,
    capture_messages,
    corpus_messages,
    publish,
)
from stacktide.config import REPO_ROOT, Config
from stacktide.local import rabbitmq
from stacktide.schema import CapturedMessage
from tests.helpers import isolated, queue_depth, with_vhost_cell

NOT_UTF8 = b'{"event_type": "x", "payload": "\xff\xfe caf\xe9"}'
EXTRA_PROPS = {"content_type": "application/json", "content_encoding": "utf-8",
               "delivery_mode": 2, "message_id": "m-1", "timestamp": 1_700_000_000,
               "app_id": "nova-compute", "headers": {"x-trace": "abc", "hops": 3}}


def traffic(cell: str) -> list[CapturedMessage]:
    messages = list(corpus_messages(cell, envelope="mixed"))
    messages.append(CapturedMessage.from_wire(cell, "nova", "notifications.error", NOT_UTF8))
    messages.append(CapturedMessage.from_wire(cell, "glance", "notifications.info", b"{}",
                                              dict(EXTRA_PROPS)))
    return messages


def record(config: Config, cells: list[str], send: list[CapturedMessage], **replay: object
           ) -> list[CapturedMessage]:
    """Capture *cells* while replaying *send*; every sent message must be captured once."""
    out = io.StringIO()
    recorder = Recorder(config, out, cells)
    recorder.start()
    try:
        assert publish(config, send, **replay) == len(send)  # type: ignore[arg-type]
        deadline = time.monotonic() + 30
        while recorder.captured < len(send) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        recorder.close()
    assert recorder.errors == []
    return [CapturedMessage.from_line(line) for line in out.getvalue().splitlines()]


def wire(m: CapturedMessage) -> tuple[str, str, bytes]:
    return m.exchange, m.routing_key, m.body_bytes()


@pytest.mark.stack
def test_capture_replay_round_trip_into_another_cell(stack: Config, tmp_path: Path) -> None:
    sent = traffic("cell1")
    base = isolated(stack, "rt", {m.exchange for m in sent})
    config = with_vhost_cell(base, "cell2")  # a fresh vhost: no exchange, no queue there yet

    first = record(config, ["cell1"], sent, cell="cell1")
    assert [wire(m) for m in first] == [wire(m) for m in sent]  # same order, byte for byte
    assert {m.cell for m in first} == {"cell1"}
    assert first[-2].body_bytes() == NOT_UTF8
    assert first[-1].properties == EXTRA_PROPS
    assert first[0].properties == OSLO_PROPERTIES  # the corpus goes out as oslo sends it
    assert first[-2].properties == {"content_type": "application/json",
                                    "content_encoding": "utf-8"}  # oslo's type and encoding

    path = tmp_path / "cell1.jsonl"
    path.write_text("".join(m.to_line() + "\n" for m in first), encoding="utf-8")
    second = record(config, ["cell2"], list(capture_messages(path)), cell="cell2")
    assert [wire(m) for m in second] == [wire(m) for m in sent]
    assert [m.properties for m in second] == [m.properties for m in first]
    assert {m.cell for m in second} == {"cell2"}
    # Replay declared what oslo's notifier declares in the empty vhost: the default queues.
    info = sum(1 for m in sent if m.routing_key == "notifications.info")
    assert queue_depth(config, "notifications.info", "cell2") == info

    # --keep-cells: each message back to the cell it was captured in.
    both = [*first[:5], *second[:7]]
    again = record(config, ["cell1", "cell2"], both, keep_cells=True)
    assert Counter(m.cell for m in again) == {"cell1": 5, "cell2": 7}
    assert sorted(wire(m) for m in again) == sorted(wire(m) for m in both)


@pytest.mark.stack
def test_capture_takes_nothing_from_other_consumers(stack: Config) -> None:
    sent = traffic("cell1")
    config = isolated(stack, "cap", {m.exchange for m in sent})
    bridge = Bridge(config)
    bridge.declare()  # the bridge's own durable queues, as a running bridge has them
    before = set(rabbitmq.ctl(config, "list_queues", "-q", "name").split())

    captured = record(config, ["cell1"], sent)
    assert len(captured) == len(sent)
    bridge_queues = [f"{config.bridge.queue_prefix}.cell1.{e}" for e in config.cells[0].exchanges]
    assert sum(queue_depth(config, q) for q in bridge_queues) == len(sent)
    # The capture's own queue went away with its connection.
    deadline = time.monotonic() + 10
    while (after := set(rabbitmq.ctl(config, "list_queues", "-q", "name").split())) != before:
        assert time.monotonic() < deadline, after - before
        time.sleep(0.2)
    conn = pika.BlockingConnection(connection_parameters(config.cells[0]))
    try:
        for q in bridge_queues:
            conn.channel().queue_delete(q)
    finally:
        conn.close()


def write_config(stack: Config, path: Path, exchange: str) -> Path:
    port = stack.local.rabbitmq_port
    path.write_text(json.dumps({  # JSON is YAML
        "cells": [{"name": "cell1", "transport_url": f"rabbit://guest:guest@127.0.0.1:{port}/",
                   "exchanges": [exchange], "topics": ["notifications"]}],
        "kafka": {"bootstrap_servers": stack.kafka.bootstrap_servers},
        "local": {"state_dir": str(stack.local.state_dir), "rabbitmq_port": port,
                  "kafka_port": stack.local.kafka_port,
                  "kafka_controller_port": stack.local.kafka_controller_port},
    }), encoding="utf-8")
    return path


def start_capture(config_path: Path, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "stacktide.cli", "--config", str(config_path), "capture", *args],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stderr is not None
    for line in proc.stderr:  # the log line that says the queue is bound
        if "capturing" in line:
            return proc
    raise AssertionError(f"capture exited {proc.wait()} before it was bound")


@pytest.mark.stack
def test_capture_command_stops_on_sigterm_count_and_duration(stack: Config, tmp_path: Path) -> None:
    exchange = f"capcli{uuid.uuid4().hex[:6]}"
    cfg = write_config(stack, tmp_path / "stacktide.yaml", exchange)
    messages = [CapturedMessage.from_wire("cell1", exchange, "notifications.warn",
                                          json.dumps({"n": i}).encode()) for i in range(20)]
    config = isolated(stack, "capcli")

    out = tmp_path / "sigterm.jsonl"
    proc = start_capture(cfg, str(out))
    publish(config, messages)
    deadline = time.monotonic() + 20
    while (not out.exists() or len(out.read_text().splitlines()) < 20) and time.monotonic() < deadline:
        time.sleep(0.1)  # the file is flushed twice a second while capturing
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "captured=20" in stdout
    lines = [CapturedMessage.from_line(line) for line in out.read_text().splitlines()]
    assert [m.body_bytes() for m in lines] == [m.body_bytes() for m in messages]

    out = tmp_path / "count.jsonl"
    proc = start_capture(cfg, str(out), "--count", "5")
    publish(config, messages)
    stdout, _ = proc.communicate(timeout=30)
    assert (proc.returncode, stdout.strip()) == (0, "captured=5")
    assert len(out.read_text().splitlines()) == 5

    started = time.monotonic()
    proc = start_capture(cfg, "-", "--duration", "1")
    stdout, stderr = proc.communicate(timeout=30)
    assert (proc.returncode, stdout) == (0, "")
    assert "captured=0" in stderr
    assert time.monotonic() - started < 25


@pytest.mark.stack
def test_replay_fails_on_nack_return_and_unknown_cell(stack: Config) -> None:
    config = with_vhost_cell(isolated(stack, "nack"), "blocked")
    conn = pika.BlockingConnection(connection_parameters(config.cells[1]))
    try:
        ch = conn.channel()
        for exchange in ("nova", "lonely"):
            ch.exchange_declare(exchange, exchange_type="topic", durable=False)
        # A queue that refuses every message: the broker nacks what is routed to it.
        ch.queue_declare("full", arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
        ch.queue_bind("full", "nova", "notifications.info")
    finally:
        conn.close()
    one = [CapturedMessage.from_wire("blocked", "nova", "notifications.info", b"{}")]
    with pytest.raises(ReplayError, match="nacked"):
        publish(config, one * 3, "blocked")
    # Without declarations nothing is bound to 'lonely': the broker returns the message.
    lonely = [CapturedMessage.from_wire("blocked", "lonely", "notifications.info", b"{}")]
    with pytest.raises(ReplayError, match="returned as unroutable"):
        publish(config, lonely, "blocked", declare=False)
    with pytest.raises(ReplayError, match="not in the configuration"):
        publish(config, [CapturedMessage.from_wire("nowhere", "nova", "x.info", b"{}")],
                keep_cells=True)
    assert publish(config, lonely * 2, "blocked") == 2  # declared: oslo's default queue takes them


@pytest.mark.stack
def test_replay_speed_limit(stack: Config) -> None:
    config = isolated(stack, "speed")
    messages = [CapturedMessage.from_wire("cell1", "nova", "notifications.debug", b"{}")] * 40
    started = time.monotonic()
    assert publish(config, messages, speed=80.0) == 40
    assert time.monotonic() - started >= 39 / 80


def test_progress_line_only_on_a_terminal() -> None:
    shown = io.StringIO()
    progress = Progress("replay", total=40, stream=shown, enabled=True)
    progress.update(10, force=True)
    progress.close(40)
    assert shown.getvalue().startswith("\rreplay [#######")
    assert "40/40 100%" in shown.getvalue() and shown.getvalue().endswith("\n")
    silent = io.StringIO()  # not a TTY: no progress by default
    Progress("replay", total=40, stream=silent).close(40)
    assert silent.getvalue() == ""


def test_properties_survive_json_both_ways() -> None:
    props = pika.BasicProperties(
        content_type="application/json", delivery_mode=2, timestamp=1_700_000_000,
        headers={"raw": b"\xff\x00", "when": datetime(2024, 1, 2, tzinfo=UTC),
                 "amount": Decimal("1.5"), "nested": [b"a", {"k": 1}]})
    captured = message_properties(props)
    line = CapturedMessage.from_wire("c", "nova", "notifications.info", b"\xc3\x28",
                                     captured).to_line()
    back = CapturedMessage.from_line(line)
    assert back.body_bytes() == b"\xc3\x28"
    assert back.properties["headers"]["nested"] == ["a", {"k": 1}]
    assert back.properties["headers"]["raw"].encode("utf-8", "surrogateescape") == b"\xff\x00"
    assert back.properties["headers"]["amount"] == "1.5"
    replayed = amqp_properties(back)
    assert (replayed.delivery_mode, replayed.timestamp, replayed.content_encoding) == (
        2, 1_700_000_000, "utf-8")  # oslo's encoding filled in where the capture had none
