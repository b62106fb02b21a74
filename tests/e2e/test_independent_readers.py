"""Every table the jobs write, read by two Iceberg implementations that share no code.

The real jobs fill every table of ``stacktide.schema.TABLES`` from simulated nova traffic
(reordered, late and repeated, with failing requests, so revised rows, errors and nova's
audit all occur), the corpus' notifications (real payloads of many services) and a host
agent's samples. Each table is then read by pyiceberg and by DuckDB's own Iceberg extension,
from the table's current metadata file in the JDBC catalog, and the two must hold the same
rows with the same values, as many as the snapshot's summary counts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pytest
import yaml

from connectors.wire import parse
from jobs.command import run_jobs
from stacktide.catalog import load_catalog
from stacktide.config import DEFAULT_CONFIG, Config
from stacktide.corpus import iter_samples
from stacktide.local.kafka import ensure_topics
from stacktide.readers import iceberg_duckdb
from stacktide.schema import TABLES, Envelope, TableDef
from stacktide.simulate.cloud import Params
from stacktide.simulate.delivery import Delivery
from stacktide.simulate.traffic import generate
from tests.helpers import envelopes, fresh_environment, isolated, produce
from tests.host_agent.domains import write_node

pytestmark = pytest.mark.stack

RECEIVED = datetime(2030, 1, 1, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# What DuckDB must call each column type of stacktide.schema.
DUCKDB_TYPES = {"string": "VARCHAR", "timestamptz": "TIMESTAMP WITH TIME ZONE", "long": "BIGINT",
                "int": "INTEGER", "double": "DOUBLE", "boolean": "BOOLEAN"}


def corpus_envelopes() -> list[Envelope]:
    """Every corpus notification the bridge would forward, as it would write it to Kafka."""
    out = []
    for sample in iter_samples():
        env = parse(sample.body, cell="corpus", exchange=sample.exchange,
                    routing_key=sample.routing_key, received=RECEIVED)
        if isinstance(env, Envelope):
            out.append(env)
    return out


def agent_samples(config: Config, tmp_path: Path) -> None:
    """Two polls of ``stacktide host-agent`` over libvirt's test driver, produced straight to
    the samples topic (``target: kafka``)."""
    write_node(tmp_path / "node.xml", domains=3, disks=1, nics=1)
    conf = tmp_path / "agent.yaml"
    conf.write_text(yaml.safe_dump({
        "kafka": {"bootstrap_servers": config.kafka.bootstrap_servers,
                  "topic_prefix": config.kafka.topic_prefix},
        "host_agent": {"uri": f"test://{tmp_path / 'node.xml'}", "host": "cmp-readers",
                       "target": "kafka", "interval_s": 0.3,
                       "meters": str(DEFAULT_CONFIG.parent / "meters.yaml")},
    }))
    subprocess.run([sys.executable, "-m", "stacktide.cli", "--config", str(conf), "host-agent",
                    "--polls", "2"], capture_output=True, text=True, timeout=120, check=True,
                   env=fresh_environment())


@pytest.fixture(scope="module")
def landed(stack: Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    """One bounded run of the jobs over a little of everything they read."""
    config = isolated(stack, "readers")
    ensure_topics(config)
    traffic = generate(Params(seed=23, instances=12, hours=6), "both",
                       Delivery(23, reorder_window_s=60.0, delay_fraction=0.05,
                                delay_hours=(0.2, 0.5), duplicate_fraction=0.05),
                       corrupt=2, failures=1)
    produce(config, [*envelopes(traffic), *corpus_envelopes()])
    agent_samples(config, tmp_path_factory.mktemp("agent"))
    assert run_jobs(config, bounded=True, fresh=True)
    yield config


def normalized(value: Any, kind: str) -> Any:
    """A cell as both readers must agree on it: a time as integer microseconds since the epoch
    (whatever the zone a reader attaches), anything else exactly as read."""
    if value is None:
        return None
    if kind == "timestamptz":
        assert isinstance(value, datetime) and value.tzinfo is not None, value
        return (value - EPOCH) // (datetime.resolution)
    return value


def rows(table: pa.Table, definition: TableDef) -> Counter[tuple[Any, ...]]:
    assert table.column_names == definition.column_names()
    kinds = [c.type for c in definition.columns]
    return Counter(tuple(normalized(v, k) for v, k in zip(row, kinds, strict=True))
                   for row in zip(*(table.column(c).to_pylist() for c in table.column_names),
                                  strict=True))


def current_summary(location: str) -> dict[str, str]:
    """The summary of the table's current snapshot, from the metadata file itself."""
    metadata = json.loads(Path(urlparse(location).path).read_text())
    return next(s["summary"] for s in metadata["snapshots"]
                if s["snapshot-id"] == metadata["current-snapshot-id"])


@pytest.mark.parametrize("name", sorted(TABLES))
def test_pyiceberg_and_duckdb_read_the_same_rows(landed: Config, name: str) -> None:
    config, definition = landed, TABLES[name]
    by_pyiceberg = load_catalog(config.iceberg).load_table(
        f"{config.iceberg.namespace}.{name}").scan().to_arrow()
    with iceberg_duckdb.connect() as con:
        location = iceberg_duckdb.metadata_location(config.iceberg, name)
        described = con.execute("DESCRIBE SELECT * FROM iceberg_scan(?)", [location]).fetchall()
        by_duckdb = iceberg_duckdb.read_arrow(con, config.iceberg, name)
    assert [(r[0], r[1]) for r in described] == [
        (c.name, DUCKDB_TYPES[c.type]) for c in definition.columns]

    summary = current_summary(location)
    # Append only: no delete file, whose handling differs between readers (pyiceberg 0.8 does
    # not apply a position delete committed with its data file).
    assert summary["total-delete-files"] == "0", summary
    assert by_pyiceberg.num_rows == int(summary["total-records"]) > 0
    assert rows(by_duckdb, definition) == rows(by_pyiceberg, definition)


def test_the_run_revised_rows(landed: Config) -> None:
    """Some key got several revisions (nova's audit rows: pending, then settled), so the
    comparison above covered rows revised within a run, which Flink's sink deleted by position
    while the revised tables declared identifier fields."""
    revised = {}
    with iceberg_duckdb.connect() as con:
        for name, definition in TABLES.items():
            if "revision" in definition.column_names():
                table = iceberg_duckdb.read_arrow(con, landed.iceberg, name)
                keys = Counter(zip(*(table.column(k).to_pylist() for k in definition.identifier),
                                   strict=True))
                revised[name] = sum(n > 1 for n in keys.values())
    assert revised["usage_audit"] > 0, revised
