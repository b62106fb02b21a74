"""The warehouse in an object store: the jobs (Flink's JdbcCatalog with Iceberg's S3FileIO),
pyiceberg (pyarrow's S3 client), ``stacktide usage`` and DuckDB (httpfs) share tables whose
every file is an object in a real S3-compatible server (moto's, a process of its own).

Only the configuration changes: ``iceberg.warehouse`` is ``s3://bucket/prefix`` and
``iceberg.s3`` says how to reach the store. Simulated traffic goes to Kafka and through a
bounded run of the jobs; the tables must hold the simulator's ground truth, nothing of the
warehouse may be on the local disk, and the secret key may appear in no output and no log.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from stacktide.catalog import load_catalog
from stacktide.cli import main
from stacktide.config import S3_SECRET_ENV, Config, S3Config
from stacktide.readers import iceberg_duckdb
from stacktide.schema import TABLES
from tests.conftest import S3Server
from tests.e2e.test_independent_readers import rows
from tests.e2e.test_sql_command import counts
from tests.helpers import (
    check_tenant_usage,
    fresh_environment,
    setup,
    small_cloud_through_the_jobs,
    write_config,
)


def bucket_of(server: S3Server, name: str) -> str:
    """A new bucket of the server, for one test alone."""
    bucket = f"{name}-{uuid.uuid4().hex[:8]}"
    server.client().create_bucket(Bucket=bucket)
    return bucket


def on_s3(config: Config, server: S3Server, bucket: str) -> Config:
    """*config* with its warehouse under ``s3://<bucket>/warehouse`` (the catalog stays)."""
    return dataclasses.replace(config, iceberg=dataclasses.replace(
        config.iceberg, warehouse=f"s3://{bucket}/warehouse",
        s3=S3Config(endpoint=server.endpoint, region=server.region, path_style_access=True,
                    access_key_id=server.access_key_id,
                    secret_access_key=server.secret_access_key)))


def objects(server: S3Server, bucket: str) -> dict[str, int]:
    """Key -> size of every object in *bucket*."""
    found: dict[str, int] = {}
    for page in server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket):
        found.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
    return found


@pytest.mark.stack
def test_jobs_and_readers_share_an_s3_warehouse(
        stack: Config, s3_server: S3Server, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.INFO)
    bucket = bucket_of(s3_server, "stacktide")
    config = on_s3(setup(stack, "s3wh", settle_hours=2), s3_server, bucket)
    # Written by Flink into the bucket, read back by pyiceberg from the bucket.
    # The jobs in a process of their own (``stacktide jobs run``): S3FileIO, in Iceberg's
    # Flink runtime jar, finds the AWS SDK of iceberg-aws-bundle only when the JVM starts with
    # both, and the JVM of this process started with the tests before this one.
    jobs_conf = write_config(config, tmp_path / "jobs.yaml")
    traffic, expected, ids = small_cloud_through_the_jobs(config, seed=17, child=jobs_conf)
    catalog = load_catalog(config.iceberg)
    archive = catalog.load_table(f"{config.iceberg.namespace}.notifications")

    # Every file a table references is an object of the bucket; none went to the local disk.
    stored = objects(s3_server, bucket)
    for name in TABLES:
        table = catalog.load_table(f"{config.iceberg.namespace}.{name}")
        assert table.metadata_location.startswith(f"s3://{bucket}/warehouse/")
        assert urlsplit(table.metadata_location).path.lstrip("/") in stored
        data = [t.file.file_path for t in table.scan().plan_files()]
        for path in data:
            parts = urlsplit(path)
            assert (parts.scheme, parts.netloc) == ("s3", bucket), path
            assert stored[parts.path.lstrip("/")] > 0, path
    assert any("/notifications/data/" in k for k in stored)
    # Flink committed after pyiceberg created the table: its S3FileIO wrote metadata files too.
    assert not Path(urlsplit(archive.metadata_location).path).name.startswith("00000-")
    # The stack's local warehouse holds the other tests' namespaces, never this one's.
    local = config.local.state_dir / "iceberg" / "warehouse"
    assert not any(local.glob(f"{config.iceberg.namespace}.db*")), sorted(local.iterdir())

    # DuckDB, through httpfs, reads every table as pyiceberg does.
    with iceberg_duckdb.connect(config.iceberg) as con:
        for name, definition in TABLES.items():
            by_duckdb = iceberg_duckdb.read_arrow(con, config.iceberg, name)
            by_pyiceberg = catalog.load_table(f"{config.iceberg.namespace}.{name}").scan().to_arrow()
            assert rows(by_duckdb, definition) == rows(by_pyiceberg, definition), name

    # The commands, from a configuration file without the secret key: it comes from the
    # environment.
    conf = write_config(config, tmp_path / "c.yaml")
    document = yaml.safe_load(conf.read_text())
    del document["iceberg"]["s3"]["secret_access_key"]
    conf.write_text(yaml.safe_dump(document))
    secret = s3_server.secret_access_key
    assert secret not in conf.read_text()
    monkeypatch.setenv(S3_SECRET_ENV, secret)
    check_tenant_usage(conf, traffic, expected, capsys)
    # Flink reads the bucket too (stacktide sql, a process of its own).
    done = subprocess.run([sys.executable, "-m", "stacktide.cli", "--config", str(conf), "sql",
                           "-e", "SELECT COUNT(*) AS n FROM notifications"],
                          capture_output=True, text=True, timeout=300,
                          env={**fresh_environment(), S3_SECRET_ENV: secret}, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert counts(done.stdout) == [len(ids)]

    # The upkeep loads, plans and expires through S3FileIO; orphan cleanup says why it skipped.
    # (The bounded run committed the archive once, one file per partition: nothing to rewrite.)
    ident = f"{config.iceberg.namespace}.notifications"
    files_before = len(list(catalog.load_table(ident).scan().plan_files()))
    upkeep = subprocess.run([sys.executable, "-m", "stacktide.cli", "--config", str(conf),
                             "tables", "maintain", "--table", "notifications",
                             "--expire-older-than", "0s", "--retain-last", "1", "--output", "json"],
                            capture_output=True, text=True, timeout=1200,
                            env={**fresh_environment(), S3_SECRET_ENV: secret}, check=False)
    assert upkeep.returncode == 0, (upkeep.stdout[-3000:], upkeep.stderr[-3000:])
    (report,) = json.loads(upkeep.stdout)["tables"]
    assert report["error"] is None, report
    compaction, expiry = report["compaction"], report["expiry"]
    assert report["before"]["data_files"] == files_before > 0, report
    compacted = catalog.load_table(ident)
    assert len(list(compacted.scan().plan_files())) == report["after"]["data_files"] == (
        files_before - compaction["files_rewritten"] + compaction["files_written"])
    assert expiry["flink_commit"] is not None, report  # found in the metadata read from S3
    assert compacted.metadata.snapshot_by_id(expiry["flink_commit"]["snapshot_id"]) is not None
    assert "file://" in report["orphans"]["skipped"], report
    assert Counter(compacted.scan(selected_fields=("message_id",)).to_arrow()
                   .column("message_id").to_pylist()) == Counter(ids)
    outputs = done.stdout + done.stderr + upkeep.stdout + upkeep.stderr

    # The secret key: in no output, no log line, no repr, no Flink log file.
    assert secret not in caplog.text and secret not in outputs
    assert secret not in repr(config) and secret not in repr(config.iceberg)
    logs = [p for p in (config.local.state_dir / "flink" / "log").rglob("*") if p.is_file()]
    assert logs
    assert [p for p in logs if secret in p.read_text(errors="replace")] == []


def test_a_missing_bucket_or_unreachable_store_is_a_clear_error(
        s3_server: S3Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    closed = f"http://127.0.0.1:{_free_port()}"
    cases = [
        (s3_server.endpoint, "no-such-bucket", "the bucket 'no-such-bucket' does not exist"),
        (closed, "stacktide", "cannot be used: "),
    ]
    for endpoint, bucket, answer in cases:
        conf = tmp_path / "c.yaml"
        conf.write_text(yaml.safe_dump({
            "cells": [{"name": "cell1", "transport_url": "rabbit://guest:guest@127.0.0.1:1/"}],
            "iceberg": {"warehouse": f"s3://{bucket}/warehouse",
                        "s3": {"endpoint": endpoint, "path_style_access": True,
                               "access_key_id": s3_server.access_key_id,
                               "secret_access_key": s3_server.secret_access_key}},
            "local": {"state_dir": str(tmp_path / "state")},
        }))
        capsys.readouterr()
        assert main(["--config", str(conf), "usage", "--tenant", "t1"]) == 2
        err = capsys.readouterr().err
        assert f"the Iceberg warehouse iceberg.warehouse=s3://{bucket}/warehouse at {endpoint}" \
            in err, err
        assert answer in err and s3_server.secret_access_key not in err, err
        assert "Traceback" not in err


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

