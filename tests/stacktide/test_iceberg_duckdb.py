"""DuckDB's own Iceberg reader, loaded from its pip packages, on a table pyiceberg wrote.

The e2e test (tests/e2e/test_independent_readers.py) compares both readers on every table the
jobs write; this one needs no stack: a table written here, read back by DuckDB, offline.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from stacktide.catalog import ensure_table, load_catalog
from stacktide.config import Config, config_from_mapping
from stacktide.errors import StacktideError
from stacktide.readers import iceberg_duckdb
from stacktide.schema import TABLES


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return config_from_mapping({"local": {"state_dir": str(tmp_path / "state")}}, "<test>",
                               base=tmp_path)


def test_duckdb_reads_what_pyiceberg_wrote(config: Config) -> None:
    table = ensure_table(load_catalog(config.iceberg), config.iceberg, TABLES["errors"])
    schema = table.schema().as_arrow()
    rows = [{"message_id": f"m{i}", "at": datetime(2024, 1, 1, 0, 0, i, 123456, UTC),
             "cell": "cell1", "message": "délai dépassé ✓" if i else None, "revision": i}
            for i in range(3)]
    table.append(pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in rows],
                                      schema=schema))
    with iceberg_duckdb.connect() as con:
        loaded = {r[0] for r in con.execute(
            "SELECT extension_name FROM duckdb_extensions() WHERE loaded").fetchall()}
        read = iceberg_duckdb.read_arrow(con, config.iceberg, "errors")
    assert {"avro", "iceberg"} <= loaded
    assert read.column_names == TABLES["errors"].column_names()
    assert sorted(read.select(["message_id", "at", "message", "revision"]).to_pylist(),
                  key=lambda r: r["message_id"]) == [
        {k: r[k] for k in ("message_id", "at", "message", "revision")} for r in rows]


def test_a_missing_table_is_named(config: Config) -> None:
    load_catalog(config.iceberg)  # the catalog exists, the table does not
    with pytest.raises(StacktideError, match=r"no table stacktide\.requests in catalog 'stacktide'"):
        iceberg_duckdb.metadata_location(config.iceberg, "requests")


def test_the_extension_files_match_the_installed_duckdb() -> None:
    import duckdb

    for name in iceberg_duckdb.EXTENSIONS:
        path = iceberg_duckdb.extension_file(name)
        assert path.is_file() and path.parent.name == f"v{duckdb.__version__}"
