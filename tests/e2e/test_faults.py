"""Five faults while simulated nova traffic flows the whole path, and the tables come out as an
undisturbed run's: nothing missing, nothing twice, usage exact.

The scenario is :func:`tests.faults.run_faults` (the bridge SIGKILLed, the Flink
TaskManager SIGKILLed twice, RabbitMQ and Kafka restarted), on a stack of the module's own
(``fault_stack``) with a standalone Flink cluster of its own, over a few thousand
notifications of one cell, published through RabbitMQ and the real bridge; the jobs are
submitted to the cluster with ``stacktide jobs submit``. The undisturbed run is a bounded
run of the jobs over the same traffic written straight to Kafka on the session stack.
``bench/bench_faults.py`` runs the same scenario over 100,000 notifications and more. The
recovery times print with ``-s``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from jobs.command import run_jobs
from stacktide.config import Config
from stacktide.local.flink_cluster import FlinkCluster
from stacktide.simulate.cloud import Params
from stacktide.simulate.delivery import Delivery
from stacktide.simulate.traffic import generate
from tests.faults import ClusterJobs, compare, report, run_faults
from tests.helpers import check_usage, current_rows, envelopes, produce, setup

pytestmark = pytest.mark.stack

FAULTS = ("bridge SIGKILL", "TaskManager SIGKILL #1", "RabbitMQ restart", "Kafka restart",
          "TaskManager SIGKILL #2")


def test_five_faults_lose_and_repeat_nothing(stack: Config, fault_stack: Config,
                                             tmp_path: Path) -> None:
    traffic = generate(Params(seed=11, instances=60, hours=48, cells=("cell1",)), "legacy",
                       Delivery(11, reorder_window_s=60.0, delay_fraction=0.03,
                                delay_hours=(1.0, 3.0), duplicate_fraction=0.05),
                       corrupt=5, failures=3)
    calm = setup(stack, "calm", settle_hours=4, state_dir=tmp_path / "calm")
    produce(calm, envelopes(traffic))
    assert run_jobs(calm, bounded=True, fresh=True)
    check_usage(calm, traffic)
    undisturbed = current_rows(calm)

    hurt = setup(fault_stack, "faults", settle_hours=4, state_dir=tmp_path / "hurt")
    # The services' exchanges durable (oslo's amqp_durable_queues = true): the bridge's
    # bindings survive the RabbitMQ restart (docs/bridge.md).
    hurt = dataclasses.replace(hurt, cells=tuple(dataclasses.replace(c, durable_exchanges=True)
                                                 for c in hurt.cells))
    cluster = FlinkCluster(fault_stack).up()
    try:
        jobs = ClusterJobs(cluster, tmp_path / "stacktide.yaml", tmp_path / "jobs.log")
        recoveries = run_faults(hurt, fault_stack, traffic, jobs, tmp_path, speed=100.0,
                                timeout_s=600.0)
    finally:
        cluster.down()
    diffs = compare(hurt, undisturbed, traffic)
    print(f"\n{len(traffic.messages)} notifications, {jobs.name}\n{report(recoveries, diffs)}")

    assert [r.fault for r in recoveries] == list(FAULTS)
    assert all(r.moving_s > 0 for r in recoveries)
    assert all(r.running_s is not None for r in recoveries if "TaskManager" in r.fault)
    assert {part: d for part, d in diffs.items() if d.missing or d.unexpected or d.duplicated
            } == {}
    check_usage(hurt, traffic)
    assert len(undisturbed["archive"]) == len({m.message_id for _, m in traffic.messages})
