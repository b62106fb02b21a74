"""The jobs stopped mid-stream and started again end with the tables of an undisturbed run.

One bounded run over simulated nova traffic gives the tables to match. Then the same traffic
goes to a streaming ``stacktide jobs run`` (a child process, as an operator starts it) in two
parts, and the run is stopped:

- SIGKILL right after the second part was written: the job dies mid-stream and the next run
  resumes from its last checkpoint, reading again what came after it;
- SIGTERM once every job has read (and committed) everything: the job stops with a
  savepoint, and the next run resumes from it with nothing left to read. What a run knows
  only from events it read (the newest event time, which ends the usage of every live
  instance at the end of a bounded run) must come from that savepoint.

Either way a bounded ``run_jobs`` then finishes the work, and the current rows of every
table the keyed jobs write, their history and the archive equal the undisturbed run's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jobs.command import JOB_NAME, caught_up, end_offsets, run_jobs
from jobs.environment import latest_checkpoint, restore_point, stopped_savepoints
from stacktide.config import Config
from stacktide.schema import Envelope
from stacktide.simulate.cloud import Params
from stacktide.simulate.delivery import Delivery
from stacktide.simulate.traffic import Traffic, generate
from tests.helpers import (
    check_usage,
    committed,
    current_rows,
    difference,
    envelopes,
    jobs_running,
    produce,
    setup,
    stop_jobs,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.stack

@pytest.fixture(scope="module")
def undisturbed(stack: Config) -> tuple[Traffic, list[Envelope], dict[str, Any]]:
    """Traffic for the restart tests and the tables of one undisturbed bounded run over it."""
    traffic = generate(Params(seed=11, instances=60, hours=48), "legacy",
                       Delivery(11, reorder_window_s=60.0, delay_fraction=0.03,
                                delay_hours=(1.0, 3.0), duplicate_fraction=0.05), corrupt=5)
    items = envelopes(traffic)
    calm = setup(stack, "calm", settle_hours=4)
    produce(calm, items)
    assert run_jobs(calm, bounded=True, fresh=True)
    check_usage(calm, traffic, items)
    return traffic, items, current_rows(calm)


@pytest.mark.parametrize("stop", ["SIGKILL", "SIGTERM"])
def test_stopped_mid_stream_resumes_with_the_same_tables(
        stack: Config, tmp_path: Path, stop: str,
        undisturbed: tuple[Traffic, list[Envelope], dict[str, Any]]) -> None:
    traffic, items, want = undisturbed
    hurt = setup(stack, "hurt", settle_hours=4, state_dir=tmp_path / "state")
    flink = tmp_path / "state" / "flink"
    cut = len(items) * 3 // 5
    produce(hurt, items[:cut])
    log = tmp_path / "jobs.log"
    with jobs_running(write_config(hurt, tmp_path / "hurt.yaml"), log) as job:
        first = len({e.message_id for e in items[:cut]})
        wait_for(lambda: committed(hurt) >= first, job, log, 300)  # through the first part
        produce(hurt, items[cut:])
        if stop == "SIGTERM":
            ends = end_offsets(hurt)
            wait_for(lambda: caught_up(hurt, ends), job, log, 300)  # read it all
            stop_jobs(job, log, 120)  # the client alone: it stops the job itself
    text = log.read_text()
    if stop == "SIGKILL":
        assert committed(hurt) < len({e.message_id for e in items}), text[-3000:]  # mid-stream
        assert latest_checkpoint(flink / "checkpoints" / JOB_NAME) == restore_point(flink, JOB_NAME)
    else:
        assert "stopped with savepoint" in text, text[-3000:]
        point = restore_point(flink, JOB_NAME)
        assert point is not None and point.parent == stopped_savepoints(flink, JOB_NAME)
    assert run_jobs(hurt, bounded=True)  # resumes from that point

    check_usage(hurt, traffic, items)
    got = current_rows(hurt)
    for part in want:
        assert got[part] == want[part], (part, difference(got[part], want[part]))


def test_caught_up_waits_for_every_topic_the_jobs_read(stack: Config) -> None:
    """A resumed bounded run stops once every job's group committed the end of each topic it
    reads: samples too, not only notifications."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    from jobs.command import readers

    config = setup(stack, "caught", settle_hours=1)
    producer = Producer({"bootstrap.servers": config.kafka.bootstrap_servers})
    for name in ("notifications", "samples"):
        for i in range(5):
            producer.produce(config.kafka.topic(name), key=b"k", value=b"{}", partition=i % 2)
    assert producer.flush(30) == 0
    ends = end_offsets(config)
    assert sum(ends["samples"].values()) == 5 and sum(ends["notifications"].values()) == 5

    def commit(name: str, group: str, at_end: bool) -> None:
        consumer = Consumer({"bootstrap.servers": config.kafka.bootstrap_servers,
                             "group.id": group, "enable.auto.commit": False})
        try:
            consumer.commit(offsets=[TopicPartition(config.kafka.topic(name), p, end if at_end else 0)
                                     for p, end in ends[name].items()], asynchronous=False)
        finally:
            consumer.close()

    for name, groups in readers().items():
        for group in groups:
            commit(name, group, at_end=name == "notifications")
    assert not caught_up(config, ends)  # the samples job is behind
    for group in readers()["samples"]:
        commit("samples", group, at_end=True)
    assert caught_up(config, ends)
