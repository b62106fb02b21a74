"""``stacktide bridge``: run the bridge for every configured cell until SIGTERM.

On SIGTERM or SIGINT the bridge stops consuming, waits for Kafka to confirm what
it sent (``bridge.shutdown_timeout_s`` at most), acks that, and closes: nothing is
lost and, normally, nothing repeats. What was not confirmed stays unacked in
RabbitMQ and is delivered again to the next bridge. With ``bridge.metrics_port``
set, ``/metrics`` and ``/healthz`` are served for as long as the bridge runs.
``--create-topics`` first creates the Kafka topics as ``stacktide local up`` does (a new
deployment's set-up step, with ``--declare-only``).

``--workers N`` (N > 1) runs N worker processes, each a whole bridge over the same
config: replicas sharing the same queues, which RabbitMQ already balances (one
Python process tops out near one core; see bench/README.md). The parent only
supervises: it forwards SIGTERM/SIGINT to the workers, waits for them, and exits
non-zero as soon as one dies unexpectedly (after stopping the others, whose unacked
messages go back to the queues). Worker *i* serves its metrics on
``bridge.metrics_port + i``: every worker counts only what it forwarded, so each is
a scrape target of its own (one port would show a fraction of the traffic).
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Any

from stacktide.config import Config
from stacktide.transport import TransportURLError

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--idle-exit", type=float, default=None, metavar="SECONDS",
        help="stop once no message arrived for this long (replays, tests)",
    )
    parser.add_argument(
        "--declare-only", action="store_true",
        help="declare the bridge's queues and bindings on every cell, then exit",
    )
    parser.add_argument(
        "--create-topics", action="store_true",
        help="first create the Kafka topics that do not exist yet (kafka.partitions partitions, "
             "16 MiB messages); with --declare-only, the set-up step of a new deployment",
    )
    parser.add_argument(
        "--workers", type=int, default=None, metavar="N",
        help="run N bridge processes sharing the queues (default: bridge.workers, else 1)",
    )
    parser.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)


def workers(args: argparse.Namespace, config: Config) -> int:
    """``--workers``, else the config's ``bridge.workers`` (when the config has it), else 1."""
    if args.workers is not None:
        return int(args.workers)
    return int(getattr(config.bridge, "workers", 1))


def run(args: argparse.Namespace, config: Config) -> int:
    from connectors.bridge import Bridge

    if args.create_topics:
        create_topics(config)
    if not config.cells:
        if config.udp.port:
            return run_udp_only(args, config)
        log.error("no cells configured in %s", config.source)
        return 2
    try:
        bridge = Bridge(config)  # reads the cells' TLS files: a bad one stops start-up here
    except TransportURLError as exc:
        log.error("event=bad_transport config=%s error=%s", config.source, exc)
        return 2
    if args.declare_only:
        # A missing exchange shows as a channel closed by the broker, which pika logs as a
        # warning; declare() then creates the exchange, as oslo.messaging would.
        logging.getLogger("pika").setLevel(logging.ERROR)
        bridge.declare()
        return 0
    n = workers(args, config)
    if n < 1:
        log.error("event=bad_workers workers=%d: at least 1", n)
        return 2
    if n > 1:
        return supervise(args, config, n)

    # pika logs each failed connection attempt with a traceback at ERROR; the bridge's own
    # event=disconnected line already names the cell, the reason and the next retry.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    index = args.worker_index or 0  # set when a supervisor started this process
    if args.worker_index is not None:
        _tag_logs(index)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("event=stopping signal=%s", signal.Signals(signum).name)
        bridge.stop.set()

    b = config.bridge
    if b.metrics_port:
        port = b.metrics_port + index
        try:
            bridge.serve(port=port)
        except OSError as exc:  # the port is taken: say so rather than run unobservable
            log.error("event=metrics_unavailable host=%s port=%d error=%s", b.metrics_host, port, exc)
            return 2
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    udp = start_udp(config) if config.udp.port and index == 0 else None
    try:
        bridge.run(idle_exit=args.idle_exit)
    finally:
        if udp is not None:
            udp.stop()
    for cell in bridge.cells:
        s = cell.stats
        print(f"cell={cell.cell.name} received={s.received} forwarded={s.forwarded} "
              f"dead_lettered={s.dead_lettered}", flush=True)
    return 0


def create_topics(config: Config) -> None:
    """The topics the bridge writes and the jobs read, as the embedded stack creates them.
    Kafka would create a missing topic on the first write, but with the broker's defaults
    (one partition, 1 MB messages), and the jobs' sources refuse a topic that is absent."""
    from stacktide.local.kafka import ensure_topics

    topics = ensure_topics(config)
    log.info("event=topics_ready bootstrap=%s topics=%s", config.kafka.bootstrap_servers,
             ",".join(topics))


def start_udp(config: Config) -> Any:
    """The statsd receiver of the ``udp`` section, producing to ``<prefix>.samples``."""
    from connectors.udp import SampleProducer, UdpReceiver

    producer = SampleProducer(config.kafka, "stacktide-bridge-udp")
    return UdpReceiver(config.udp, producer, close=producer.close).start()


def run_udp_only(args: argparse.Namespace, config: Config) -> int:
    """A bridge with a ``udp`` section and no cells: the receiver alone, until SIGTERM."""
    udp = start_udp(config)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("event=stopping signal=%s", signal.Signals(signum).name)
        udp.stop_event.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    last, quiet_since = -1, time.monotonic()
    while not udp.stop_event.wait(0.5):
        lines = udp.aggregator.stats.lines
        if lines != last:
            last, quiet_since = lines, time.monotonic()
        elif args.idle_exit is not None and time.monotonic() - quiet_since > args.idle_exit:
            break
    udp.stop()
    s = udp.aggregator.stats
    print(f"udp datagrams={s.datagrams} lines={s.lines} malformed={s.malformed} records={s.records}",
          flush=True)
    return 0


def _tag_logs(index: int) -> None:
    """Worker processes share the parent's stderr: their lines end with ``worker=<i>``."""

    def tag(record: logging.LogRecord) -> bool:
        record.msg = f"{record.msg} worker={index}"
        return True

    for handler in logging.getLogger().handlers:
        handler.addFilter(tag)


def supervise(args: argparse.Namespace, config: Config, n: int) -> int:
    """Start *n* workers and wait for them; forward SIGTERM/SIGINT; fail if one dies."""
    base = [sys.executable, "-m", "stacktide.cli", "--config", config.source,
            "--log-level", getattr(args, "log_level", "INFO"), "bridge", "--workers", "1"]
    if args.idle_exit is not None:
        base += ["--idle-exit", str(args.idle_exit)]
    procs: list[subprocess.Popen[bytes]] = []
    stopping: list[int] = []  # the signal being forwarded, once one came

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("event=stopping signal=%s workers=%d", signal.Signals(signum).name, len(procs))
        stopping.append(signum)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for i in range(n):
        if stopping:  # a signal came while starting: start no more
            break
        procs.append(subprocess.Popen([*base, "--worker-index", str(i)]))
        log.info("event=worker_started worker=%d pid=%d", i, procs[-1].pid)
    failed: int | None = None
    while any(p.poll() is None for p in procs):
        for i, p in enumerate(procs):
            code = p.poll()
            if code not in (None, 0) and failed is None:
                log.error("event=worker_died worker=%d pid=%d code=%d: stopping the others",
                          i, p.pid, code)
                failed = code
                _stop(procs, config.bridge.shutdown_timeout_s + 30)
        time.sleep(0.1)
    codes = [p.returncode for p in procs]
    if failed is None and any(codes):
        failed = next(c for c in codes if c)
        log.error("event=worker_failed codes=%s", codes)
    log.info("event=workers_exited codes=%s", codes)
    if failed is None:
        return 0
    return failed if failed > 0 else 1


def _stop(procs: list[subprocess.Popen[bytes]], timeout_s: float) -> None:
    """SIGTERM every live worker, and SIGKILL those still there after *timeout_s*."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + timeout_s
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("event=worker_killed pid=%d: ignored SIGTERM for %.0f s", p.pid, timeout_s)
            p.kill()
            p.wait()
