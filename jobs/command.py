"""``stacktide jobs run``: every job in one Flink pipeline, streaming until interrupted.

``--bounded`` reads each topic up to the offsets current at start and then ends
(with a final checkpoint, hence a final Iceberg commit): what the demo and the
end-to-end tests use. An interrupted streaming run keeps its last checkpoint,
and the next run resumes from it, so the tables neither miss nor repeat rows.

Flink discards the checkpoints of a job that finished, so a run after a bounded run
starts without state: the archive from its consumer group's offsets, the keyed instance
job from the topic's earliest offset (its state is a function of every instance's whole
history). A bounded run that does resume from a checkpoint cannot simply stop at the end
offsets: a restored Kafka source keeps the stopping offsets of the run that checkpointed
it (none, when that run streamed). It streams instead until both consumer groups have
committed the offsets the topic had at start (a checkpoint holds everything before them),
then stops with a savepoint at the end of event time: the same ending as a bounded input.

A streaming run stopped by SIGTERM or Ctrl-C stops with a savepoint (state and Kafka offsets
as of that instant, no timer forced) and the next run resumes from it, the way an operator
upgrades or moves the jobs; should the savepoint fail, the job is cancelled and the next run
resumes from the last checkpoint instead.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from stacktide.config import Config

log = logging.getLogger(__name__)

JOB_NAME = "stacktide-jobs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["run", "submit", "stop"],
                        help="run: on the local MiniCluster; submit: to a Flink cluster "
                             "(detached); stop: the submitted jobs, with a savepoint")
    parser.add_argument(
        "--bounded", action="store_true", help="run: stop at the topics' current end offsets"
    )
    parser.add_argument(
        "--fresh", action="store_true",
        help="run: ignore retained checkpoints: the archive starts from its group offsets, the "
             "instance job from the earliest offset"
    )
    parser.add_argument("--jobmanager", metavar="HOST:PORT",
                        help="submit, stop: the cluster's REST API (default: jobs.jobmanager)")
    parser.add_argument("--from-savepoint", metavar="PATH",
                        help="submit: start from this savepoint (what 'jobs stop' printed)")
    parser.add_argument("--allow-non-restored-state", action="store_true",
                        help="submit: accept a savepoint holding state no operator claims")
    parser.add_argument("--pyexec", metavar="PYTHON",
                        help="submit: the Python of the Python workers, a path valid on the "
                             "TaskManagers (default: this venv's python)")
    parser.add_argument("--pyarch", metavar="ARCHIVE",
                        help="submit: a zipped venv shipped with the job (ARCHIVE.zip#venv; "
                             "then --pyexec venv/bin/python)")
    parser.add_argument("--checkpoint-dir", metavar="DIR",
                        help="submit: where checkpoints go, a path or URI every cluster machine "
                             "reaches (default: <local.state_dir>/flink/checkpoints/<job>)")
    parser.add_argument("--savepoint-dir", metavar="DIR",
                        help="stop: where the savepoint goes (default: the cluster's "
                             "savepoint folder)")
    parser.add_argument("--drain", action="store_true",
                        help="stop: end event time first, firing every timer (a final stop)")
    parser.add_argument("--job-id", help="stop: this job rather than the running stacktide-jobs")


ACTION_FLAGS = {
    "run": {"bounded", "fresh"},
    "submit": {"jobmanager", "from_savepoint", "allow_non_restored_state", "pyexec", "pyarch",
               "checkpoint_dir"},
    "stop": {"jobmanager", "savepoint_dir", "drain", "job_id"},
}


def run(args: argparse.Namespace, config: Config) -> int:
    given = {flag for flags in ACTION_FLAGS.values() for flag in flags if getattr(args, flag)}
    wrong = sorted(given - ACTION_FLAGS[args.action])
    if wrong:
        print(f"--{wrong[0].replace('_', '-')} does not apply to 'stacktide jobs {args.action}'",
              file=sys.stderr)
        return 2
    if args.action == "submit":
        from jobs.submit import submit_jobs

        job_id = submit_jobs(config, jobmanager=args.jobmanager, python_executable=args.pyexec,
                             python_archives=args.pyarch, from_savepoint=args.from_savepoint,
                             allow_non_restored_state=args.allow_non_restored_state,
                             checkpoint_dir=args.checkpoint_dir)
        print(job_id)
        return 0
    if args.action == "stop":
        from jobs.submit import stop_jobs

        print(stop_jobs(config, jobmanager=args.jobmanager, savepoint_dir=args.savepoint_dir,
                        drain=args.drain, job_id=args.job_id))
        return 0
    keep_own_logging()
    result = run_jobs(config, bounded=args.bounded, fresh=args.fresh, handle_signals=True)
    return 0 if result else 1


OWN_LOGGERS = ("stacktide", "jobs", "connectors")


def keep_own_logging() -> None:
    """Give the project's loggers the root logger's handlers, and stop them propagating.
    PyFlink's in-process (loopback) Python workers replace the root logger's handlers with
    one that sends to Flink's log once the job starts: ``jobs run`` would fall silent from
    then on, its savepoint and finish lines included."""
    handlers = list(logging.getLogger().handlers)
    for name in OWN_LOGGERS:
        own = logging.getLogger(name)
        own.setLevel(logging.getLogger().level)
        own.handlers, own.propagate = handlers, False


# Set by a signal; the wait loop stops the job at its next turn. A KeyboardInterrupt raised
# inside a Py4J call instead would leave the gateway connection half-read.
STOP = threading.Event()


def _request_stop(signum: int, frame: Any) -> None:
    log.info("%s: stopping the jobs with a savepoint", signal.Signals(signum).name)
    STOP.set()


def _wait(result: Any, until: Any = None) -> None:
    """Until the job ends (or *until*() holds); KeyboardInterrupt once a stop was requested."""
    while not result.done():
        if STOP.is_set():
            raise KeyboardInterrupt
        if until is not None and until():
            return
        time.sleep(0.5)


def run_jobs(config: Config, *, bounded: bool, fresh: bool = False,
             flink_options: Mapping[str, str | None] | None = None,
             handle_signals: bool = False) -> bool:
    """Run the jobs of :func:`build_jobs` as one Flink job on the local MiniCluster (or where
    PyFlink's ``SUBMIT_ARGS`` send it), resuming from the last checkpoint or stop savepoint.

    *flink_options* override Flink settings (the benchmark sets Python execution mode and
    bundle sizes there).
    """
    from jobs.environment import (
        drained_savepoints,
        restore_point,
        stopped_savepoints,
        submit,
    )

    flink = config.local.state_dir / "flink"
    restore = None if fresh else restore_point(flink, JOB_NAME)
    catch_up = end_offsets(config) if bounded and restore is not None else None
    env = build_jobs(config, bounded=bounded and catch_up is None, restore=restore,
                     flink_options=flink_options)
    started = time.monotonic()
    client = submit(env, JOB_NAME)
    log.info("job submitted id=%s bounded=%s", client.get_job_id(), bounded)
    result = client.get_job_execution_result()
    if handle_signals:  # once the JVM runs: PyFlink's gateway start replaces these handlers
        for signum in (signal.SIGTERM, signal.SIGINT):  # a service manager's stop, or Ctrl-C
            signal.signal(signum, _request_stop)
    try:
        if catch_up is not None:
            _wait(result, until=CatchUp(config, catch_up))
            log.info("caught up with offsets %s: stopping at the end of event time", catch_up)
            if not result.done():
                stop_when_running(client, drained_savepoints(flink, JOB_NAME), result)
        _wait(result)
        result.result()  # raises what failed the job
    except KeyboardInterrupt:
        try:
            path = stop_with_savepoint(client, stopped_savepoints(flink, JOB_NAME), drain=False)
            log.info("stopped with savepoint %s: the next run resumes from it", path)
        except Exception as exc:  # any failure: fall back to the last checkpoint
            log.warning("savepoint failed (%s): cancelling; the next run resumes from the last "
                        "checkpoint", exc)
            client.cancel().result()
        return True
    log.info("jobs finished in %.1f s", time.monotonic() - started)
    return True


def build_jobs(config: Config, *, bounded: bool, restore: Path | None,
               flink_options: Mapping[str, str | None] | None = None) -> Any:
    """Create (or widen) the tables, then build the archive, the keyed instance and request
    jobs and the samples job in one DataStream environment, and return it: the one job graph
    that ``jobs run``, ``jobs submit`` and ``flink run -py jobs/main.py`` each execute.

    The archive is SQL in the statement set; the keyed jobs are DataStreams whose outputs are
    inserted by the same statement set, attached to the DataStream environment: one job
    graph, one checkpoint for all. Without *restore* the keyed jobs read their topic from the
    earliest offset (their state is a function of each key's whole history).
    """
    from jobs import host_samples, instance_state, notifications, request_state
    from jobs.environment import JobJars, create_stream_env
    from stacktide.catalog import (
        add_missing_columns,
        align_identifier_fields,
        ensure_table,
        load_catalog,
    )
    from stacktide.local.jars import ensure_jars, pipeline_jars
    from stacktide.local.operators import operator_jar
    from stacktide.schema import TABLES

    jars = ensure_jars(config)
    catalog = load_catalog(config.iceberg)
    for table in TABLES.values():
        existing = add_missing_columns(ensure_table(catalog, config.iceberg, table), table)
        align_identifier_fields(existing, table)
    env, t_env = create_stream_env(
        config,
        JobJars(pipeline=(*pipeline_jars(config, jars), operator_jar(config)), hadoop=tuple(jars["hadoop"])),
        job_name=JOB_NAME,
        restore_from=restore,
        overrides=flink_options,
    )
    statements = t_env.create_statement_set()
    notifications.build(t_env, statements, config, bounded=bounded)
    instance_state.build(t_env, statements, config, bounded=bounded,
                         from_earliest=restore is None)
    request_state.build(t_env, statements, config, bounded=bounded,
                        from_earliest=restore is None)
    host_samples.build(t_env, statements, config, bounded=bounded)
    statements.attach_as_datastream()
    return env


def stop_with_savepoint(client: Any, directory: Path, *, drain: bool) -> str:
    """Stop the job with a savepoint in *directory*; *drain*: after a watermark at the end of
    event time, which fires every timer (a final stop, not one to resume from).

    PyFlink 2.1's ``JobClient.stop_with_savepoint`` calls a two-argument Java overload that
    Flink 2 removed; the Java client is called with the format type it now requires.
    """
    from pyflink.java_gateway import get_gateway

    formats = get_gateway().jvm.org.apache.flink.core.execution.SavepointFormatType
    future = client._j_job_client.stopWithSavepoint(drain, directory.as_uri(), formats.DEFAULT)
    return str(future.get())


def stop_when_running(client: Any, directory: Path, result: Any, seconds: float = 120) -> None:
    """Stop with a drained savepoint, retried while the job's tasks are still starting (a run
    resumed with nothing left to read is caught up before they all run, and Flink refuses a
    savepoint until they do)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            stop_with_savepoint(client, directory, drain=True)
            return
        except Exception as exc:
            if result.done() or time.monotonic() > deadline or \
                    "not being executed at the moment" not in str(exc):
                raise
            log.info("tasks still starting: the savepoint waits for them")
            time.sleep(1.0)


def readers() -> dict[str, tuple[str, ...]]:
    """Topic (without prefix) -> the consumer groups of the jobs that read it."""
    from jobs import host_samples, instance_state, notifications, request_state

    return {"notifications": (notifications.GROUP_ID, instance_state.GROUP_ID,
                              request_state.GROUP_ID),
            "samples": (host_samples.GROUP_ID,)}


def end_offsets(config: Config) -> dict[str, dict[int, int]]:
    """Topic -> partition -> end offset, now, of every topic the jobs read."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": config.kafka.bootstrap_servers,
                         "group.id": "stacktide-jobs-end-offsets", "enable.auto.commit": False})
    try:
        ends = {}
        for name in readers():
            topic = config.kafka.topic(name)
            partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
            ends[name] = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                          for p in partitions}
        return ends
    finally:
        consumer.close()


class GroupOffsets:
    """Consumer groups' committed offsets, read through consumers that join no group (one
    per group, kept for the next call; none of them ever subscribes or commits). Not through
    the admin client's ``list_consumer_group_offsets``: librdkafka 2.16.0 crashed the whole
    process with a segmentation fault when asked that while a new broker still loaded its
    group coordinator."""

    def __init__(self, bootstrap_servers: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.consumers: dict[str, Any] = {}

    def committed(self, group: str, topic: str, partitions: Iterable[int],
                  timeout_s: float = 30.0) -> dict[int, int]:
        """Partition -> the offset *group* committed last (negative where it committed none);
        a KafkaException when Kafka does not answer within *timeout_s*."""
        from confluent_kafka import Consumer, TopicPartition

        consumer = self.consumers.get(group)
        if consumer is None:
            consumer = self.consumers[group] = Consumer({
                "bootstrap.servers": self.bootstrap_servers, "group.id": group,
                "enable.auto.commit": False, "log_level": 2})
        done = consumer.committed([TopicPartition(topic, p) for p in partitions],
                                  timeout=timeout_s)
        return {tp.partition: tp.offset for tp in done}

    def close(self) -> None:
        for consumer in self.consumers.values():
            consumer.close()
        self.consumers.clear()


class CatchUp:
    """:func:`caught_up`, asked again and again through one :class:`GroupOffsets`, which is
    replaced when a request fails: a Kafka client kept across a broker restart was seen never
    to answer again (confluent-kafka 2.16.1), and a Kafka that is down means "not yet"."""

    def __init__(self, config: Config, ends: dict[str, dict[int, int]],
                 timeout_s: float = 30.0) -> None:
        self.config, self.ends, self.timeout_s = config, ends, timeout_s
        self.offsets: GroupOffsets | None = None

    def __call__(self) -> bool:
        from confluent_kafka import KafkaException

        if self.offsets is None:
            self.offsets = GroupOffsets(self.config.kafka.bootstrap_servers)
        try:
            return caught_up(self.config, self.ends, self.offsets, self.timeout_s)
        except (KafkaException, TimeoutError) as exc:  # a request failed, or got no answer
            log.warning("event=committed_offsets_unknown error=%r: asking again",
                        str(exc) or type(exc).__name__)
            self.offsets.close()
            self.offsets = None
            return False


def caught_up(config: Config, ends: dict[str, dict[int, int]],
              offsets: GroupOffsets | None = None, timeout_s: float = 30.0) -> bool:
    """Whether every job's consumer group committed (on a completed checkpoint) *ends* of
    each topic it reads. *offsets*: to reuse across calls (else one for this call)."""
    own = offsets is None
    asked = offsets or GroupOffsets(config.kafka.bootstrap_servers)
    try:
        for name, groups in readers().items():
            topic, wanted = config.kafka.topic(name), ends.get(name, {})
            for group in groups:
                have = asked.committed(group, topic, wanted, timeout_s)
                if any(end > 0 and have.get(p, -1) < end for p, end in wanted.items()):
                    return False
        return True
    finally:
        if own:
            asked.close()
