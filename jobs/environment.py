"""The Flink table environment of the jobs: jars, checkpoints, state, Python workers.

Local runs use PyFlink's embedded MiniCluster. Two things must be right before
the JVM starts, which is why this module owns environment creation:
``HADOOP_CLASSPATH`` (Iceberg's catalog needs Hadoop on the system classpath)
and ``python.executable`` (PyFlink's default, ``python``, is not this venv).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.sqlfile import Ident, Literal
from stacktide.catalog import flink_catalog_options
from stacktide.config import REPO_ROOT, Config

if TYPE_CHECKING:
    from pyflink.table import TableEnvironment

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class JobJars:
    pipeline: tuple[Path, ...]  # shipped with the job (connector, Iceberg runtime, JDBC)
    hadoop: tuple[Path, ...]  # on the JVM system classpath


def latest_checkpoint(directory: Path) -> Path | None:
    """The newest completed checkpoint (``chk-N`` with ``_metadata``) under *directory*."""
    done = [m.parent for m in directory.glob("*/chk-*/_metadata")]
    return max(done, key=lambda p: p.stat().st_mtime, default=None)


def create_table_env(
    config: Config, jars: JobJars, *, job_name: str, restore_from: Path | None = None
) -> TableEnvironment:
    log_dir = config.local.state_dir / "flink" / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    os.environ["HADOOP_CLASSPATH"] = os.pathsep.join(str(j) for j in jars.hadoop)
    os.environ["FLINK_LOG_DIR"] = str(log_dir)
    os.environ["LOG4J_PROPERTIES"] = str(REPO_ROOT / "conf" / "flink" / "log4j.properties")
    log.info("flink logs in %s", log_dir)
    from pyflink.common import Configuration
    from pyflink.table import EnvironmentSettings, TableEnvironment

    checkpoints = config.local.state_dir / "flink" / "checkpoints" / job_name
    conf = Configuration()
    settings = {
        "pipeline.name": job_name,
        "pipeline.jars": ";".join(j.as_uri() for j in jars.pipeline),
        "parallelism.default": str(config.jobs.parallelism),
        "execution.checkpointing.interval": f"{int(config.jobs.checkpoint_interval_s * 1000)} ms",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.dir": checkpoints.as_uri(),
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "table.exec.state.ttl": f"{int(config.jobs.dedup_ttl_hours * 3600 * 1000)} ms",
        "table.exec.source.idle-timeout": "5 s",
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
    }
    if restore_from is not None:
        settings["execution.state-recovery.path"] = restore_from.as_uri()
        log.info("restoring job=%s from checkpoint=%s", job_name, restore_from)
    for key, value in settings.items():
        conf.set_string(key, value)
    env = TableEnvironment.create(
        EnvironmentSettings.new_instance().in_streaming_mode().with_configuration(conf).build()
    )
    register_catalog(env, config)
    return env


def register_catalog(env: TableEnvironment, config: Config) -> None:
    """``CREATE CATALOG <catalog_name>`` with the JDBC catalog options."""
    options = ",\n  ".join(
        f"{Literal(k).render()} = {Literal(v).render()}"
        for k, v in flink_catalog_options(config.iceberg).items()
    )
    name = Ident(config.iceberg.catalog_name).render()
    env.execute_sql(f"CREATE CATALOG IF NOT EXISTS {name} WITH (\n  {options}\n)")
