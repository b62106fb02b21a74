"""``stacktide sql`` on the real stack: the tables and the live topic, ad hoc and ready queries.

Simulated traffic goes to Kafka and through a bounded run of the jobs; then the command (a
child process, as an operator runs it) answers from the Iceberg tables and the topic, and its
figures must equal what pyiceberg and the producer say.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.command import run_jobs
from stacktide.catalog import load_catalog
from stacktide.config import Config
from stacktide.simulate.cloud import Params
from stacktide.simulate.traffic import generate
from stacktide.usage_report import read_current
from tests.helpers import envelopes, fresh_environment, produce, setup, write_config

pytestmark = pytest.mark.stack


def sql(conf: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "stacktide.cli", "--config", str(conf), "sql",
                           *args], capture_output=True, text=True, timeout=300,
                          env=fresh_environment(), check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def counts(out: str) -> list[int]:
    """The single numbers of one-cell result tables, in order."""
    return [int(n) for n in re.findall(r"^\|\s+(\d+) \|$", out, flags=re.MULTILINE)]


def test_tables_and_topic_answer_ad_hoc_and_ready_queries(stack: Config, tmp_path: Path) -> None:
    config = setup(stack, "sqlcmd", settle_hours=1)
    items = envelopes(generate(Params(seed=4, instances=6, hours=5)))
    produce(config, items)
    assert run_jobs(config, bounded=True, fresh=True)
    conf = write_config(config, tmp_path / "c.yaml")

    script = tmp_path / "ask.sql"
    script.write_text("-- a comment; with a semicolon\n"
                      "SELECT COUNT(*) AS n FROM notifications;\n"
                      "SELECT COUNT(*) AS n FROM kafka_notifications WHERE cell <> ';';\n"
                      "SELECT COUNT(DISTINCT instance_id) AS n FROM instance_events\n")
    archived = load_catalog(config.iceberg).load_table(
        f"{config.iceberg.namespace}.notifications").scan().to_arrow().num_rows
    instances = len({e.instance_id for e in items if e.instance_id})
    assert counts(sql(conf, "-f", str(script))) == [archived, len(items), instances]
    assert archived == len({e.message_id for e in items})

    out = sql(conf, "--query", "current_instance_usage")
    assert f"{read_current(config, 'instance_usage').num_rows} rows in set" in out


def test_no_statement_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.sql"
    empty.write_text("-- nothing to run;\n")
    done = subprocess.run([sys.executable, "-m", "stacktide.cli", "sql", "-f", str(empty)],
                          capture_output=True, text=True, timeout=60, env=fresh_environment(),
                          check=False)
    assert done.returncode == 2 and "no statement given" in done.stderr
