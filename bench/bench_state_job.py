"""Throughput of the keyed instance job (state machine, exact usage, exists audit), and its
state size per live instance.

Starts a stack of its own (ports 5752/9452/9453, a temporary state dir), fills a topic with
simulated nova traffic (legacy notifications, reordered, some late, some repeated) and times
bounded runs of the jobs (archive + keyed instance job, Kafka in, Iceberg out), for each
Python execution variant, twice: over a topic holding one simulated instance-hour (the fixed
cost: JVM, planning, Python workers, final commits) and over the whole traffic. The
difference divided into the notifications is the sustained rate. CPU is split between the
JVM (the MiniCluster, a child process) and this process, which hosts PyFlink's loopback
Python workers in process mode (and nothing else while the job runs).

For comparison, the same traffic (ten times over, so that the run is long enough to time)
through a SQL-only pipeline, fixed cost subtracted the same way (the JSON decoded by Flink, a
GROUP BY per instance into a blackhole: keyed state in the JVM): what stays in the JVM costs. State per live
instance is measured on the pure functions: the pickled ``Keep`` of every instance that is
live in the middle of the traffic, which is what the job's ValueState stores.

Prints numbers; asserts nothing.

    .venv/bin/python bench/bench_state_job.py --instances 2000 --hours 24 --repeat 3
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import multiprocessing
import os
import pickle
import resource
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from connectors.kafka_producer import produce, producer_settings
from connectors.wire import parse
from jobs import lifecycle as lc
from jobs import usage
from jobs.command import GroupOffsets, run_jobs
from jobs.instance_state import Keep
from stacktide import local
from stacktide.config import REPO_ROOT, Config, config_from_mapping
from stacktide.local.kafka import ensure_topics
from stacktide.schema import Envelope
from stacktide.simulate.cloud import Params
from stacktide.simulate.delivery import Delivery
from stacktide.simulate.traffic import generate

# A variant's settings of the configuration (jobs.<name>), not Flink's.
OPERATORS = {"stacktide.instance_operator": "instance_operator",
             "stacktide.request_operator": "request_operator"}
# Not Flink's either: "set.<module>.<NAME>" sets a module constant in the run's process, for
# experiments on the instance job alone (e.g. set.jobs.keyed_source.SOURCE_FORMAT=json, to
# compare Flink's JSON format with the keyed sources' own). Values are JSON when they parse.
SET = "set."
# Not Flink's: the Java sources of the operators to build and run instead of jvm/operators',
# to compare a change of them with what it changes, side by side.
OPERATOR_SOURCES = "bench.operator-sources"
# Not Flink's: a whole source tree (e.g. `git worktree add /tmp/before <commit>`) whose jobs,
# SQL, configuration and operators the run builds instead of this one's, for a change that
# spans the Python and the Java side.
TREE = "bench.tree"
# The project's packages a tree replaces in the run's process.
PACKAGES = ("jobs", "stacktide", "connectors")
PYTHON = {"stacktide.instance_operator": "python", "stacktide.request_operator": "python"}
VARIANTS: dict[str, dict[str, str]] = {
    # The keyed jobs' logic in Python workers (jobs.*_operator: python), PyFlink's process mode
    "process/bundle-1000": {**PYTHON},
    "process/bundle-100000": {**PYTHON, "python.fn-execution.bundle.size": "100000",
                              "python.fn-execution.bundle.time": "1000"},
    # PyFlink's own state cache sizes, below the jobs' default (jobs.python_state_cache)
    "process/state-cache-1000": {**PYTHON, "python.state.cache-size": "1000",
                                 "python.map-state.read-cache-size": "1000",
                                 "python.map-state.write-cache-size": "1000"},
    # The keyed instance job's logic in the JVM; the request job's in Python.
    "jvm-instance-operator": {**PYTHON, "stacktide.instance_operator": "jvm"},
    # Both keyed jobs' logic in the JVM, the jobs' default: no Python operator left in the job.
    "jvm-operators (default)": {},
}
# Not a variant: python.execution-mode thread (PemJa) fails on this job. Under the chained
# operators' "Could not forward element to next operator" (and alone, with chaining off) is
# PemJa's ClassCastException: it cannot hand the side outputs' pyflink Instant (the tables'
# timestamptz columns) to Java as a java.time.Instant. The job restarts forever.
RECEIVED = datetime(2030, 1, 1, tzinfo=UTC)
SQL_COPIES = 10  # the SQL-only pipeline runs the traffic this many times: long enough to time


def bench_config(state: Path) -> Config:
    data = {
        "cells": [{"name": "cell1", "transport_url": "rabbit://guest:guest@127.0.0.1:5752/"}],
        "kafka": {"bootstrap_servers": "127.0.0.1:9452", "partitions": 4},
        "local": {"state_dir": str(state), "rabbitmq_port": 5752, "kafka_port": 9452,
                  "kafka_controller_port": 9453},
        "jobs": {"checkpoint_interval_s": 10},
        "usage": {"settle_seconds": 4 * 3600},
    }
    return config_from_mapping(data, "<bench>", base=state)


def traffic(instances: int, hours: int, seed: int = 3) -> list[Envelope]:
    t = generate(Params(seed=seed, instances=instances, hours=hours), "legacy",
                 Delivery(seed, reorder_window_s=60.0, delay_fraction=0.02, delay_hours=(1.0, 3.0),
                          duplicate_fraction=0.02))
    out = []
    for _, r in t.messages:
        m = r.captured()
        env = parse(m.body_bytes(), cell=m.cell, exchange=m.exchange, routing_key=m.routing_key,
                    received=RECEIVED)
        assert isinstance(env, Envelope)
        out.append(env)
    return out


def fill(config: Config, items: list[Envelope]) -> None:
    """The topic as the bridge writes it (its producer settings: idempotent, lz4)."""
    producer = Producer(producer_settings(config.kafka, "stacktide-bench"))
    topic = config.kafka.topic("notifications")
    for env in items:
        produce(producer, topic, env.kafka_key(), env.to_json(), lambda *_: None)
    producer.flush()


def fresh_namespace(base: Config) -> Config:
    tag = f"b{uuid.uuid4().hex[:6]}"
    config = dataclasses.replace(
        base, kafka=dataclasses.replace(base.kafka, topic_prefix=tag),
        iceberg=dataclasses.replace(base.iceberg, namespace=tag))
    ensure_topics(config)
    return config


def jvm_cpu() -> float:
    """CPU seconds of this process's Java children (the MiniCluster), from /proc."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            comm = stat.read_text().split("(", 1)[1].split(")", 1)[0]
        except (OSError, IndexError):
            continue
        if fields[1] == me and comm == "java":
            total += (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return total


def own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@dataclasses.dataclass
class Run:
    wall: float
    jvm: float
    python: float
    steady: float | None = None  # notifications/s through the middle half (Committed.steady)


class Committed(threading.Thread):
    """The notifications a running job has done, as its consumer group's committed offsets
    tell (Flink's Kafka source commits them when a checkpoint completes, and an aligned
    checkpoint completes once every operator has processed what came before it): the rate of
    the job between two checkpoints in the middle of its input, past its start and most of
    its JIT compiler's warm-up, without the fixed-cost run's subtraction.

    Asked through :class:`jobs.command.GroupOffsets` (consumers that join no group), as the
    bounded run asks it: asked at the job's very start, through the admin client, it crashed
    this process (see there)."""

    def __init__(self, config: Config, group: str, every_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.config, self.group, self.every_s = config, group, every_s
        self.points: list[tuple[float, int]] = []  # (monotonic s, notifications done)
        self.done = threading.Event()

    def run(self) -> None:
        from confluent_kafka import KafkaException

        topic = self.config.kafka.topic("notifications")
        offsets = GroupOffsets(self.config.kafka.bootstrap_servers)
        try:
            while not self.done.wait(self.every_s):
                try:
                    done = offsets.committed(self.group, topic,
                                             range(self.config.kafka.partitions), 10)
                except KafkaException:  # not yet known: asked again next time
                    continue
                n = sum(max(offset, 0) for offset in done.values())
                if not self.points or n != self.points[-1][1]:
                    self.points.append((time.monotonic(), n))
        finally:
            offsets.close()

    def steady(self, total: int, low: float = 0.25, high: float = 0.75) -> float | None:
        """Notifications per second between the first checkpoints past *low* and *high* of
        *total* (None: fewer than two checkpoints apart there; make the run longer)."""
        a = next((p for p in self.points if p[1] >= low * total), None)
        b = next((p for p in self.points if p[1] >= high * total), None)
        if a is None or b is None or b[1] <= a[1]:
            return None
        return (b[1] - a[1]) / (b[0] - a[0])


def _timed_here(base: Config, items: list[Envelope], options: Mapping[str, str]) -> Run:
    config = fresh_namespace(base)
    flink = {k: v for k, v in options.items() if k not in OPERATORS}
    operators: dict[str, Any] = {OPERATORS[k]: v for k, v in options.items() if k in OPERATORS}
    config = dataclasses.replace(config, jobs=dataclasses.replace(config.jobs, **operators))
    fill(config, items)
    jvm0, py0, started = jvm_cpu(), own_cpu(), time.monotonic()
    run_jobs(config, bounded=True, fresh=True, flink_options=flink)
    return Run(time.monotonic() - started, jvm_cpu() - jvm0, own_cpu() - py0)


def timed(base: Config, items: list[Envelope], options: Mapping[str, str]) -> Run:
    """One run in a new interpreter: PyFlink starts one JVM per process, and the execution
    mode (thread mode needs PYTHONPATH in the JVM's environment) is fixed when it starts."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_timed_here, (base, items, dict(options)))


def sql_only(base: Config, items: list[Envelope]) -> float:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return float(pool.apply(_sql_only_here, (base, items)))


def _sql_only_here(base: Config, items: list[Envelope]) -> float:
    """Seconds of a bounded SQL pipeline over *items*: JSON decode + GROUP BY instance."""
    from jobs.environment import JobJars, create_stream_env
    from stacktide.local.jars import ensure_jars, pipeline_jars

    config = fresh_namespace(base)
    fill(config, items)
    jars = ensure_jars(config)
    # No checkpoints: nothing to commit into a blackhole, and a bounded job whose sources
    # finished waits for the next one before it ends, which would round its time up to the
    # checkpoint interval.
    _, t_env = create_stream_env(config, JobJars(pipeline_jars(config, jars), tuple(jars["hadoop"])),
                                 job_name=f"bench-sql-{uuid.uuid4().hex[:6]}",
                                 overrides={"execution.checkpointing.interval": None})
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE src (`instance_id` STRING, `event_type` STRING,
          `generated` STRING, `payload` STRING)
        WITH ('connector' = 'kafka', 'topic' = '{config.kafka.topic("notifications")}',
          'properties.bootstrap.servers' = '{config.kafka.bootstrap_servers}',
          'properties.group.id' = 'bench-sql', 'scan.startup.mode' = 'earliest-offset',
          'scan.bounded.mode' = 'latest-offset', 'format' = 'json',
          'json.ignore-parse-errors' = 'false')""")
    t_env.execute_sql("CREATE TEMPORARY TABLE sink (i STRING, n BIGINT, g STRING) "
                      "WITH ('connector' = 'blackhole')")
    started = time.monotonic()
    t_env.execute_sql("INSERT INTO sink SELECT instance_id, COUNT(*), MAX(`generated`) FROM src "
                      "GROUP BY instance_id").wait()
    return time.monotonic() - started


def jvm_keyed(base: Config, items: list[Envelope], empty: bool = False) -> float:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return float(pool.apply(_jvm_keyed_here, (base, items, empty)))


def _jvm_keyed_here(base: Config, items: list[Envelope], empty: bool) -> float:
    """Seconds of a bounded run of the instance job's source and keying (its SQL, keyed in
    the JVM) into bench/jvm's KeyedStateProbe: its state, timers and rows without its logic
    and without Python, into a blackhole; with *empty*, into a keyed function that does
    nothing (the floor under the probe)."""
    from pyflink.java_gateway import get_gateway

    from jobs import instance_state
    from jobs.environment import JobJars, create_stream_env
    from jobs.keyed_source import declare_source, rows_with_key
    from jobs.sqlfile import Ident, Raw, render
    from stacktide.local.jars import ensure_jars, pipeline_jars
    from stacktide.local.operators import operator_jar

    config = fresh_namespace(base)
    fill(config, items)
    jars = ensure_jars(config)
    probe = operator_jar(config, REPO_ROOT / "bench" / "jvm" / "src")
    env, t_env = create_stream_env(
        config, JobJars((*pipeline_jars(config, jars), probe), tuple(jars["hadoop"])),
        job_name=f"bench-jvm-{uuid.uuid4().hex[:6]}",
        overrides={"execution.checkpointing.interval": None})  # as the SQL-only pipeline
    timing = instance_state.timing_of(config)
    declare_source(t_env, config, table="probe_source", group_id="bench-jvm",
                   out_of_order_us=timing.out_of_order, bounded=True, from_earliest=True)
    query = t_env.sql_query(render(
        "instance_notifications", source=Ident("probe_source"),
        event_filter=Raw(instance_state.event_filter(lc.load_rules()))))
    stream, _ = rows_with_key(t_env, query, instance_state.KEY, "probe")
    get_gateway().jvm.stacktide.bench.KeyedStateProbe.attach(stream._j_data_stream, empty)
    started = time.monotonic()
    env.execute(f"bench-jvm-{uuid.uuid4().hex[:6]}")
    return time.monotonic() - started


def instance_job(base: Config, items: list[Envelope], options: Mapping[str, str] | None = None,
                 warm: list[Envelope] | None = None) -> Run:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_instance_job_here, (base, items, dict(options or {}), warm))


def _instance_job_here(base: Config, items: list[Envelope], options: Mapping[str, str],
                       warm: list[Envelope] | None) -> Run:
    """A bounded run of the keyed instance job alone (the state and usage job: Kafka in, its
    four Iceberg tables out), its logic in the JVM (``jobs.instance_operator: jvm``), built
    as :func:`jobs.command.build_jobs` builds it, without the archive, request and samples
    jobs that share the jobs' Flink job and its cores. With *warm*, the same job runs over
    *warm* first, untimed, in the same JVM: the timed run then finds the job's code compiled by
    the JIT, as a job that has been running for a while does."""
    options = dict(options)
    tree = options.pop(TREE, None)
    if tree:
        use_tree(Path(tree))
    sources = options.pop(OPERATOR_SOURCES, None)
    for key in [k for k in options if k.startswith(SET)]:
        module, _, name = key.removeprefix(SET).rpartition(".")
        try:
            value = json.loads(options[key])
        except ValueError:
            value = options[key]
        setattr(importlib.import_module(module), name, value)
        del options[key]
    if warm:
        _instance_run(base, warm, options, sources)
    return _instance_run(base, items, options, sources)


def _instance_run(base: Config, items: list[Envelope], options: Mapping[str, str],
                  sources: str | None) -> Run:
    from jobs import instance_state
    from jobs.environment import JobJars, create_stream_env, submit
    from stacktide.catalog import ensure_table, load_catalog
    from stacktide.local.jars import ensure_jars, pipeline_jars
    from stacktide.local.operators import operator_jar
    from stacktide.schema import TABLES

    config = fresh_namespace(base)
    config = dataclasses.replace(config, jobs=dataclasses.replace(
        config.jobs, instance_operator="jvm"))
    fill(config, items)
    catalog = load_catalog(config.iceberg)
    for name in instance_state.OUTPUTS:
        ensure_table(catalog, config.iceberg, TABLES[name])
    jars = ensure_jars(config)
    env, t_env = create_stream_env(
        config, JobJars((*pipeline_jars(config, jars),
                         operator_jar(config, *([Path(sources)] if sources else []))),
                        tuple(jars["hadoop"])), job_name=f"bench-instance-{uuid.uuid4().hex[:6]}",
        overrides=dict(options))
    statements = t_env.create_statement_set()
    instance_state.build(t_env, statements, config, bounded=True, from_earliest=True)
    statements.attach_as_datastream()
    committed = Committed(config, instance_state.GROUP_ID)
    committed.start()
    jvm0, started = jvm_cpu(), time.monotonic()
    try:
        submit(env, f"bench-instance-{uuid.uuid4().hex[:6]}").get_job_execution_result().result()
    finally:
        committed.done.set()
        committed.join()
    return Run(time.monotonic() - started, jvm_cpu() - jvm0, 0.0, committed.steady(len(items)))


def use_tree(tree: Path) -> None:
    """Import the project from *tree* from now on in this process (a run's own, spawned):
    what this module imported already (the topic's filling) stays as it was."""
    if not (tree / "jobs").is_dir():
        raise SystemExit(f"{TREE}={tree}: no jobs/ there, not a source tree of the project")
    sys.path.insert(0, str(tree))
    for name in [m for m in sys.modules if m.split(".")[0] in PACKAGES]:
        del sys.modules[name]


def state_sizes(items: list[Envelope]) -> tuple[set[str], float, float]:
    """(live instance ids, mean pickled Keep bytes, mean compact-JSON bytes) in mid-traffic,
    folded as the job folds them (usage emitted and compacted at an hourly watermark)."""
    rules, keeps = lc.load_rules(), dict[str, Keep]()
    half = items[: len(items) // 2]
    newest = max(e.generated for e in half)
    period, lateness = usage.PERIODS["hour"], 24 * 3600 * 1_000_000
    for env in half:
        obs = lc.observe(env, rules)
        if obs is None or obs.effect.audit:
            continue
        keep = keeps.get(obs.instance_id) or Keep(lc.InstanceState(obs.cell, obs.instance_id), 0)
        keep.state, keep.book = usage.step(keep.state, keep.book, obs)
        keeps[obs.instance_id] = keep
    now = lc.to_us(newest) or 0
    live = []
    for keep in keeps.values():
        keep.book, _ = usage.advance(keep.state, keep.book, rules, period, now)
        keep.state, keep.book = usage.compact(keep.state, keep.book, period, now - lateness)
        if keep.state.deleted_at is None:
            live.append(keep)
    pickled = statistics.mean(len(pickle.dumps(k)) for k in live)
    compact = statistics.mean(len(usage.dumps(k.state, k.book)) for k in live)
    return {k.state.instance_id for k in live}, pickled, compact


def jvm_state_size(config: Config, items: list[Envelope], live: set[str]) -> float:
    """Mean bytes of the JVM operator's state (``stacktide.lifecycle.Keep``, as a checkpoint
    writes it) of the instances live in mid-traffic, the first half of the traffic driven
    through its logic as the job drives it (tests/jvm/LifecycleCheck.java), with the job's
    timing, without the end of input."""
    import sys

    from jobs import instance_state

    sys.path.insert(0, str(REPO_ROOT))  # the harness lives with the tests
    from tests.jobs.keyed_driver import instance_wire, java_harness, plan

    half = items[: len(items) // 2]
    timing = instance_state.timing_of(config)
    steps = plan(half, lambda env: lc.to_us(env.generated))[:-1]
    with tempfile.TemporaryDirectory(prefix="stacktide-bench-state-") as tmp:
        (rules := Path(tmp) / "rules.json").write_text(
            json.dumps(lc.rules_document(lc.load_rules())))
        ask = java_harness(Path(tmp), "LifecycleCheck", [str(rules)])
        got, = ask([{"drive": [[k, instance_wire(v) if k == "e" else v] for k, v in steps],
                     "timing": [timing.period, timing.out_of_order, timing.lateness,
                                timing.settle, timing.silence, timing.audit_expected],
                     "base": 0, "newest": max(lc.to_us(e.generated) or 0 for e in half)}])
    sizes = [int(n) for key, n in got["sizes"].items() if key.split("/", 1)[1] in live]
    return statistics.mean(sizes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated names among: " + ", ".join(VARIANTS))
    parser.add_argument("--jvm", action="store_true",
                        help="also the JVM keyed pipeline (bench/jvm: the instance job's state, "
                             "timers and rows without its logic)")
    parser.add_argument("--instance-job", action="store_true",
                        help="also the keyed instance job alone, its logic in the JVM")
    parser.add_argument("--instance-variants", type=json.loads, default={},
                        help="with --instance-job: a JSON object of named option sets, each "
                             "run as the instance job alone beside the default (Flink options, "
                             f"{SET}<module>.<NAME>, {OPERATOR_SOURCES}, {TREE})")
    parser.add_argument("--baseline-hours", type=int, default=0,
                        help="with --instance-job: its fixed-cost run is the same cloud over "
                             "this many hours instead of one instance-hour, so the difference "
                             "is the rate of a job past its start and its JIT compiler's "
                             "warm-up: the sustained rate")
    parser.add_argument("--warm", action="store_true",
                        help="with --instance-job: each run of the instance job alone first runs "
                             "it over the traffic untimed in the same JVM, so the timed run is "
                             "not the JIT compiler's warm-up (the sustained rate of a running job)")
    parser.add_argument("--checkpoint-s", type=float, default=10.0,
                        help="the jobs' checkpoint interval: a bounded run ends at a checkpoint, "
                             "so each run's time is rounded up by up to this much")
    parser.add_argument("--only-jvm-and-sql", action="store_true",
                        help="run no variant of the jobs, only the SQL-only and JVM pipelines")
    args = parser.parse_args()
    items = traffic(args.instances, args.hours)
    tiny = traffic(1, 1, seed=4)
    base = traffic(args.instances, args.baseline_hours) if args.baseline_hours else tiny
    live, pickled, compact = state_sizes(items)
    jvm_bytes = jvm_state_size(bench_config(Path(tempfile.gettempdir())), items, live)
    print(f"traffic: {args.instances} instances x {args.hours} h = {len(items):,} notifications "
          f"({len(tiny)} in the fixed-cost run"
          + (f"; the instance job's: {len(base):,}, {args.baseline_hours} h" if base is not tiny
             else "") + ")")
    print(f"state per live instance (mid-traffic, {len(live)} live): pickled Keep {pickled:,.0f} B, "
          f"compact JSON {compact:,.0f} B; JVM operator's Keep {jvm_bytes:,.0f} B")
    chosen = [] if args.only_jvm_and_sql else [v.strip() for v in args.variants.split(",")
                                                 if v.strip()]
    args.jvm = args.jvm or args.only_jvm_and_sql
    with tempfile.TemporaryDirectory(prefix="stacktide-bench-") as tmp:
        config = bench_config(Path(tmp))
        config = dataclasses.replace(config, jobs=dataclasses.replace(
            config.jobs, checkpoint_interval_s=args.checkpoint_s))
        local.up(config)
        try:
            results: dict[str, tuple[list[Run], list[Run]]] = {v: ([], []) for v in chosen}
            sql: tuple[list[float], list[float]] = ([], [])
            probe: tuple[list[float], list[float]] = ([], [])
            floor: tuple[list[float], list[float]] = ([], [])
            alone_variants = {"instance job alone, JVM operator": {}, **{
                f"instance job alone, {name}": dict(opts)
                for name, opts in args.instance_variants.items()}}
            alone: dict[str, tuple[list[Run], list[Run]]] = {
                name: ([], []) for name in alone_variants}
            for _ in range(args.repeat):  # variants interleaved: the machine's noise hits all
                for name in chosen:
                    results[name][0].append(timed(config, tiny, VARIANTS[name]))
                    results[name][1].append(timed(config, items, VARIANTS[name]))
                if args.instance_job:
                    for name, opts in alone_variants.items():
                        warm = items if args.warm else None
                        alone[name][0].append(instance_job(config, base, opts, warm))
                        alone[name][1].append(instance_job(config, items, opts, warm))
                sql[0].append(sql_only(config, tiny))
                sql[1].append(sql_only(config, items * SQL_COPIES))
                if args.jvm:
                    probe[0].append(jvm_keyed(config, tiny))
                    probe[1].append(jvm_keyed(config, items * SQL_COPIES))
                    floor[0].append(jvm_keyed(config, tiny, empty=True))
                    floor[1].append(jvm_keyed(config, items * SQL_COPIES, empty=True))
        finally:
            local.down(config)
    n = len(items)
    print(f"\nmedian of {args.repeat} bounded runs, parallelism {config.jobs.parallelism}:")
    print("(cpu: of the full run minus the fixed-cost run; in thread mode Python runs in the JVM)")
    print("(steady/s: the instance job's rate between its checkpoints past a quarter and three "
          "quarters of the input, from its committed offsets)")
    print(f"{'variant':<32} {'fixed s':>8} {'full s':>8} {'notif/s':>9} {'JVM cpu s':>10} "
          f"{'Python cpu s':>13} {'steady/s':>9}")
    counts = {name: len(tiny) for name in results}
    if args.instance_job:
        results.update(alone)
        counts.update({name: len(base) for name in alone})
    for name, (fixed, full) in results.items():
        f = statistics.median(r.wall for r in fixed)
        t = statistics.median(r.wall for r in full)
        jvm = statistics.median(r.jvm for r in full) - statistics.median(r.jvm for r in fixed)
        py = statistics.median(r.python for r in full) - statistics.median(r.python for r in fixed)
        rate = (n - counts[name]) / max(t - f, 1e-9)
        steady = [r.steady for r in full if r.steady is not None]
        shown = f"{statistics.median(steady):9,.0f}" if steady else f"{'-':>9}"
        print(f"{name:<32} {f:8.1f} {t:8.1f} {rate:9,.0f} {jvm:10.1f} {py:13.1f} {shown}")
    rows = n * SQL_COPIES
    pipelines = [("SQL only (JSON + GROUP BY)", sql,
                  f"the traffic {SQL_COPIES} times: {rows:,} rows; "
                  f"{rows / statistics.median(sql[1]):,.0f}/s including its start")]
    if args.jvm:
        pipelines += [
            ("JVM keyed (state, timers, rows)", probe,
             f"the traffic {SQL_COPIES} times, through the instance job's SQL into bench/jvm's "
             "KeyedStateProbe"),
            ("JVM keyed, function empty", floor, "the same, into a keyed function that does nothing")]
    for label, (fixed_s, full_s), what in pipelines:
        f, t = statistics.median(fixed_s), statistics.median(full_s)
        print(f"{label:<32} {f:8.1f} {t:8.1f} {rows / max(t - f, 1e-9):9,.0f}   ({what})")
    if args.instance_job:
        print("\nsteady rate of each repeat of the instance job alone:")
        for name, (_, full) in alone.items():
            print(f"  {name:<32} "
                  + "  ".join(f"{r.steady:,.0f}" if r.steady else "-" for r in full))
    print("\nfull-run seconds of each repeat (the spread the medians hide):")
    for label, (_, full_s), _ in pipelines:
        print(f"  {label:<32} " + "  ".join(f"{s:.1f}" for s in full_s))


if __name__ == "__main__":
    main()
