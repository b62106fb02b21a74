"""How fast the bridge drains RabbitMQ into Kafka, next to a raw consumer and oslo.messaging.

One run, one broker (a private stack from ``stacktide.local`` on ports 5722/9422/9423,
stopped at the end), N persistent ~1 KB oslo 2.0 notifications prefilled (untimed)
into a durable queue before each measurement:

- raw: a do-nothing pika consumer (prefetch 1000, ``multiple`` acks every 500);
- oslo: oslo.messaging's notification listener (threading executor, pool queue), the
  library Ceilometer uses, from a venv of its own under the state dir (never .venv);
- bridge: connectors.bridge.Bridge, from start until all N are in Kafka and acked.

The three alternate ``--repeat`` times; medians and ratios are printed, nothing is
asserted. ``--profile`` adds one bridge run under cProfile (top 25 by cumulative and
by own time). See bench/README.md.

    .venv/bin/python bench/bench_bridge.py [--n 50000] [--repeat 3] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pika

from connectors.bridge import Bridge, connection_parameters, queue_name
from connectors.replay import publish
from stacktide.config import Config, config_from_mapping
from stacktide.local import down, up
from stacktide.schema import CapturedMessage

PORTS = {"rabbitmq_port": 5722, "kafka_port": 9422, "kafka_controller_port": 9423}
RAW, OSLO = "bench-raw", "bench-oslo"  # exchange names; the queues are named after them too
ROUTING_KEY = "notifications.info"

OSLO_LISTENER = r'''
import json, sys, threading, time
from oslo_config import cfg
import oslo_messaging

url, exchange, pool, n, conf_file, mode = sys.argv[1:7]
n = int(n)
conf = cfg.ConfigOpts()
conf([], project="bench", default_config_files=[conf_file])
transport = oslo_messaging.get_notification_transport(conf, url=url)
done, lock, count = threading.Event(), threading.Lock(), [0]

class Endpoint:
    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        with lock:
            count[0] += 1
            if count[0] >= n:
                done.set()
        return oslo_messaging.NotificationResult.HANDLED

listener = oslo_messaging.get_notification_listener(
    transport, [oslo_messaging.Target(topic="notifications", exchange=exchange)], [Endpoint()],
    executor="threading", pool=pool)
started = time.perf_counter()
listener.start()  # declares the exchange and the pool queue, bound, before it returns
if mode == "drain":
    done.wait(900)
elapsed = time.perf_counter() - started
listener.stop()
listener.wait()
transport.cleanup()
print(json.dumps({"count": count[0], "seconds": elapsed}))
'''
OSLO_CONF = "[oslo_messaging_rabbit]\n# durable, like the other two queues\namqp_durable_queues = true\n"


def bench_config(state: Path) -> Config:
    data: dict[str, Any] = {
        "cells": [{"name": "cell1", "exchanges": ["nova"],
                   "transport_url": f"rabbit://guest:guest@127.0.0.1:{PORTS['rabbitmq_port']}/"}],
        "kafka": {"bootstrap_servers": f"127.0.0.1:{PORTS['kafka_port']}", "topic_prefix": "bench"},
        "bridge": {"queue_prefix": "bench"},
        "local": {"state_dir": str(state), **PORTS},
    }
    return config_from_mapping(data, "<bench/bench_bridge.py>", base=state)


def notification(size: int = 1024) -> bytes:
    """An oslo 2.0 (messagingv2) compute.instance.update body of *size* bytes, fresh ids."""
    instance = str(uuid.uuid4())
    msg = {"message_id": str(uuid.uuid4()), "publisher_id": "compute.bench-host",
           "event_type": "compute.instance.update", "priority": "INFO",
           "timestamp": "2024-05-01 12:00:00.123456", "_unique_id": uuid.uuid4().hex,
           "_context_request_id": f"req-{uuid.uuid4()}", "_context_project_id": "p" * 32,
           "_context_user_id": "u" * 32,
           "payload": {"instance_id": instance, "tenant_id": "p" * 32, "state": "active",
                       "old_state": "building", "memory_mb": 2048, "vcpus": 2, "padding": ""}}
    body = json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(msg)})
    msg["payload"]["padding"] = "x" * max(0, size - len(body))  # type: ignore[index]
    return json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(msg)}).encode()


def channel_op(config: Config, op: Callable[[Any], Any]) -> Any:
    conn = pika.BlockingConnection(connection_parameters(config.cells[0]))
    try:
        return op(conn.channel())
    finally:
        conn.close()


def depth(config: Config, queue: str) -> int:
    return int(channel_op(config, lambda ch: ch.queue_declare(queue, passive=True))
               .method.message_count)


def prefill(config: Config, exchange: str, queue: str, n: int) -> None:
    """N persistent notifications, confirmed, into *queue* (bound to *exchange*); not timed."""
    props = {"content_type": "application/json", "content_encoding": "utf-8", "delivery_mode": 2}
    messages = (CapturedMessage("cell1", exchange, ROUTING_KEY, notification().decode(), props)
                for _ in range(n))
    publish(config, messages, declare=False, progress=False)
    if (found := depth(config, queue)) != n:
        raise RuntimeError(f"{queue} holds {found} messages after the prefill, not {n}")


def raw_rate(config: Config, n: int) -> float:
    prefill(config, RAW, RAW, n)
    conn = pika.BlockingConnection(connection_parameters(config.cells[0]))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=1000)
    seen = 0

    def on_message(channel: Any, method: Any, _props: Any, _body: bytes) -> None:
        nonlocal seen
        seen += 1
        if seen % 500 == 0 or seen == n:
            channel.basic_ack(method.delivery_tag, multiple=True)
        if seen == n:
            channel.stop_consuming()

    ch.basic_consume(RAW, on_message)
    started = time.perf_counter()
    ch.start_consuming()
    elapsed = time.perf_counter() - started
    conn.close()
    return n / elapsed


def oslo_venv(state: Path) -> Path:
    """A python3.11 venv with oslo.messaging, made once under the bench state dir."""
    venv = state / "oslo-venv"
    python = venv / "bin" / "python"
    ready = python.exists() and subprocess.run(
        [str(python), "-c", "import oslo_messaging"], capture_output=True, check=False).returncode == 0
    if not ready:
        print(f"installing oslo.messaging into {venv} …", flush=True)
        subprocess.run(["python3.11", "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "oslo.messaging"],
                       check=True)
    return python


def oslo(python: Path, state: Path, config: Config, n: int, mode: str) -> dict[str, Any]:
    script, conf = state / "oslo_listener.py", state / "oslo.conf"
    script.write_text(OSLO_LISTENER, encoding="utf-8")
    conf.write_text(OSLO_CONF, encoding="utf-8")
    url = f"rabbit://guest:guest@127.0.0.1:{PORTS['rabbitmq_port']}/"
    done = subprocess.run([str(python), str(script), url, OSLO, OSLO, str(n), str(conf), mode],
                          capture_output=True, text=True, check=True, timeout=1200)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def oslo_rate(python: Path, state: Path, config: Config, n: int) -> float:
    prefill(config, OSLO, OSLO, n)
    result = oslo(python, state, config, n, "drain")
    if result["count"] < n:
        raise RuntimeError(f"the oslo listener handled {result['count']} of {n}")
    return n / float(result["seconds"])


def bridge_rate(config: Config, n: int, profile: bool = False) -> float:
    queue = queue_name(config.bridge.queue_prefix, "cell1", "nova")
    prefill(config, "nova", queue, n)
    bridge = Bridge(config)
    cell = bridge.cells[0]

    def until_forwarded() -> None:
        while cell.stats.forwarded < n and not bridge.stop.is_set():
            time.sleep(0.005)
        bridge.stop.set()  # the bridge then flushes Kafka and acks what it wrote

    watcher = threading.Thread(target=until_forwarded, daemon=True)
    started = time.perf_counter()
    watcher.start()
    if profile:
        profiler = cProfile.Profile()
        profiler.runcall(cell.run)  # the cell's loop in this thread, so cProfile sees it
        show_profile(profiler)
    else:
        bridge.run()
    elapsed = time.perf_counter() - started
    if (left := depth(config, queue)) or cell.stats.forwarded != n:
        raise RuntimeError(f"bridge forwarded {cell.stats.forwarded} of {n}, {left} left")
    return n / elapsed


def show_profile(profiler: cProfile.Profile) -> None:
    for key in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(key).print_stats(25)
        text = out.getvalue()
        print(f"\n--- bridge profile, top 25 by {key} ---\n{text[text.find('   ncalls'):]}")


def declare_queues(config: Config, python: Path | None, state: Path) -> None:
    def raw(ch: Any) -> None:
        ch.exchange_declare(RAW, exchange_type="topic", durable=True)
        ch.queue_declare(RAW, durable=True)
        ch.queue_bind(RAW, RAW, ROUTING_KEY)

    channel_op(config, raw)
    Bridge(config).declare()
    if python is not None:
        oslo(python, state, config, 1, "declare")  # oslo's own exchange and pool queue


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="messages per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement")
    parser.add_argument("--profile", action="store_true", help="one more bridge run, profiled")
    parser.add_argument("--no-oslo", action="store_true", help="skip the oslo.messaging listener")
    parser.add_argument("--state-dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "stacktide-bench",
                        help="stack state (wiped each run) and the oslo venv (kept)")
    args = parser.parse_args()
    state = args.state_dir.resolve()
    config = bench_config(state / "stack")
    python = None if args.no_oslo else oslo_venv(state)
    down(config)  # whatever a crashed run left
    shutil.rmtree(state / "stack", ignore_errors=True)
    up(config)
    try:
        declare_queues(config, python, state)
        bridge_rate(config, 1000)  # warm-up: a new broker's first idempotent producer waits
        rates: dict[str, list[float]] = {"raw": [], "oslo": [], "bridge": []}
        for run in range(1, args.repeat + 1):
            rates["raw"].append(raw_rate(config, args.n))
            if python is not None:
                rates["oslo"].append(oslo_rate(python, state, config, args.n))
            rates["bridge"].append(bridge_rate(config, args.n))
            print(f"run {run}: " + "  ".join(f"{k}={v[-1]:,.0f}/s" for k, v in rates.items() if v),
                  flush=True)
        report(rates, args.n, python)
        if args.profile:
            print(f"\nprofiled bridge run: {bridge_rate(config, args.n, profile=True):,.0f} msg/s "
                  "(slower than unprofiled: cProfile's overhead)")
    finally:
        down(config)


def report(rates: dict[str, list[float]], n: int, python: Path | None) -> None:
    oslo_version = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('oslo.messaging'))"],
        capture_output=True, text=True, check=False).stdout.strip() if python else "-"
    print(f"\nN={n:,} persistent ~1 KB notifications per run; pika {version('pika')}, "
          f"confluent-kafka {version('confluent-kafka')}, oslo.messaging {oslo_version}")
    medians = {k: statistics.median(v) for k, v in rates.items() if v}
    for name, runs in rates.items():
        if runs:
            print(f"{name:<7} median {medians[name]:>9,.0f} msg/s   runs: "
                  + ", ".join(f"{r:,.0f}" for r in runs))
    print(f"bridge/raw  = {medians['bridge'] / medians['raw']:.2f}")
    if "oslo" in medians:
        print(f"bridge/oslo = {medians['bridge'] / medians['oslo']:.2f}")


if __name__ == "__main__":
    main()
