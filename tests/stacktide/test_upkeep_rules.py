"""The upkeep rules without the JVM: compaction plans, the Flink commit a cutoff keeps,
orphans and what they are told apart from. The whole command runs in tests/e2e/test_upkeep.py."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from stacktide.catalog import ensure_table, load_catalog
from stacktide.config import config_from_mapping
from stacktide.schema import TABLES
from stacktide.upkeep import (
    DataFileInfo,
    ancestry,
    delete_files,
    expiry_cutoff_ms,
    find_orphans,
    last_flink_commit,
    list_files,
    local_path,
    plan_compaction,
    reachable_files,
    table_folders,
)

MB = 1024 * 1024


def f(name: str, size_mb: float, partition: str = "0/day=1", seq: int = 1,
      deletes: bool = False) -> DataFileInfo:
    return DataFileInfo(name, int(size_mb * MB), partition, seq, deletes)


def test_small_files_are_packed_per_partition_in_commit_order() -> None:
    files = [f("a3", 40, seq=3), f("a1", 40, seq=1), f("a2", 40, seq=2), f("a4", 10, seq=4),
             f("b1", 1, "0/day=2"), f("b2", 1, "0/day=2"),
             f("c1", 1, "0/day=3")]  # alone in its partition: nothing to merge it with
    groups = plan_compaction(files, target_bytes=100 * MB, min_input_files=2)
    assert [(g.partition, [x.path for x in g.files]) for g in groups] == [
        ("0/day=1", ["a1", "a2"]),  # a3 does not fit beside them: it starts the next group
        ("0/day=1", ["a3", "a4"]),
        ("0/day=2", ["b1", "b2"]),
    ]
    assert groups[0].size == 80 * MB


def test_big_files_deleted_rows_and_lone_files_stay() -> None:
    files = [f("big", 80), f("big2", 120), f("s1", 1), f("d1", 1, deletes=True),
             f("x", 1, "1/day=1")]  # same partition path, another spec: not mixed
    assert plan_compaction(files, target_bytes=100 * MB, min_input_files=2) == []
    more = [*files, f("s2", 1, seq=2), f("s3", 1, seq=3)]
    assert [[x.path for x in g.files] for g in plan_compaction(
        more, target_bytes=100 * MB, min_input_files=3)] == [["s1", "s2", "s3"]]
    assert plan_compaction(more, target_bytes=100 * MB, min_input_files=4) == []


def test_local_paths_of_both_clients_are_one_file() -> None:
    assert local_path("file:/w/t/data/a.parquet") == local_path("file:///w/t/data/a.parquet") \
        == local_path("/w/t/data/a.parquet") == Path("/w/t/data/a.parquet")
    assert local_path("file:/w/t/data/cell=a%2Fb/x.parquet") == Path("/w/t/data/cell=a%2Fb/x.parquet")
    assert local_path("s3://bucket/w/t/data/a.parquet") is None


def touch(path: Path, age_s: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * 10)
    when = time.time() - age_s
    os.utime(path, (when, when))
    return path


def test_orphans_are_old_unreferenced_files_and_their_checksums(tmp_path: Path) -> None:
    day = 86400
    kept = touch(tmp_path / "data" / "p=1" / "kept.parquet", 9 * day)
    kept_crc = touch(tmp_path / "data" / "p=1" / ".kept.parquet.crc", 9 * day)
    old = touch(tmp_path / "data" / "p=2" / "old.parquet", 9 * day)
    old_crc = touch(tmp_path / "data" / "p=2" / ".old.parquet.crc", 9 * day)
    young = touch(tmp_path / "data" / "p=1" / "young.parquet", 3600)
    lone_crc = touch(tmp_path / "metadata" / ".gone.avro.crc", 9 * day)
    folders = [tmp_path / "data", tmp_path / "metadata"]
    scan = find_orphans(list_files(folders), {kept}, older_than_s=3 * day, now=time.time())
    assert [o.path for o in scan.orphans] == sorted([old, old_crc, lone_crc])
    assert [y.path for y in scan.young] == [young]
    delete_files(scan.orphans, folders)
    assert kept.exists() and kept_crc.exists() and young.exists()
    assert not old.exists() and not old_crc.exists() and not lone_crc.exists()
    assert not (tmp_path / "data" / "p=2").exists()  # emptied by the cleanup
    assert (tmp_path / "metadata").is_dir()  # a table folder stays, empty or not


@pytest.fixture
def table(tmp_path: Path) -> Any:
    """A real table (pyiceberg, SQLite catalog) with plain appends and Flink-like commits."""
    config = config_from_mapping({"local": {"state_dir": str(tmp_path)}}, "<test>", base=tmp_path)
    catalog = load_catalog(config.iceberg)
    definition = TABLES["instance_events"]
    t = ensure_table(catalog, config.iceberg, definition)
    values = {"string": "v", "timestamptz": datetime(2030, 1, 1, tzinfo=UTC), "long": 1, "int": 1,
              "double": 1.0, "boolean": True}
    row = {c.name: values[c.type] for c in definition.columns}
    flink = {1: ("job-a", "7"), 3: ("job-b", "2")}  # commits 1 and 3 as the sink writes them
    for i in range(5):
        props = {} if i not in flink else {"flink.job-id": flink[i][0], "flink.operator-id": "op",
                                           "flink.max-committed-checkpoint-id": flink[i][1]}
        t.append(pa.Table.from_pylist([{**row, "message_id": f"m{i}"}],
                                      schema=t.schema().as_arrow()), snapshot_properties=props)
    return catalog.load_table("stacktide.instance_events")


def test_the_newest_flink_commit_and_all_after_it_survive_the_cutoff(table: Any) -> None:
    metadata = table.metadata
    chain = ancestry(metadata)
    assert len(chain) == 5 and chain[0].snapshot_id == metadata.current_snapshot_id
    commit = last_flink_commit(metadata)
    assert commit is not None
    assert (commit.snapshot_id, commit.job_id, commit.checkpoint_id, commit.operator_id) == (
        chain[1].snapshot_id, "job-b", 2, "op")
    now = int(time.time() * 1000) + 1
    assert expiry_cutoff_ms(metadata, now) == min(s.timestamp_ms for s in chain[:2])
    assert expiry_cutoff_ms(metadata, 0) == 0  # an older cutoff is left as asked


def test_reachable_files_are_what_the_metadata_references(table: Any) -> None:
    folders = table_folders(table)
    assert folders is not None
    files = {f.path for f in list_files(folders) if not f.checksum}
    everything = reachable_files(table)
    assert files <= everything  # nothing on disk is unreferenced yet
    data = {p for p in files if p.suffix == ".parquet"}
    assert len(data) == 5
    newest = {table.metadata.current_snapshot_id}
    assert data <= reachable_files(table, newest)  # the last snapshot holds every row
    only_old = reachable_files(table) - reachable_files(table, newest)
    assert only_old and all(p.name.startswith("snap-") for p in only_old)  # manifest lists
