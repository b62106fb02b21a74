"""The jobs submitted to a standalone Flink cluster, upgraded through a savepoint, lose nothing.

On the real stack and a JobManager and a TaskManager of their own (conftest ``flink_cluster``),
as an operator does it, each step a ``stacktide`` command in a process of its own:

1. simulated nova traffic, the first part, in Kafka; the jobs submitted with the plain Flink CLI,
   ``flink run -py jobs/main.py`` as docs/cluster.md shows it (parallelism 1);
2. once the archive holds the first part: ``stacktide jobs stop --savepoint-dir``;
3. the rest of the traffic; a changed version of the job submitted from that savepoint with
   ``stacktide jobs submit --from-savepoint`` (both routes build one graph, one set of uids): another
   parallelism (state redistributed by key group) and another checkpoint interval, the same
   operator uids; restoring refuses any state no operator claims, so a lost uid fails it;
4. once every job read everything: ``jobs stop --drain`` (end of event time, the way a
   bounded run ends).

The tables then equal the simulator's ground truth: usage to the microsecond, the archive
holding each notification once, every lifecycle event once.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyflink
import pytest
import yaml

from jobs.command import JOB_NAME, caught_up, end_offsets
from stacktide.catalog import load_catalog
from stacktide.config import REPO_ROOT, Config
from stacktide.local.flink_cluster import FlinkCluster
from stacktide.simulate.cloud import Params
from stacktide.simulate.delivery import Delivery
from stacktide.simulate.traffic import generate
from tests.helpers import (
    check_usage,
    committed,
    envelopes,
    fresh_environment,
    produce,
    setup,
    state_events,
    write_config,
)

pytestmark = pytest.mark.stack



def stacktide(config_file: Path, *args: str, log_file: Path) -> str:
    """Run a ``stacktide`` command as an operator would; its standard output."""
    with log_file.open("ab") as err:
        done = subprocess.run([sys.executable, "-m", "stacktide.cli", "--config", str(config_file),
                               *args], stdout=subprocess.PIPE, stderr=err, env=fresh_environment(),
                              timeout=900, check=False)
    assert done.returncode == 0, log_file.read_text()[-4000:]
    return done.stdout.decode().strip()


def flink_run(config_file: Path, cluster: FlinkCluster, *, log_file: Path) -> str:
    """``flink run -py jobs/main.py``, the wheel's CLI, as docs/cluster.md gives it; the job id."""
    env = fresh_environment()
    env["HADOOP_CLASSPATH"] = stacktide(config_file, "local", "jars", "--classpath",
                                        log_file=log_file)
    with log_file.open("ab") as err:
        done = subprocess.run(
            [str(Path(pyflink.__file__).parent / "bin" / "flink"), "run", "-m", cluster.address,
             "-d", "-py", "jobs/main.py", "-pyfs", "stacktide,jobs", "-pyexec", sys.executable,
             "-pyclientexec", sys.executable, "--", "--config", str(config_file)],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=err, env=env, timeout=900, check=False)
    out = done.stdout.decode()
    assert done.returncode == 0, out[-2000:] + log_file.read_text()[-4000:]
    submitted = re.findall(r"^submitted stacktide-jobs: job ([0-9a-f]{32})$", out, re.MULTILINE)
    assert len(submitted) == 1, out[-2000:]
    return submitted[0]


def version(config: Config, path: Path, *, parallelism: int, checkpoint_s: float) -> Path:
    """The stacktide config of one version of the job."""
    data = yaml.safe_load(write_config(config, path).read_text())
    data["jobs"].update(parallelism=parallelism, checkpoint_interval_s=checkpoint_s)
    path.write_text(yaml.safe_dump(data))
    return path


def wait(condition: object, seconds: float, what: str, cluster: FlinkCluster) -> float:
    """Seconds until *condition*() held; fails naming *what* and the cluster's logs."""
    started = time.monotonic()
    while not condition():  # type: ignore[operator]
        assert time.monotonic() - started < seconds, f"{what}: not within {seconds} s; see " \
                                                     f"{cluster.log_dir}"
        time.sleep(1.0)
    return time.monotonic() - started


def running_job(cluster: FlinkCluster, job_id: str) -> bool:
    return cluster.rest.all_tasks_running(job_id)


def test_submitted_job_upgraded_from_a_savepoint_keeps_every_row(
        stack: Config, flink_cluster: FlinkCluster, tmp_path: Path) -> None:
    traffic = generate(Params(seed=29, instances=40, hours=36), "legacy",
                       Delivery(29, reorder_window_s=60.0, delay_fraction=0.03,
                                delay_hours=(1.0, 3.0), duplicate_fraction=0.05), corrupt=3)
    items = envelopes(traffic)
    config = setup(stack, "cluster", settle_hours=4)
    first = version(config, tmp_path / "v1.yaml", parallelism=1, checkpoint_s=2.0)
    second = version(config, tmp_path / "v2.yaml", parallelism=2, checkpoint_s=3.0)
    out, cluster = tmp_path / "commands.log", flink_cluster
    jm = ["--jobmanager", cluster.address]
    cut = len(items) * 3 // 5
    produce(config, items[:cut])

    started = time.monotonic()
    job = flink_run(first, cluster, log_file=out)
    submitted = time.monotonic() - started
    to_running = wait(lambda: running_job(cluster, job), 300, "v1 running", cluster)
    part = len({e.message_id for e in items[:cut]})
    reading = wait(lambda: committed(config) >= part, 600, "v1 archived part 1", cluster)

    savepoints = tmp_path / "savepoints"
    started = time.monotonic()
    savepoint = stacktide(first, "jobs", "stop", *jm, "--savepoint-dir", str(savepoints),
                          log_file=out)
    stopping = time.monotonic() - started
    assert cluster.rest.job_state(job) == "FINISHED"
    assert savepoint.removeprefix("file:").startswith(str(savepoints)), savepoint

    produce(config, items[cut:])
    started = time.monotonic()
    upgraded = stacktide(second, "jobs", "submit", *jm, "--from-savepoint", savepoint,
                         log_file=out)
    assert upgraded != job
    resubmitted = time.monotonic() - started
    to_running_2 = wait(lambda: running_job(cluster, upgraded), 300, "v2 running", cluster)
    detail = cluster.rest.job(upgraded)
    # Writers, dedup, keyed functions and their clocks at 2; the Iceberg committers at 1, as
    # Flink runs them.
    assert 2 in {v["parallelism"] for v in detail["vertices"]}, detail["vertices"]
    ends = end_offsets(config)
    rest = len({e.message_id for e in items}) - part
    catching_up = wait(lambda: caught_up(config, ends), 600, "v2 read every topic", cluster)
    stacktide(second, "jobs", "stop", *jm, "--drain", log_file=out)
    assert cluster.rest.job_state(upgraded) == "FINISHED"

    # Figures for docs/cluster.md (shown with pytest -s); rates are from RUNNING to all read.
    print(f"cluster submit: v1 flink run {submitted:.1f} s + to RUNNING {to_running:.1f} s, "
          f"{part} notifications archived in {reading:.1f} s ({part / max(reading, 1e-3):.0f}/s); "
          f"stop-with-savepoint {stopping:.1f} s; v2 (parallelism 2) submit {resubmitted:.1f} s "
          f"+ to RUNNING {to_running_2:.1f} s, the other {rest} read in {catching_up:.1f} s "
          f"({rest / max(catching_up, 1e-3):.0f}/s)")
    check_usage(config, traffic, items)
    catalog, ns = load_catalog(config.iceberg), config.iceberg.namespace
    archived = Counter(catalog.load_table(f"{ns}.notifications").scan(
        selected_fields=("message_id",)).to_arrow().column("message_id").to_pylist())
    assert set(archived) == {e.message_id for e in items} and max(archived.values()) == 1
    history = catalog.load_table(f"{ns}.instance_events").scan().to_arrow()
    assert Counter(history.column("message_id").to_pylist()) == Counter(state_events(items))
    assert not cluster.rest.running(JOB_NAME)
