"""``stacktide tables maintain`` on tables the jobs wrote: same rows, fewer files, the Flink
commit kept, orphans gone, and the jobs resume and commit afterwards.

A streaming ``stacktide jobs run`` (a child process, checkpoints every second) reads
simulated nova traffic written to Kafka in parts, so every table gets many commits, small
files and snapshots; it is stopped with a savepoint. The upkeep command (a child process, as
cron or a systemd timer runs it) then compacts, expires every snapshot it may and deletes
an orphan planted with an old modification time, not a fresh one. Every table must hold the
same rows as before, fewer live data files, and the snapshot the Flink sink reads on restore.

The jobs then resume from the savepoint and stream the rest of the traffic while a second
upkeep runs, committing as it compacts and expires, and a bounded run ends them: every
notification is archived once, the lifecycle history has each state change once and the
usage equals the simulator's truth. The second upkeep, run once the jobs had committed on
top of the first compaction, deleted the small files the first one replaced.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from jobs.command import caught_up, end_offsets, run_jobs
from stacktide.catalog import load_catalog
from stacktide.config import Config
from stacktide.schema import TABLES
from stacktide.simulate.cloud import Params
from stacktide.simulate.delivery import Delivery
from stacktide.simulate.traffic import generate
from stacktide.upkeep import ancestry, last_flink_commit, local_path
from tests.helpers import (
    check_usage,
    committed,
    envelopes,
    fresh_environment,
    jobs_running,
    produce,
    setup,
    state_events,
    stop_jobs,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.stack

STREAMED_PARTS = 5  # parts the streaming run reads; one more comes after the upkeep


def tables(config: Config) -> dict[str, Any]:
    catalog, ns = load_catalog(config.iceberg), config.iceberg.namespace
    return {name: catalog.load_table(f"{ns}.{name}") for name in TABLES
            if catalog.table_exists(f"{ns}.{name}")}


def rows(config: Config) -> dict[str, Counter[tuple[Any, ...]]]:
    """Every row of every table, revisions and all: compaction must move rows, not change them."""
    return {name: Counter(tuple(sorted(r.items())) for r in t.scan().to_arrow().to_pylist())
            for name, t in tables(config).items()}


def live_files(table: Any) -> set[str]:
    """Paths of the data files a reader of the current snapshot reads."""
    return {task.file.file_path for task in table.scan().plan_files()}


def files_on_disk(table: Any) -> int:
    """Files of the table on disk, Hadoop's checksum files left out."""
    root = local_path(table.metadata.location)
    assert root is not None
    return sum(1 for p in root.rglob("*") if p.is_file() and not p.name.endswith(".crc"))


MAINTAIN = ("tables", "maintain", "--expire-older-than", "0s", "--retain-last", "1",
            "--output", "json")


def maintain(conf: Path) -> dict[str, Any]:
    """The upkeep command as cron or a systemd timer runs it: every snapshot it may expired."""
    done = subprocess.run([sys.executable, "-m", "stacktide.cli", "--config", str(conf),
                           *MAINTAIN], capture_output=True, text=True, timeout=1200,
                          env=fresh_environment(), check=False)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    return dict(json.loads(done.stdout))


def start_maintain(conf: Path, stem: Path) -> subprocess.Popen[bytes]:
    """:func:`maintain` in the background: its report in ``<stem>.out``, its log ``.err``."""
    with stem.with_suffix(".out").open("wb") as out, stem.with_suffix(".err").open("wb") as err:
        return subprocess.Popen([sys.executable, "-m", "stacktide.cli", "--config", str(conf),
                                 *MAINTAIN], stdout=out, stderr=err, env=fresh_environment())


def archived(config: Config, n: int) -> bool:
    return committed(config) >= n


def plant(folder: Path, name: str, age_s: float) -> Path:
    path = folder / name
    path.write_bytes(b"not referenced by any snapshot")
    when = time.time() - age_s
    os.utime(path, (when, when))
    return path


def test_upkeep_compacts_expires_and_cleans_while_the_jobs_keep_their_commit(
        stack: Config, tmp_path: Path) -> None:
    config = setup(stack, "upkeep", settle_hours=4, state_dir=tmp_path / "state")
    traffic = generate(Params(seed=21, instances=40, hours=30), "legacy",
                       Delivery(21, reorder_window_s=60.0, duplicate_fraction=0.05))
    items = envelopes(traffic)
    size = len(items) // (STREAMED_PARTS + 1)
    parts = [items[i * size:(i + 1) * size] for i in range(STREAMED_PARTS)]
    rest = items[STREAMED_PARTS * size:]
    conf = write_config(config, tmp_path / "c.yaml")

    # Many commits: a streaming run reads the parts one after the other.
    log = tmp_path / "jobs.log"
    with jobs_running(conf, log) as job:
        sent: set[str] = set()
        for part in parts:
            produce(config, part)
            sent |= {e.message_id for e in part}
            wait_for(functools.partial(archived, config, len(sent)), job, log, 300)
        ends = end_offsets(config)
        wait_for(lambda: caught_up(config, ends), job, log, 300)
        stop_jobs(job, log)  # stops with a savepoint the next run resumes from

    before = tables(config)
    want = rows(config)
    commits = {name: last_flink_commit(t.metadata) for name, t in before.items()}
    small = {name: live_files(t) for name, t in before.items()}
    on_disk = {name: files_on_disk(t) for name, t in before.items()}
    assert all(commits.values()), commits  # every table was committed by the Flink sink
    assert len(before["notifications"].metadata.snapshots) >= STREAMED_PARTS
    data = local_path(before["notifications"].metadata.location)
    assert data is not None
    old = plant(data / "data", "stray-old.parquet", age_s=10 * 86400)
    old_crc = plant(data / "data", ".stray-old.parquet.crc", age_s=10 * 86400)
    old_meta = plant(data / "metadata", "00000-stray.metadata.json", age_s=10 * 86400)
    fresh = plant(data / "data", "stray-new.parquet", age_s=60)

    report = {t["table"].split(".")[-1]: t for t in maintain(conf)["tables"]}

    assert set(report) == set(before)
    assert rows(config) == want
    after = tables(config)
    print("\nIceberg files per table, before -> after the first upkeep "
          "(live data files; files on disk)")
    for name, t in after.items():
        r = report[name]
        assert r["error"] is None, r
        print(f"  {name:16} {len(small[name]):4} -> {len(live_files(t)):3}; "
              f"{on_disk[name]:4} -> {files_on_disk(t):4}  "
              f"snapshots {r['before']['snapshots']} -> {r['after']['snapshots']}")
        # The report counts what pyiceberg sees.
        assert r["before"]["data_files"] == len(small[name])
        assert r["after"]["data_files"] == len(live_files(t))
        compaction = r["compaction"]
        assert len(live_files(t)) == (len(small[name]) - compaction["files_rewritten"]
                                      + compaction["files_written"])
        # Only the newest Flink commit and what followed it stay; the sink finds it again.
        kept = last_flink_commit(t.metadata)
        assert kept is not None and kept == commits[name], (name, kept, commits[name])
        chain = [s.snapshot_id for s in ancestry(t.metadata)]
        assert {s.snapshot_id for s in t.metadata.snapshots} == set(
            chain[:chain.index(kept.snapshot_id) + 1])
        assert r["expiry"]["snapshots_expired"] == r["before"]["snapshots"] + (
            1 if compaction["files_written"] else 0) - r["after"]["snapshots"]
        assert r["expiry"]["flink_commit"]["snapshot_id"] == kept.snapshot_id
    notifications = report["notifications"]
    assert notifications["compaction"]["files_rewritten"] > notifications["compaction"]["files_written"] > 0
    assert sum(len(live_files(t)) for t in after.values()) < sum(map(len, small.values()))
    assert sorted(notifications["orphans"]["paths"]) == sorted([str(old), str(old_meta)])
    assert not old.exists() and not old_crc.exists() and not old_meta.exists()
    assert fresh.exists() and notifications["orphans"]["young_kept"] >= 1

    # The jobs resume from the savepoint and stream the rest of the traffic; meanwhile a second
    # upkeep runs, so their commits land while it compacts and expires. Once they committed
    # on top of the first compaction, the files it replaced go (the kept commit held them).
    replaced = {name: small[name] - live_files(t) for name, t in after.items()}
    half = len(rest) // 2
    chunks = [rest[i:i + 10] for i in range(half, len(rest), 10)]
    with jobs_running(conf, log) as job:
        produce(config, rest[:half])
        streamed = {e.message_id for e in items[:STREAMED_PARTS * size + half]}
        wait_for(functools.partial(archived, config, len(streamed)), job, log, 300)
        upkeep = start_maintain(conf, tmp_path / "upkeep")
        at_start = committed(config)
        while upkeep.poll() is None:
            if chunks:
                produce(config, chunks.pop(0))
            time.sleep(3.0)
        during = committed(config) - at_start
        for chunk in chunks:
            produce(config, chunk)
        assert upkeep.returncode == 0, (tmp_path / "upkeep.err").read_text()[-3000:]
        second = {t["table"].split(".")[-1]: t
                  for t in json.loads((tmp_path / "upkeep.out").read_text())["tables"]}
        ends = end_offsets(config)
        wait_for(lambda: caught_up(config, ends), job, log, 300)
        stop_jobs(job, log)
    assert during > 0  # the jobs committed while the upkeep ran
    assert all(t["error"] is None for t in second.values()), second
    assert second["notifications"]["expiry"]["snapshots_expired"] > 0
    assert run_jobs(config, bounded=True)  # the end of event time: every usage row final

    final = tables(config)
    archive = Counter(final["notifications"].scan(
        selected_fields=("message_id",)).to_arrow().column("message_id").to_pylist())
    assert set(archive) == {e.message_id for e in items} and set(archive.values()) == {1}
    history = Counter(final["instance_events"].scan(
        selected_fields=("message_id",)).to_arrow().column("message_id").to_pylist())
    assert history == Counter(state_events(items))
    check_usage(config, traffic)
    gone = [p for paths in replaced.values() for p in paths]
    assert gone and not any(Path(local_path(p) or p).exists() for p in gone)
    print(f"second upkeep, while the jobs committed {during} notifications: live data files; "
          "files on disk")
    for name, r in second.items():
        print(f"  {name:16} {r['before']['data_files']:4} -> {r['after']['data_files']:3}; "
              f"{r['before']['files']:4} -> {r['after']['files']:4}  "
              f"snapshots {r['before']['snapshots']} -> {r['after']['snapshots']}")
