"""Recovery from five faults with 100,000+ simulated notifications flowing the whole path, and
the tables against an undisturbed run: rows missing, rows duplicated, usage differences.

Starts a stack of its own (ports 5772/9472/9473, a state dir of its own, wiped at start),
simulates a nova cloud of one cell (legacy notifications, reordered, some late, some
repeated, some exists corrupted, some failing requests), then:

- the undisturbed run: the traffic written straight to Kafka (what the bridge would write)
  and one bounded ``stacktide jobs run --fresh`` over it, in a namespace of its own;
- the faulted run: :func:`tests.faults.run_faults`, the traffic published on RabbitMQ
  (``stacktide replay``'s publisher, gated so each broker fault happens mid-publishing)
  through a ``stacktide bridge`` process to the streaming jobs, submitted to a standalone
  Flink cluster (``--jobs cluster``, ports 8472/6472) or run by ``stacktide jobs run``
  (``--jobs minicluster``), while the bridge is SIGKILLed, the TaskManager (or the whole
  ``jobs run`` process) SIGKILLed twice, RabbitMQ and Kafka restarted; each fault waits for
  the previous one's recovery.

Prints each fault's recovery time (fault -> the path moving again) and, per table, the rows
the faulted run misses, holds that the undisturbed run does not, and holds twice.
``--reference parallel`` runs the undisturbed run (a child process) during the faulted one:
half the wall time on a 2-core machine, recovery times measured under that extra load.

    .venv/bin/python bench/bench_faults.py [--instances 1800] [--hours 60] [--speed 1000]
        [--reference before|parallel] [--jobs cluster|minicluster] [--no-durable-exchanges]
        [--state-dir /tmp/stacktide-bench-faults]

Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.faults, tests.helpers

from jobs.command import run_jobs
from stacktide import local
from stacktide.config import Config, config_from_mapping
from stacktide.local.flink_cluster import FlinkCluster
from stacktide.simulate.cloud import Params
from stacktide.simulate.delivery import Delivery
from stacktide.simulate.traffic import generate
from tests.faults import (
    STACKTIDE,
    ClusterJobs,
    Jobs,
    MiniClusterJobs,
    compare,
    log_tail,
    report,
    run_faults,
)
from tests.helpers import (
    current_rows,
    envelopes,
    fresh_environment,
    produce,
    setup,
    write_config,
)

PORTS = {"rabbitmq_port": 5772, "kafka_port": 9472, "kafka_controller_port": 9473,
         "flink_rest_port": 8472, "flink_rpc_port": 6472}


def stack_config(state: Path, durable_exchanges: bool) -> Config:
    data = {
        "cells": [{"name": "cell1",
                   "transport_url": f"rabbit://guest:guest@127.0.0.1:{PORTS['rabbitmq_port']}/",
                   "durable_exchanges": durable_exchanges}],
        "kafka": {"bootstrap_servers": f"127.0.0.1:{PORTS['kafka_port']}", "partitions": 4},
        "local": {"state_dir": str(state), **PORTS},
    }
    return config_from_mapping(data, "<bench>", base=state)


def run_config(stack: Config, name: str, state: Path, checkpoint_s: float) -> Config:
    config = setup(stack, name, settle_hours=4, state_dir=state)
    return dataclasses.replace(
        config, jobs=dataclasses.replace(config.jobs, checkpoint_interval_s=checkpoint_s))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=1800)
    parser.add_argument("--hours", type=int, default=60)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--speed", type=float, default=1000.0, help="publishing, messages/s")
    parser.add_argument("--checkpoint", type=float, default=10.0, help="seconds between checkpoints")
    parser.add_argument("--reference", choices=["before", "parallel"], default="before")
    parser.add_argument("--jobs", choices=["cluster", "minicluster"], default="cluster",
                        help="a standalone Flink cluster (the TaskManager is killed) or "
                             "stacktide jobs run (its whole process is killed)")
    parser.add_argument("--durable-exchanges", action=argparse.BooleanOptionalAction,
                        default=True, help="the simulated services' exchanges durable (oslo's "
                        "amqp_durable_queues = true); without, the RabbitMQ restart loses traffic")
    parser.add_argument("--timeout", type=float, default=5400.0, help="each wait, seconds")
    parser.add_argument("--state-dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "stacktide-bench-faults")
    args = parser.parse_args()

    shutil.rmtree(args.state_dir, ignore_errors=True)
    stack = stack_config(args.state_dir / "stack", args.durable_exchanges)
    local.down(stack)
    began = time.monotonic()
    traffic = generate(Params(seed=args.seed, instances=args.instances, hours=args.hours,
                              cells=("cell1",)), "legacy",
                       Delivery(args.seed, reorder_window_s=60.0, delay_fraction=0.02,
                                delay_hours=(1.0, 3.0), duplicate_fraction=0.02),
                       corrupt=20, failures=20)
    n = len(traffic.messages)
    print(f"{n:,} notifications ({len({m.message_id for _, m in traffic.messages}):,} distinct), "
          f"{args.instances} instances x {args.hours} h, simulated in {time.monotonic() - began:.0f} s",
          flush=True)
    local.up(stack)
    cluster = FlinkCluster(stack)
    try:
        calm = run_config(stack, "calm", args.state_dir / "calm", args.checkpoint)
        produce(calm, envelopes(traffic))
        reference = None
        if args.reference == "before":
            t = time.monotonic()
            run_jobs(calm, bounded=True, fresh=True)
            print(f"undisturbed bounded run: {time.monotonic() - t:.0f} s "
                  f"({n / (time.monotonic() - t):.0f} notifications/s)", flush=True)
        else:
            calm_file = write_config(calm, args.state_dir / "calm.yaml")
            reference = subprocess.Popen(
                [str(STACKTIDE), "--config", str(calm_file), "jobs", "run", "--bounded", "--fresh"],
                stdout=(args.state_dir / "calm.log").open("wb"), stderr=subprocess.STDOUT,
                env=fresh_environment())

        hurt = run_config(stack, "faults", args.state_dir / "hurt", args.checkpoint)
        work = args.state_dir / "work"
        work.mkdir(parents=True)
        jobs: Jobs = MiniClusterJobs(work / "stacktide.yaml", work / "jobs.log")
        if args.jobs == "cluster":
            jobs = ClusterJobs(cluster.up(), work / "stacktide.yaml", work / "jobs.log")
        t = time.monotonic()
        recoveries = run_faults(hurt, stack, traffic, jobs, work, speed=args.speed,
                                timeout_s=args.timeout, say=lambda s: print(s, flush=True))
        print(f"faulted run: {time.monotonic() - t:.0f} s", flush=True)
        if reference is not None:
            code = reference.wait()
            print(f"undisturbed bounded run (in parallel) ended with {code} after "
                  f"{time.monotonic() - t:.0f} s", flush=True)
            if code != 0:
                print(log_tail(args.state_dir / "calm.log"))
                return
        diffs = compare(hurt, current_rows(calm), traffic)
        print(f"\n{n:,} notifications, jobs on the {jobs.name}, checkpoints every "
              f"{args.checkpoint:g} s, reference run {args.reference}, durable exchanges "
              f"{args.durable_exchanges}\n{report(recoveries, diffs)}")
    finally:
        cluster.down()
        local.down(stack)


if __name__ == "__main__":
    main()
