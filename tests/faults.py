"""The fault scenario of issue 7, shared by ``tests/e2e/test_faults.py`` (a few thousand
notifications) and ``bench/bench_faults.py`` (100,000 and more).

Simulated nova traffic flows the whole path (RabbitMQ -> ``stacktide bridge`` -> Kafka ->
the streaming jobs -> Iceberg) while :func:`run_faults` breaks it five times, one fault at a
time, each once the previous one has recovered:

1. the bridge process is killed (SIGKILL) while traffic is published, and started again;
2. the jobs' worker (the Flink TaskManager) is killed (SIGKILL) while the jobs catch up;
3. RabbitMQ is restarted (the simulated nova stops publishing while its broker is down);
4. Kafka is restarted while traffic is published;
5. the jobs' worker is killed again.

The publisher is gated (:class:`Publisher`) so that each broker fault happens while traffic
flows, however fast or slow the machine is. A :class:`Monitor` samples the notifications
topic's end offsets and the archive table's snapshots, so each fault's recovery time is
measured from the fault to the path moving again: the first new Kafka offset after the broken
piece is back (bridge, RabbitMQ, Kafka), the first Iceberg commit after the kill (worker).

Once the traffic is all in Kafka and the jobs have read it, the streaming jobs stop with a
savepoint and a bounded run resumes from it to the end of event time, like
``tests/e2e/test_restarts.py``; :func:`compare` then sets every table against an undisturbed
run over the same traffic and the simulator's ground truth.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from confluent_kafka import Consumer, TopicPartition

from connectors.bridge import Bridge, queue_name
from connectors.replay import publish
from jobs import instance_state
from jobs.command import CatchUp, GroupOffsets, end_offsets, run_jobs
from jobs.submit import stop_jobs
from stacktide.catalog import load_catalog
from stacktide.config import Config
from stacktide.flink_rest import TERMINAL
from stacktide.local import kafka, rabbitmq
from stacktide.local.flink_cluster import FlinkCluster
from stacktide.schema import TABLES, CapturedMessage
from stacktide.simulate.traffic import Traffic
from tests.helpers import (
    current_rows,
    fresh_environment,
    queue_depth,
    table_usage,
    truth_usage,
    write_config,
)

STACKTIDE = Path(sys.executable).parent / "stacktide"


def log_tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else f"({path} missing)"


# ---- the traffic ---------------------------------------------------------------------------

class Publisher(threading.Thread):
    """Publishes the simulated traffic on RabbitMQ in chunks (confirmed, at *speed* messages/s),
    never beyond the limit the scenario allows, and not while it is paused (a broker restart:
    an oslo notifier fails its sends then; this one waits for the broker instead)."""

    def __init__(self, config: Config, messages: Sequence[CapturedMessage], speed: float,
                 chunk: int) -> None:
        super().__init__(name="publisher", daemon=True)
        self.config, self.messages, self.speed, self.chunk = config, messages, speed, chunk
        self.gate = threading.Condition()
        self.limit = self.sent = 0
        self.paused = self.busy = False
        self.error: BaseException | None = None

    @property
    def total(self) -> int:
        return len(self.messages)

    def allow(self, fraction: float) -> None:
        with self.gate:
            self.limit = max(self.limit, round(self.total * fraction))
            self.gate.notify_all()

    def pause(self) -> None:
        """Returns once no chunk is being published."""
        with self.gate:
            self.paused = True
            self.gate.wait_for(lambda: not self.busy)

    def resume(self) -> None:
        with self.gate:
            self.paused = False
            self.gate.notify_all()

    def run(self) -> None:
        try:
            while self.sent < self.total:
                with self.gate:
                    self.gate.wait_for(lambda: not self.paused and self.sent < self.limit)
                    self.busy = True
                    part = self.messages[self.sent:min(self.limit, self.sent + self.chunk)]
                try:
                    publish(self.config, part, speed=self.speed, progress=False)
                finally:
                    with self.gate:
                        self.sent += len(part)
                        self.busy = False
                        self.gate.notify_all()
        except BaseException as exc:  # reported by wait_sent / the scenario
            self.error = exc

    def wait_sent(self, fraction: float, seconds: float) -> None:
        want = round(self.total * fraction)
        deadline = time.monotonic() + seconds
        with self.gate:
            while self.sent < want and self.error is None:
                if not self.gate.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"published {self.sent} of {want} in {seconds:.0f} s")
        if self.error is not None:
            raise RuntimeError(f"publishing failed after {self.sent} messages") from self.error


class Child:
    """A ``stacktide`` command in a child process logging to *log*; with *group*, in a process
    group of its own, which a kill takes down whole (a JVM and Python workers it started)."""

    def __init__(self, args: Sequence[str], log: Path, *, group: bool = False) -> None:
        self.args, self.log, self.group = list(args), log, group
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(self.args, start_new_session=self.group, stdout=out,
                                            stderr=subprocess.STDOUT, env=fresh_environment())

    def exited(self) -> int | None:
        """Its exit code once it ended (None: still running, or never started)."""
        return None if self.process is None else self.process.poll()

    def kill(self) -> int:
        """SIGKILL; its exit code."""
        assert self.process is not None and self.process.poll() is None, log_tail(self.log)
        if self.group:
            os.killpg(self.process.pid, signal.SIGKILL)
        else:
            self.process.send_signal(signal.SIGKILL)
        return self.process.wait(30)

    def stop(self, seconds: float = 60) -> int | None:
        """SIGTERM, and SIGKILL after *seconds*; its exit code (None: it was not running)."""
        if self.process is None or self.process.poll() is not None:
            return None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(seconds)
        except subprocess.TimeoutExpired:
            return self.kill()


class BridgeProcess(Child):
    """``stacktide bridge`` as an operator runs it: a child process, killed and started again."""

    def __init__(self, config_file: Path, log: Path) -> None:
        super().__init__([str(STACKTIDE), "--config", str(config_file), "bridge"], log)

    def kill(self) -> int:
        code = super().kill()
        assert code == -signal.SIGKILL, code
        return code


# ---- the jobs ------------------------------------------------------------------------------

class Jobs(Protocol):
    """Where the streaming jobs run, and what "kill the TaskManager" means there."""

    name: str

    def start(self) -> None: ...

    def kill_worker(self) -> None:
        """SIGKILL the process that runs the jobs' tasks, and have it come back (as a
        supervisor would); returns once the kill is done."""

    def running(self) -> bool | None:
        """Whether the job runs (all its tasks), or None when this runner cannot tell."""

    def alive(self) -> str | None:
        """None while the runner is healthy, else what went wrong (with its log's tail)."""

    def finish(self, config: Config) -> None:
        """Stop the streaming job with a savepoint and run it bounded to the end of event time."""

    def close(self) -> None: ...


class MiniClusterJobs:
    """``stacktide jobs run`` in a child process: PyFlink's MiniCluster, whose TaskManager lives
    in that process's JVM, so the worker's SIGKILL takes the client, the JVM and its Python
    workers down together, and the next ``jobs run`` resumes from the last checkpoint."""

    name = "MiniCluster jobs run"

    def __init__(self, config_file: Path, log: Path) -> None:
        self.log = log
        self.child = Child([sys.executable, "-m", "stacktide.cli", "--config", str(config_file),
                            "jobs", "run"], log, group=True)

    def start(self) -> None:
        self.child.start()

    def kill_worker(self) -> None:
        self.child.kill()  # the client, its JVM, its Python workers
        self.child.start()

    def running(self) -> bool | None:
        return None

    def alive(self) -> str | None:
        code = self.child.exited()
        return None if code is None else f"jobs run exited {code}:\n{log_tail(self.log)}"

    def finish(self, config: Config) -> None:
        # SIGTERM: the client stops the job with a savepoint
        assert self.child.stop(seconds=300) == 0, log_tail(self.log)
        assert "stopped with savepoint" in self.log.read_text(errors="replace"), log_tail(self.log)
        assert run_jobs(config, bounded=True)  # resumes from that savepoint

    def close(self) -> None:
        if self.child.exited() is None and self.child.process is not None:
            self.child.kill()


class ClusterJobs:
    """The jobs submitted (``stacktide jobs submit``) to a standalone Flink session cluster
    (:mod:`stacktide.local.flink_cluster`): the worker is its TaskManager process. Killed, it is
    started again at once, as a supervisor would; the JobManager restarts the job from its last
    checkpoint once the new TaskManager offers its slots."""

    name = "TaskManager"

    def __init__(self, cluster: FlinkCluster, config_file: Path, log: Path) -> None:
        self.cluster, self.config_file, self.log = cluster, config_file, log
        self.job_id = ""

    def start(self) -> None:
        with self.log.open("ab") as err:
            done = subprocess.run(
                [str(STACKTIDE), "--config", str(self.config_file), "jobs", "submit",
                 "--jobmanager", self.cluster.address], stdout=subprocess.PIPE, stderr=err,
                env=fresh_environment(), timeout=900, check=False)
        assert done.returncode == 0, log_tail(self.log)
        self.job_id = done.stdout.decode().split()[-1]

    def kill_worker(self) -> None:
        self.cluster.kill_taskmanager()
        self.cluster.start_taskmanager()

    def running(self) -> bool | None:
        try:
            return self.cluster.rest.all_tasks_running(self.job_id)
        except Exception:  # the JobManager busy: not known to run
            return False

    def alive(self) -> str | None:
        try:
            state = self.cluster.rest.job_state(self.job_id)
        except Exception:
            return None
        return f"job {self.job_id} {state}; see {self.cluster.log_dir}" if state in TERMINAL else None

    def finish(self, config: Config) -> None:
        """Stop with a drained savepoint: a watermark at the end of event time fires every
        timer first, the ending of a bounded run."""
        stop_jobs(config, jobmanager=self.cluster.address, job_id=self.job_id, drain=True)
        assert self.cluster.rest.job_state(self.job_id) == "FINISHED"

    def close(self) -> None:
        """Nothing: a job left running goes down with the cluster, whose owner stops it."""


# ---- watching the path ---------------------------------------------------------------------

@dataclass
class Monitor:
    """Samples, every *interval_s*, the notifications topic's end offsets (summed) and the
    archive table's current snapshot; remembers when each changed."""

    config: Config
    interval_s: float = 0.25
    offsets: list[tuple[float, int]] = field(default_factory=list)
    commits: list[tuple[float, int]] = field(default_factory=list)
    running: list[tuple[float, bool]] = field(default_factory=list)
    jobs: Jobs | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._loop, name="monitor", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)

    def _consumer(self) -> Consumer:
        return Consumer({"bootstrap.servers": self.config.kafka.bootstrap_servers,
                         "group.id": "stacktide-fault-monitor", "log_level": 2,
                         "enable.auto.commit": False})

    def _loop(self) -> None:
        topic = self.config.kafka.topic("notifications")
        consumer = self._consumer()
        catalog = load_catalog(self.config.iceberg)
        archive = f"{self.config.iceberg.namespace}.notifications"
        partitions = list(range(self.config.kafka.partitions))
        try:
            while not self.stop.wait(self.interval_s):
                now = time.monotonic()
                try:
                    end = sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=1.0)[1]
                              for p in partitions)
                except Exception:  # Kafka down: no sample, and a new client for the next one
                    end = None
                    consumer.close()  # (one kept across a restart may never answer again)
                    consumer = self._consumer()
                if end is not None and (not self.offsets or self.offsets[-1][1] != end):
                    self.offsets.append((now, end))
                try:
                    snapshot = catalog.load_table(archive).metadata.current_snapshot_id
                except Exception:  # not created yet, or the catalog busy
                    snapshot = None
                if snapshot is not None and (not self.commits or self.commits[-1][1] != snapshot):
                    self.commits.append((now, snapshot))
                state = self.jobs.running() if self.jobs is not None else None
                if state is not None and (not self.running or self.running[-1][1] != state):
                    self.running.append((now, state))
        finally:
            consumer.close()

    @staticmethod
    def first_change(series: list[tuple[float, Any]], after: float) -> float | None:
        """When the value changed first after time *after*: the first sample that differs from
        the one current at *after* (None: not yet)."""
        base = [v for t, v in series if t <= after]
        return next((t for t, v in series if t > after and (not base or v != base[-1])), None)

    def wait_offset(self, back: float, seconds: float) -> float:
        """When the topic got a new offset once the broken piece was back at *back*. The
        value sampled just after *back* is the base: records written before the fault, which
        a restarted broker shows only now, do not count as the path moving."""
        base = back + 2 * self.interval_s
        time.sleep(max(0.0, base - time.monotonic()))
        return self._wait(lambda: self.first_change(self.offsets, base), seconds,
                          "a new offset of the notifications topic")

    def wait_commit(self, fault: float, seconds: float) -> float:
        return self._wait(lambda: self.first_change(self.commits, fault), seconds,
                          "an Iceberg commit of the archive")

    def wait_running(self, fault: float, seconds: float) -> float | None:
        """When the job was RUNNING again after *fault* (None when the runner cannot tell)."""
        if self.jobs is None or self.jobs.running() is None:
            return None
        return self._wait(lambda: next((t for t, v in self.running if t > fault and v), None),
                          seconds, "the job RUNNING")

    def _wait(self, found: Callable[[], float | None], seconds: float, what: str) -> float:
        deadline = time.monotonic() + seconds
        while (t := found()) is None:
            if self.jobs is not None and (why := self.jobs.alive()) is not None:
                raise AssertionError(why)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} within {seconds:.0f} s")
            time.sleep(0.1)
        return t


# ---- the scenario --------------------------------------------------------------------------

@dataclass(frozen=True)
class Recovery:
    fault: str
    at_s: float  # since the scenario started
    back_s: float  # fault -> the broken piece back (restarted, reconnected)
    moving_s: float  # fault -> the path moving again
    moving: str  # what showed it moving
    running_s: float | None = None  # fault -> the job RUNNING again (a cluster's REST API)


def progress(offsets: GroupOffsets, config: Config, group: str) -> int:
    """Offsets the jobs' consumer *group* committed (on completed checkpoints), summed."""
    topic = config.kafka.topic("notifications")
    try:
        done = offsets.committed(group, topic, range(config.kafka.partitions), timeout_s=10)
    except Exception:
        return 0
    return sum(max(offset, 0) for offset in done.values())


def run_faults(config: Config, stack: Config, traffic: Traffic, jobs: Jobs, work: Path, *,
               speed: float, timeout_s: float, say: Callable[[str], None] = print
               ) -> list[Recovery]:
    """Run the whole path over *traffic* with the five faults; return their recoveries.

    *config* is the run's (isolated) config on *stack*, whose RabbitMQ and Kafka are
    restarted. *speed*: publishing rate, messages/s. Each wait is bounded by *timeout_s*.
    Ends with every table final (the bounded run done)."""
    messages = [r.captured() for _, r in traffic.messages]
    config_file = write_config(config, work / "stacktide.yaml")
    Bridge(config).declare()  # the bridge's queues exist before anything is published
    bridge = BridgeProcess(config_file, work / "bridge.log")
    publisher = Publisher(config, messages, speed, chunk=max(50, len(messages) // 200))
    monitor = Monitor(config, jobs=jobs)

    def kafka_offsets(old: GroupOffsets | None = None) -> GroupOffsets:
        """New Kafka clients for each phase (*old*'s closed): an admin client kept across the
        Kafka restart never answered a consumer group's offsets again (confluent-kafka
        2.16.1; every request timed out, minutes after the broker was back)."""
        if old is not None:
            old.close()
        return GroupOffsets(config.kafka.bootstrap_servers)

    recoveries: list[Recovery] = []
    started = time.monotonic()

    def record(name: str, fault: float, back: float, moving: float, what: str,
               running: float | None = None) -> None:
        r = Recovery(name, fault - started, back - fault, moving - fault, what,
                     None if running is None else running - fault)
        recoveries.append(r)
        say(f"{r.fault}: at {r.at_s:.1f} s, back after {r.back_s:.1f} s, path moving after "
            f"{r.moving_s:.1f} s ({r.moving})"
            + ("" if r.running_s is None else f", job RUNNING after {r.running_s:.1f} s"))

    def kill_worker(n: int) -> None:
        fault = time.monotonic()
        jobs.kill_worker()
        back = time.monotonic()
        running = monitor.wait_running(fault, timeout_s)
        record(f"{jobs.name} SIGKILL #{n}", fault, back,
               monitor.wait_commit(fault, timeout_s), "next Iceberg commit", running)

    def jobs_read(fraction: float) -> None:
        """Until the slowest job (the keyed instance job) committed *fraction* of the traffic."""
        want = fraction * len(messages)
        offsets = kafka_offsets()
        deadline = time.monotonic() + timeout_s
        try:
            while progress(offsets, config, instance_state.GROUP_ID) < want:
                if (why := jobs.alive()) is not None:
                    raise AssertionError(why)
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"the instance job read less than {want:.0f} in {timeout_s} s")
                time.sleep(0.5)
        finally:
            offsets.close()

    queue = queue_name(config.bridge.queue_prefix, config.cells[0].name, "nova")
    quiet = threading.Event()

    def status(every_s: float = 60.0) -> None:
        """Where the traffic is, every *every_s*: a stall shows which piece holds it."""
        offsets = kafka_offsets()
        while not quiet.wait(every_s):
            try:
                depth: int | str = queue_depth(config, queue)
            except Exception as exc:  # RabbitMQ down
                depth = type(exc).__name__
            read = progress(offsets, config, instance_state.GROUP_ID)
            if read == 0:
                offsets = kafka_offsets(offsets)  # (see kafka_offsets)
            say(f"  {time.monotonic() - started:7.1f} s: published {publisher.sent:,}, "
                f"queued {depth}, in Kafka {monitor.offsets[-1][1] if monitor.offsets else 0:,}, "
                f"read by the instance job {read:,}, Iceberg commits {len(monitor.commits)}")
        offsets.close()

    jobs.start()
    bridge.start()
    monitor.start()
    publisher.start()
    threading.Thread(target=status, name="status", daemon=True).start()
    try:
        # Each broker fault comes while the publisher still has traffic allowed beyond the
        # point it waits for, and more is allowed once the broken piece is back, so that
        # traffic flows before, during and after the fault.
        # 1. the bridge, mid-publishing
        publisher.allow(0.3)
        publisher.wait_sent(0.15, timeout_s)
        fault = time.monotonic()
        bridge.kill()
        bridge.start()
        back = time.monotonic()
        publisher.allow(0.35)  # traffic after the fault, however far the publisher got before
        record("bridge SIGKILL", fault, back, monitor.wait_offset(back, timeout_s),
               "next new Kafka offset")
        # 2. the jobs' worker, while they catch up
        jobs_read(0.1)
        kill_worker(1)
        # 3. RabbitMQ, mid-publishing: nova waits while it is down
        publisher.allow(0.6)
        publisher.wait_sent(0.45, timeout_s)
        publisher.pause()
        fault = time.monotonic()
        rabbitmq.restart(stack)
        back = time.monotonic()
        publisher.resume()
        record("RabbitMQ restart", fault, back, monitor.wait_offset(back, timeout_s),
               "next new Kafka offset")
        # 4. Kafka, mid-publishing (RabbitMQ holds what the bridge cannot forward meanwhile)
        publisher.allow(0.85)
        publisher.wait_sent(0.7, timeout_s)
        fault = time.monotonic()
        kafka.restart(stack)
        back = time.monotonic()
        publisher.allow(1.0)  # a slow broker stop may let the bridge forward all it had before
        record("Kafka restart", fault, back, monitor.wait_offset(back, timeout_s),
               "next new Kafka offset")
        # 5. the jobs' worker again
        kill_worker(2)
        publisher.wait_sent(1.0, timeout_s)
        say(f"published {publisher.sent} messages in {time.monotonic() - started:.1f} s")

        # Everything through the bridge, then read by every job, then the end of event time.
        deadline = time.monotonic() + timeout_s
        while queue_depth(config, queue) > 0:
            assert time.monotonic() < deadline, f"{queue} not drained: {log_tail(bridge.log)}"
            time.sleep(1.0)
        time.sleep(2.0)  # the bridge's last confirmed batch
        bridge.stop()
        ends = end_offsets(config)
        read_all = CatchUp(config, ends)
        deadline = time.monotonic() + timeout_s
        while not read_all():
            if (why := jobs.alive()) is not None:
                raise AssertionError(why)
            assert time.monotonic() < deadline, f"the jobs did not read up to {ends}"
            time.sleep(1.0)
        say(f"the jobs read all {sum(ends['notifications'].values())} records "
            f"{time.monotonic() - started:.1f} s after the start")
        jobs.finish(config)
        say(f"bounded run to the end of event time done at {time.monotonic() - started:.1f} s")
    finally:
        quiet.set()
        monitor.close()
        bridge.stop()
        jobs.close()
    return recoveries


# ---- the comparison ------------------------------------------------------------------------

def stored_duplicates(config: Config) -> dict[str, int]:
    """Rows each table holds twice: the same key (and revision, where rows are re-appended
    with a higher one) written again by a replay after a fault. Current rows cannot show them:
    readers keep one row per key."""
    catalog, ns = load_catalog(config.iceberg), config.iceberg.namespace
    out = {}
    for name, table in TABLES.items():
        key = (*table.identifier, *(("revision",) if "revision" in table.column_names() else ()))
        rows = catalog.load_table(f"{ns}.{name}").scan(selected_fields=key).to_arrow()
        counts = Counter(zip(*(rows.column(k).to_pylist() for k in key), strict=True))
        out[name] = sum(c - 1 for c in counts.values())
    return out


@dataclass(frozen=True)
class TableDiff:
    missing: int  # in the undisturbed run (or the ground truth), not in the faulted run
    unexpected: int  # the other way round
    duplicated: int  # rows the faulted run stored twice


def compare(config: Config, undisturbed: dict[str, Any], traffic: Traffic) -> dict[str, TableDiff]:
    """Every table of the faulted run against the undisturbed run's (``current_rows``), the
    usage also against the simulator's ground truth, the archive also against the message ids
    the simulator sent."""
    got = current_rows(config)
    stored = stored_duplicates(config)
    tables = {"usage": "instance_usage", "archive": "notifications"}
    out = {}
    for part, want in undisturbed.items():
        g, w = (Counter(x.items()) if isinstance(x, dict) else Counter(x) for x in (got[part], want))
        out[part] = TableDiff(sum((w - g).values()), sum((g - w).values()),
                              stored.get(tables.get(part, part), 0))
    truth = truth_usage(traffic)
    usage = Counter(table_usage(config).items())
    out["usage vs ground truth"] = TableDiff(sum((Counter(truth.items()) - usage).values()),
                                             sum((usage - Counter(truth.items())).values()), 0)
    sent = Counter({m.message_id for _, m in traffic.messages})
    archive = Counter(got["archive"])
    out["archive vs messages sent"] = TableDiff(sum((sent - archive).values()),
                                                sum((archive - sent).values()),
                                                sum(c - 1 for c in archive.values()))
    return out


def report(recoveries: list[Recovery], diffs: dict[str, TableDiff]) -> str:
    lines = ["fault                           at s   back s  moving s  running s  (moving: what)"]
    for r in recoveries:
        running = "" if r.running_s is None else f"{r.running_s:.1f}"
        lines.append(f"{r.fault:30} {r.at_s:6.1f} {r.back_s:8.1f} {r.moving_s:9.1f} {running:>10}"
                     f"  ({r.moving})")
    lines.append("table                          missing  unexpected  duplicated")
    for part, d in diffs.items():
        lines.append(f"{part:30} {d.missing:8} {d.unexpected:11} {d.duplicated:11}")
    return "\n".join(lines)

