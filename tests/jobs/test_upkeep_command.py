"""``stacktide tables maintain`` without the JVM: orphan cleanup alone on a real (pyiceberg)
table, dry run and real, and the errors of bad flags. The compaction and expiry steps run
on tables the jobs wrote in tests/e2e/test_upkeep.py."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

from stacktide.catalog import ensure_table, load_catalog
from stacktide.cli import main
from stacktide.config import load_config
from stacktide.schema import TABLES


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    path = tmp_path / "stacktide.yaml"
    path.write_text(yaml.safe_dump({"local": {"state_dir": str(tmp_path / "state")},
                                    "upkeep": {"orphan_older_than": "2d"}}))
    return path


def instance_events(conf: Path) -> Any:
    config = load_config(conf)
    definition = TABLES["instance_events"]
    table = ensure_table(load_catalog(config.iceberg), config.iceberg, definition)
    values = {"string": "v", "timestamptz": datetime(2030, 1, 1, tzinfo=UTC), "long": 1, "int": 1,
              "double": 1.0, "boolean": True}
    table.append(pa.Table.from_pylist([{c.name: values[c.type] for c in definition.columns}],
                                      schema=table.schema().as_arrow()))
    return table


def plant(path: Path, age_s: float) -> Path:
    path.write_bytes(b"x")
    os.utime(path, (time.time() - age_s, time.time() - age_s))
    return path


def test_orphans_alone_dry_run_then_for_real(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = instance_events(conf)
    folder = Path(table.metadata.location.removeprefix("file://"))
    old = plant(folder / "data" / "old.parquet", 3 * 86400)
    young = plant(folder / "metadata" / "young.avro", 86400)
    command = ["--config", str(conf), "tables", "maintain", "--skip", "compact,expire",
               "--output", "json"]

    assert main([*command, "--dry-run"]) == 0
    dry = json.loads(capsys.readouterr().out)
    [t] = dry["tables"]
    assert dry["dry_run"] and t["compaction"] is None and t["expiry"] is None
    assert (t["orphans"]["paths"], t["orphans"]["young_kept"]) == ([str(old)], 1)
    assert old.exists() and t["after"] is None

    assert main(command) == 0
    [t] = json.loads(capsys.readouterr().out)["tables"]
    assert t["orphans"]["files_deleted"] == 1 and t["orphans"]["older_than"] == "2d"
    assert not old.exists() and young.exists()
    assert t["after"]["files"] == t["before"]["files"] - 1
    assert t["after"]["data_files"] == t["before"]["data_files"] == 1
    assert load_catalog(load_config(conf).iceberg).load_table(
        "stacktide.instance_events").scan().to_arrow().num_rows == 1

    assert main([*command[:-2], "--orphan-older-than", "1h"]) == 0  # text output
    assert "orphans: 1 files (1 B) deleted" in capsys.readouterr().out  # young.avro, a day old


@pytest.mark.parametrize(("flags", "message"), [
    (["--table", "nope"],
     "--table: no table nope in namespace stacktide (tables there: instance_events)"),
    (["--skip", "vacuum"], "--skip: expected steps among compact, expire, orphans, got vacuum"),
    (["--orphan-older-than", "10m"], "--orphan-older-than: expected at least 1h"),
])
def test_bad_flags_are_named(conf: Path, flags: list[str], message: str,
                             capsys: pytest.CaptureFixture[str]) -> None:
    instance_events(conf)
    assert main(["--config", str(conf), "tables", "maintain", *flags]) == 2
    assert message in capsys.readouterr().err


def test_a_bad_duration_is_refused_by_the_parser(conf: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--config", str(conf), "tables", "maintain", "--expire-older-than", "soon"])
    assert info.value.code == 2
    assert "a duration such as 7d" in capsys.readouterr().err
