"""How fast the bridge drains RabbitMQ into Kafka, next to a raw consumer and oslo.messaging.

One run, one broker (a private stack from ``stacktide.local`` on ports 5722/9422/9423,
stopped at the end), N persistent ~1 KB oslo 2.0 notifications prefilled (untimed)
into a durable queue before each measurement:

- raw: a do-nothing pika consumer (prefetch 1000, ``multiple`` acks every 500);
- oslo: oslo.messaging's notification listener (threading executor, pool queue), the
  library Ceilometer uses, from a venv of its own under the state dir (never .venv);
- bridge variants: connectors.bridge.Bridge in 1..N worker processes (as
  ``stacktide bridge --workers N`` runs it), from start until all N are in Kafka and
  acked; a variant may run another source tree (a baseline) or other settings.

All alternate ``--repeat`` times; medians, ratios and CPU seconds per process are printed,
nothing is asserted. ``--profile`` adds one bridge run under cProfile. See bench/README.md.

    .venv/bin/python bench/bench_bridge.py [--n 50000] [--repeat 3] [--workers 1 2]
        [--variant NAME:tree=/path,bridge.prefetch=2000,producer.linger.ms=20] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import mmap
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pika

from connectors.bridge import Bridge, connection_parameters, queue_name
from connectors.replay import publish
from stacktide.config import Config, config_from_mapping
from stacktide.local import down, kafka, rabbitmq, up
from stacktide.schema import CapturedMessage

PORTS = {"rabbitmq_port": 5722, "kafka_port": 9422, "kafka_controller_port": 9423}
RAW, OSLO = "bench-raw", "bench-oslo"  # exchange names; the queues are named after them too
ROUTING_KEY = "notifications.info"
ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")

OSLO_LISTENER = r'''
import json, os, sys, threading, time
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
started, cpu = time.perf_counter(), time.process_time()
listener.start()  # declares the exchange and the pool queue, bound, before it returns
if mode == "drain":
    done.wait(900)
elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
listener.stop()
listener.wait()
transport.cleanup()
print(json.dumps({"count": count[0], "seconds": elapsed, "cpu": cpu}))
'''
OSLO_CONF = "[oslo_messaging_rabbit]\n# durable, like the other two queues\namqp_durable_queues = true\n"

# One bridge worker: imports the bridge from *tree*, waits for "go", runs until "stop".
# Shared with the bench through a small mmap'ed file of int64: [go, stop, forwarded...].
WORKER = r'''
import json, mmap, sys, threading, time
from pathlib import Path
tree, data, index, shm, producer, constants = sys.argv[1:7]
sys.path.insert(0, tree)
import importlib
import connectors.bridge as module
from stacktide.config import config_from_mapping
for name, value in json.loads(constants).items():  # experiments: module constants
    owner, _, attribute = name.rpartition(".")
    setattr(importlib.import_module(owner), attribute, value)
overrides = json.loads(producer)
if overrides:
    settings = module.producer_settings
    module.producer_settings = lambda kafka, client: {**settings(kafka, client), **overrides}
config = config_from_mapping(json.loads(data), "<bench worker>", base=Path(tree))
bridge = module.Bridge(config)
cell, i = bridge.cells[0], int(index)
with open(shm, "r+b") as f:
    slots = memoryview(mmap.mmap(f.fileno(), 0)).cast("q")
slots[2 + i] = -1  # ready
while not slots[0]:
    time.sleep(0.0005)

def threads():
    """CPU seconds per thread name (python's own, librdkafka's rdk:*), from /proc."""
    out = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            stat = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = "rdkafka" if name.startswith("rdk:") else name
        out[name] = out.get(name, 0.0) + (int(stat[11]) + int(stat[12])) / 100
    return out

start, last = threads(), {}

def watch():
    global last
    while not bridge.stop.is_set():
        slots[2 + i] = cell.stats.forwarded
        if slots[1]:
            last = threads()  # before the producer closes and its threads are gone
            bridge.stop.set()
        time.sleep(0.002)

threading.Thread(target=watch, daemon=True).start()
cpu = time.process_time()
bridge.run()
ended, cpu = time.monotonic(), time.process_time() - cpu
slots[2 + i] = cell.stats.forwarded
per_thread = {k: round(v - start.get(k, 0.0), 2) for k, v in last.items()}
print(json.dumps({"ended": ended, "cpu": cpu, "forwarded": cell.stats.forwarded, "threads": per_thread}))
'''


@dataclass
class Variant:
    """One way of running the bridge: a source tree, a number of workers, settings."""

    name: str
    tree: Path = ROOT
    workers: int = 1
    bridge: dict[str, Any] = field(default_factory=dict)
    producer: dict[str, Any] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str) -> Variant:
        """``NAME[:tree=PATH,workers=N,bridge.KEY=VALUE,producer.KEY=VALUE,set.MODULE.NAME=VALUE]``."""
        name, _, rest = spec.partition(":")
        variant = cls(name)
        for item in filter(None, rest.split(",")):
            key, _, raw = item.partition("=")
            try:
                value: Any = json.loads(raw)
            except ValueError:
                value = raw
            if key == "tree":
                variant.tree = Path(raw).resolve()
            elif key == "workers":
                variant.workers = int(raw)
            elif key.startswith("bridge."):
                variant.bridge[key[7:]] = value
            elif key.startswith("producer."):
                variant.producer[key[9:]] = value
            elif key.startswith("set."):
                variant.constants[key[4:]] = value
            else:
                raise SystemExit(f"--variant {spec}: unknown key {key!r}")
        return variant


def config_data(state: Path, bridge: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "cells": [{"name": "cell1", "exchanges": ["nova"],
                   "transport_url": f"rabbit://guest:guest@127.0.0.1:{PORTS['rabbitmq_port']}/"}],
        "kafka": {"bootstrap_servers": f"127.0.0.1:{PORTS['kafka_port']}", "topic_prefix": "bench"},
        "bridge": {"queue_prefix": "bench", **(bridge or {})},
        "local": {"state_dir": str(state), **PORTS},
    }


def bench_config(state: Path) -> Config:
    return config_from_mapping(config_data(state), "<bench/bench_bridge.py>", base=state)


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


class Cpu:
    """CPU seconds the brokers (/proc/<pid>/stat) and the whole machine (/proc/stat, all
    cores, busy = not idle nor iowait) used between start() and stop()."""

    def __init__(self, config: Config) -> None:
        self.pids = {"rabbitmq": rabbitmq.running_pid(config), "kafka": kafka.running_pid(config)}
        self.used: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        out = {}
        for name, pid in self.pids.items():
            if pid is not None:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                out[name] = (int(fields[11]) + int(fields[12])) / TICK  # utime + stime
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        out["machine"] = (sum(ticks[:8]) - ticks[3] - ticks[4]) / TICK
        return out

    def start(self) -> None:
        self._start = self._read()

    def stop(self) -> None:
        end = self._read()
        self.used = {k: end[k] - self._start[k] for k in end}


@dataclass
class Run:
    rate: float
    cpu: dict[str, float]
    threads: dict[str, float] = field(default_factory=dict)


def raw_rate(config: Config, n: int) -> Run:
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
    brokers = Cpu(config)
    brokers.start()
    started, cpu = time.perf_counter(), time.process_time()
    ch.start_consuming()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    brokers.stop()
    conn.close()
    return Run(n / elapsed, {"python": cpu, **brokers.used})


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


def oslo(python: Path, state: Path, n: int, mode: str) -> dict[str, Any]:
    script, conf = state / "oslo_listener.py", state / "oslo.conf"
    script.write_text(OSLO_LISTENER, encoding="utf-8")
    conf.write_text(OSLO_CONF, encoding="utf-8")
    url = f"rabbit://guest:guest@127.0.0.1:{PORTS['rabbitmq_port']}/"
    done = subprocess.run([str(python), str(script), url, OSLO, OSLO, str(n), str(conf), mode],
                          capture_output=True, text=True, check=True, timeout=1200)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def oslo_rate(python: Path, state: Path, config: Config, n: int) -> Run:
    prefill(config, OSLO, OSLO, n)
    brokers = Cpu(config)
    brokers.start()
    result = oslo(python, state, n, "drain")
    brokers.stop()
    if result["count"] < n:
        raise RuntimeError(f"the oslo listener handled {result['count']} of {n}")
    return Run(n / float(result["seconds"]), {"python": result["cpu"], **brokers.used})


def bridge_rate(config: Config, state: Path, variant: Variant, n: int) -> Run:
    """Prefill, start the variant's workers, release them together, stop them at N forwarded."""
    queue = queue_name(config.bridge.queue_prefix, "cell1", "nova")
    prefill(config, "nova", queue, n)
    shm = state / "bench-workers.shm"
    shm.write_bytes(bytes(8 * (2 + variant.workers)))
    data = json.dumps(config_data(config.local.state_dir, variant.bridge))
    workers = [subprocess.Popen(
        [sys.executable, "-c", WORKER, str(variant.tree), data, str(i), str(shm),
         json.dumps(variant.producer), json.dumps(variant.constants)],
        stdout=subprocess.PIPE, text=True, cwd=variant.tree)
        for i in range(variant.workers)]
    with shm.open("r+b") as f:
        slots = memoryview(mmap.mmap(f.fileno(), 0)).cast("q")
        while any(slots[2 + i] != -1 for i in range(variant.workers)):
            if any(w.poll() is not None for w in workers):
                raise RuntimeError(f"a worker of {variant.name} exited before starting")
            time.sleep(0.01)
        brokers = Cpu(config)
        brokers.start()
        started = time.monotonic()
        slots[0] = 1  # go
        while sum(max(0, slots[2 + i]) for i in range(variant.workers)) < n:
            if any(w.poll() is not None for w in workers):
                raise RuntimeError(f"a worker of {variant.name} exited early")
            time.sleep(0.002)
        slots[1] = 1  # stop: each flushes Kafka, acks what it wrote and returns
        reports = [json.loads(w.communicate(timeout=120)[0].strip().splitlines()[-1])
                   for w in workers]
        brokers.stop()
        del slots
    elapsed = max(r["ended"] for r in reports) - started
    forwarded = sum(r["forwarded"] for r in reports)
    if (left := depth(config, queue)) or forwarded != n:
        raise RuntimeError(f"{variant.name} forwarded {forwarded} of {n}, {left} left")
    threads: dict[str, float] = {}
    for r in reports:
        for name, seconds in r["threads"].items():
            threads[name] = threads.get(name, 0.0) + seconds
    return Run(n / elapsed, {"python": sum(r["cpu"] for r in reports), **brokers.used}, threads)


def profiled_rate(config: Config, n: int) -> float:
    """One bridge run of this tree with its cell loop in this thread, under cProfile."""
    queue = queue_name(config.bridge.queue_prefix, "cell1", "nova")
    prefill(config, "nova", queue, n)
    bridge = Bridge(config)
    cell = bridge.cells[0]

    def until_forwarded() -> None:
        while cell.stats.forwarded < n and not bridge.stop.is_set():
            time.sleep(0.005)
        bridge.stop.set()

    watcher = threading.Thread(target=until_forwarded, daemon=True)
    started = time.perf_counter()
    watcher.start()
    profiler = cProfile.Profile()
    profiler.runcall(cell.run)
    elapsed = time.perf_counter() - started
    for key in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(key).print_stats(25)
        text = out.getvalue()
        print(f"\n--- bridge profile, top 25 by {key} ---\n{text[text.find('   ncalls'):]}")
    return n / elapsed


def declare_queues(config: Config, python: Path | None, state: Path) -> None:
    def raw(ch: Any) -> None:
        ch.exchange_declare(RAW, exchange_type="topic", durable=True)
        ch.queue_declare(RAW, durable=True)
        ch.queue_bind(RAW, RAW, ROUTING_KEY)

    channel_op(config, raw)
    Bridge(config).declare()
    if python is not None:
        oslo(python, state, 1, "declare")  # oslo's own exchange and pool queue


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="messages per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement")
    parser.add_argument("--workers", type=int, nargs="+", default=[],
                        help="bridge variants with these numbers of worker processes")
    parser.add_argument("--variant", action="append", default=[], type=Variant.parse,
                        metavar="NAME:KEY=VALUE,…", help="more bridge variants (see README)")
    parser.add_argument("--profile", action="store_true", help="one more bridge run, profiled")
    parser.add_argument("--no-oslo", action="store_true", help="skip the oslo.messaging listener")
    parser.add_argument("--state-dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "stacktide-bench",
                        help="stack state (wiped each run) and the oslo venv (kept)")
    args = parser.parse_args()
    variants = [Variant("bridge" if w == 1 else f"bridge-w{w}", workers=w) for w in args.workers]
    variants += args.variant
    variants = variants or [Variant("bridge")]
    state = args.state_dir.resolve()
    config = bench_config(state / "stack")
    python = None if args.no_oslo else oslo_venv(state)
    down(config)  # whatever a crashed run left
    shutil.rmtree(state / "stack", ignore_errors=True)
    up(config)
    try:
        declare_queues(config, python, state)
        bridge_rate(config, state, variants[0], 10_000)  # warm-up: new producer IDs, Kafka's cold JIT
        runs: dict[str, list[Run]] = {"raw": [], "oslo": [], **{v.name: [] for v in variants}}
        for number in range(1, args.repeat + 1):
            runs["raw"].append(raw_rate(config, args.n))
            if python is not None:
                runs["oslo"].append(oslo_rate(python, state, config, args.n))
            for v in variants:
                runs[v.name].append(bridge_rate(config, state, v, args.n))
            print(f"run {number}: " + "  ".join(f"{k}={r[-1].rate:,.0f}/s" for k, r in runs.items() if r),
                  flush=True)
        report(runs, args.n, python, variants)
        if args.profile:
            rate = profiled_rate(config, args.n)
            print(f"\nprofiled bridge run: {rate:,.0f} msg/s (slower than unprofiled: cProfile's overhead)")
    finally:
        down(config)


def report(runs: dict[str, list[Run]], n: int, python: Path | None, variants: list[Variant]) -> None:
    oslo_version = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('oslo.messaging'))"],
        capture_output=True, text=True, check=False).stdout.strip() if python else "-"
    print(f"\nN={n:,} persistent ~1 KB notifications per run; pika {version('pika')}, "
          f"confluent-kafka {version('confluent-kafka')}, orjson {version('orjson')}, "
          f"oslo.messaging {oslo_version}; {os.cpu_count()} CPUs")
    for v in variants:
        if v.tree != ROOT or v.bridge or v.producer or v.constants:
            print(f"  {v.name}: workers={v.workers} tree={v.tree} bridge={v.bridge} "
                  f"producer={v.producer} set={v.constants}")
    medians = {k: statistics.median(r.rate for r in rs) for k, rs in runs.items() if rs}
    print(f"{'':<14}{'median':>9}   {'runs':<26}  CPU s per run (median): python  rabbitmq  kafka"
          f"  machine ({os.cpu_count()} cores)")
    for name, rs in runs.items():
        if rs:
            cpu = {k: statistics.median(r.cpu.get(k, 0.0) for r in rs)
                   for k in ("python", "rabbitmq", "kafka", "machine")}
            busy = statistics.median(r.cpu.get("machine", 0.0) * r.rate / n for r in rs)
            print(f"{name:<14}{medians[name]:>9,.0f}   {', '.join(f'{r.rate:,.0f}' for r in rs):<26}"
                  f"  {cpu['python']:>28.2f}  {cpu['rabbitmq']:>8.2f}  {cpu['kafka']:>5.2f}"
                  f"  {cpu['machine']:>7.2f} = {busy:.2f} cores busy")
    for v in variants:
        names = sorted({t for r in runs[v.name] for t in r.threads})
        print(f"{v.name} worker threads, CPU s per run (median): " + ", ".join(
            f"{t} {statistics.median(r.threads.get(t, 0.0) for r in runs[v.name]):.2f}" for t in names))
    for v in variants:
        line = f"{v.name}/raw = {medians[v.name] / medians['raw']:.2f}"
        if "oslo" in medians:
            line += f"   {v.name}/oslo = {medians[v.name] / medians['oslo']:.2f}"
        print(line)


if __name__ == "__main__":
    main()
