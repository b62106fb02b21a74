"""The Iceberg catalog on PostgreSQL: the jobs (Flink's JdbcCatalog), the Python readers
(pyiceberg's SqlCatalog) and ``stacktide sql`` share one catalog in a real PostgreSQL server.

Only the configuration changes: ``iceberg.uri`` names the server, ``iceberg.user`` and
``iceberg.password`` log in. Simulated traffic goes to Kafka and through a bounded run of
the jobs; what the tables hold must be the simulator's ground truth, the catalog's rows must be
in PostgreSQL, and the password must appear in no output and no log.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import psycopg2
import pytest
import yaml

from stacktide.cli import main
from stacktide.config import Config
from stacktide.local.postgres import Cluster
from stacktide.schema import TABLES
from tests.e2e.test_sql_command import counts, sql
from tests.helpers import (
    check_tenant_usage,
    fresh_environment,
    setup,
    small_cloud_through_the_jobs,
    write_config,
)

pytestmark = pytest.mark.stack


def on_postgres(config: Config, cluster: Cluster) -> Config:
    """*config* with its catalog in *cluster* (the warehouse stays where it was)."""
    return dataclasses.replace(config, iceberg=dataclasses.replace(
        config.iceberg, uri=cluster.jdbc_uri, user=cluster.user, password=cluster.password))


def catalog_rows(cluster: Cluster, config: Config) -> dict[str, str]:
    """Table name -> metadata location, as the catalog's own table in PostgreSQL holds them."""
    conn = psycopg2.connect(host="127.0.0.1", port=cluster.port, user=cluster.user,
                            password=cluster.password, dbname=cluster.database)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT table_name, metadata_location FROM iceberg_tables "
                        "WHERE catalog_name = %s AND table_namespace = %s",
                        (config.iceberg.catalog_name, config.iceberg.namespace))
            return dict(cur.fetchall())
    finally:
        conn.close()


def test_jobs_readers_and_sql_share_a_postgres_catalog(
        stack: Config, postgres: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    config = on_postgres(setup(stack, "pgcat", settle_hours=2), postgres)
    # Written by Flink through PostgreSQL, read back by pyiceberg through PostgreSQL.
    traffic, expected, ids = small_cloud_through_the_jobs(config, seed=13)

    # The catalog's rows are in PostgreSQL, pointing into the warehouse; the archive's points
    # past the metadata pyiceberg created: Flink's commits went through the same rows.
    rows = catalog_rows(postgres, config)
    assert set(rows) == set(TABLES)
    warehouse = urlparse(config.iceberg.warehouse).path
    assert all(urlparse(m).path.startswith(warehouse) for m in rows.values()), rows
    assert not Path(urlparse(rows["notifications"]).path).name.startswith("00000-")

    # The commands, from a configuration file naming the PostgreSQL catalog.
    conf = write_config(config, tmp_path / "c.yaml")
    assert yaml.safe_load(conf.read_text())["iceberg"]["uri"] == postgres.jdbc_uri
    check_tenant_usage(conf, traffic, expected, capsys)
    out = sql(conf, "-e", "SELECT COUNT(*) AS n FROM notifications")
    assert counts(out) == [len(ids)]

    # The password: in no output, no log line, no Flink log file.
    secret = postgres.password
    assert secret not in caplog.text and secret not in out
    assert secret not in repr(config) and secret not in repr(config.iceberg)
    logs = [p for p in (config.local.state_dir / "flink" / "log").rglob("*") if p.is_file()]
    assert logs
    assert [p for p in logs if secret in p.read_text(errors="replace")] == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_or_refused_catalog_is_a_clear_error(
        postgres: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    unreachable = f"jdbc:postgresql://127.0.0.1:{free_port()}/stacktide"
    cases = [
        (unreachable, postgres.password, "Connection refused"),
        (postgres.jdbc_uri, "not-" + postgres.password,
         f'password authentication failed for user "{postgres.user}"'),
    ]
    for uri, password, answer in cases:
        conf = tmp_path / "c.yaml"
        conf.write_text(yaml.safe_dump({
            "cells": [{"name": "cell1", "transport_url": "rabbit://guest:guest@127.0.0.1:1/"}],
            "iceberg": {"uri": uri, "user": postgres.user, "password": password},
            "local": {"state_dir": str(tmp_path / "state")},
        }))
        capsys.readouterr()
        assert main(["--config", str(conf), "usage", "--tenant", "t1"]) == 2
        err = capsys.readouterr().err
        assert f"iceberg.uri={uri} as user '{postgres.user}' cannot be used" in err, err
        assert answer in err and password not in err, err
        # Flink's side (stacktide sql) stops on the same error, before any Java stack trace.
        done = subprocess.run([sys.executable, "-m", "stacktide.cli", "--config", str(conf),
                               "sql", "-e", "SELECT 1"], capture_output=True, text=True,
                              timeout=300, env=fresh_environment(), check=False)
        assert done.returncode == 2, done.stderr[-3000:]
        assert f"iceberg.uri={uri} as user" in done.stderr and answer in done.stderr
        assert password not in done.stderr + done.stdout and "Traceback" not in done.stderr
