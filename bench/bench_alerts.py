"""Alert latency: an error published on RabbitMQ -> its alert on ``<prefix>.alerts``.

Starts a stack of its own (ports 5762/9462/9463, a temporary state dir), the bridge in a
thread and ``stacktide jobs run`` (streaming, every job in one Flink job) in a subprocess,
waits until a first alert shows the path is up, then publishes ``--n`` versioned
``instance.create.error`` notifications one at a time, ``--gap`` seconds apart, each in a
request of its own. A consumer on the alerts topic records when each alert arrives (by its
``message_id``). Latency = arrival - the moment just before ``basic_publish``. Prints the
median, p90, p99 and max; asserts nothing.

    .venv/bin/python bench/bench_alerts.py [--n 200] [--gap 0.1] [--checkpoint 10]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pika
import yaml
from confluent_kafka import Consumer

from connectors.bridge import Bridge, connection_parameters
from stacktide import local
from stacktide.config import Config, config_from_mapping

PORTS = {"rabbitmq_port": 5762, "kafka_port": 9462, "kafka_controller_port": 9463}


def config_data(state: Path, checkpoint_s: float) -> dict[str, Any]:
    return {
        "cells": [{"name": "cell1",
                   "transport_url": f"rabbit://guest:guest@127.0.0.1:{PORTS['rabbitmq_port']}/"}],
        "kafka": {"bootstrap_servers": f"127.0.0.1:{PORTS['kafka_port']}", "partitions": 4},
        "local": {"state_dir": str(state), **PORTS},
        "jobs": {"checkpoint_interval_s": checkpoint_s},
        "bridge": {"metrics_port": 0},
    }


def error_body(n: int) -> tuple[str, bytes]:
    """A versioned instance.create.error as nova-compute sends it, oslo 2.0 envelope."""
    mid, instance = str(uuid.uuid4()), str(uuid.uuid4())
    msg = {
        "message_id": mid, "publisher_id": "nova-compute:bench-host", "priority": "ERROR",
        "event_type": "instance.create.error",
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
        "_context_request_id": f"req-{uuid.uuid4()}", "_context_project_id": "bench",
        "payload": {"nova_object.name": "InstanceCreatePayload", "nova_object.namespace": "nova",
                    "nova_object.version": "1.13", "nova_object.data": {
                        "uuid": instance, "state": "building", "host": "bench-host",
                        "fault": {"nova_object.name": "ExceptionPayload",
                                  "nova_object.namespace": "nova", "nova_object.version": "1.1",
                                  "nova_object.data": {
                                      "exception": "BuildAbortException",
                                      "exception_message": f"Build of instance {instance} "
                                                           f"aborted (#{n})",
                                      "function_name": "_build_and_run_instance",
                                      "module_name": "nova.compute.manager", "traceback": ""}}}},
    }
    return mid, json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(msg)}).encode()


class Alerts(threading.Thread):
    """Reads the alerts topic; ``seen[message_id]`` = monotonic arrival time."""

    def __init__(self, config: Config) -> None:
        super().__init__(daemon=True)
        self.config, self.seen, self.done = config, dict[str, float](), threading.Event()

    def run(self) -> None:
        consumer = Consumer({"bootstrap.servers": self.config.kafka.bootstrap_servers,
                             "group.id": f"bench-{uuid.uuid4().hex}",
                             "auto.offset.reset": "latest", "fetch.wait.max.ms": 10})
        consumer.subscribe([self.config.kafka.topic("alerts")])
        try:
            while not self.done.is_set():
                msg = consumer.poll(0.05)
                if msg is None or msg.error() is not None or (value := msg.value()) is None:
                    continue
                self.seen.setdefault(json.loads(value)["message_id"], time.monotonic())
        finally:
            consumer.close()


def wait_for(alerts: Alerts, mid: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while mid not in alerts.seen and time.monotonic() < deadline:
        time.sleep(0.05)
    return mid in alerts.seen


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.1, help="seconds between errors")
    parser.add_argument("--checkpoint", type=float, default=10.0,
                        help="checkpoint interval, s (alerts must not wait for it)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stacktide-bench-") as tmp:
        state = Path(tmp)
        config = config_from_mapping(config_data(state, args.checkpoint), "<bench>", base=state)
        conf_file = state / "bench.yaml"
        conf_file.write_text(yaml.safe_dump(config_data(state, args.checkpoint)))
        local.up(config)
        bridge = Bridge(config)
        bridge.declare()
        bridge_thread = threading.Thread(target=bridge.run, daemon=True)
        bridge_thread.start()
        alerts = Alerts(config)
        alerts.start()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYFLINK", "_PYFLINK"))}
        with (state / "jobs.log").open("wb") as log:
            jobs = subprocess.Popen([sys.executable, "-m", "stacktide.cli", "--config",
                                     str(conf_file), "jobs", "run"], stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True, env=env)
        conn = pika.BlockingConnection(connection_parameters(config.cells[0]))
        channel = conn.channel()
        latencies: list[float] = []
        first: list[float] = []
        last: list[float] = []
        try:
            started = time.monotonic()
            while True:  # the path is up once a first alert comes through
                mid, body = error_body(-1)
                channel.basic_publish("nova", "versioned_notifications.error", body)
                if wait_for(alerts, mid, 5.0):
                    break
                if jobs.poll() is not None or time.monotonic() - started > 300:
                    raise SystemExit((state / "jobs.log").read_text()[-3000:])
            print(f"path up after {time.monotonic() - started:.1f} s; publishing {args.n} errors")
            sent: dict[str, float] = {}
            for n in range(args.n):
                mid, body = error_body(n)
                sent[mid] = time.monotonic()
                channel.basic_publish("nova", "versioned_notifications.error", body)
                time.sleep(args.gap)
            deadline = time.monotonic() + 30
            while not set(sent) <= set(alerts.seen) and time.monotonic() < deadline:
                time.sleep(0.1)
            latencies = [alerts.seen[m] - t for m, t in sent.items() if m in alerts.seen]
            tenth = max(1, len(latencies) // 10)
            first, last = latencies[:tenth], latencies[-tenth:]
            missing = len(sent) - len(latencies)
        finally:
            conn.close()
            os.killpg(jobs.pid, signal.SIGTERM)
            try:
                jobs.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(jobs.pid, signal.SIGKILL)
                jobs.wait()
            bridge.stop.set()
            alerts.done.set()
            bridge_thread.join(10)
            local.down(config)
    ms = [x * 1000 for x in latencies]
    print(f"alert latency, RabbitMQ publish -> {config.kafka.topic('alerts')}, {len(ms)} errors "
          f"({missing} missing), {args.gap:g} s apart, checkpoints every {args.checkpoint:g} s:")
    if ms:
        print(f"  median {statistics.median(ms):7.0f} ms")
        print(f"  p90    {quantile(ms, 0.90):7.0f} ms")
        print(f"  p99    {quantile(ms, 0.99):7.0f} ms")
        print(f"  max    {max(ms):7.0f} ms")
        print(f"  within 2 s: {sum(x <= 2000 for x in ms)}/{len(ms)}")
        print(f"  median of the first tenth {statistics.median(first) * 1000:.0f} ms, of the "
              f"last tenth {statistics.median(last) * 1000:.0f} ms (a growing backlog shows here)")


if __name__ == "__main__":
    main()
