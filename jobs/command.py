"""``stacktide jobs run``: every job in one Flink pipeline, streaming until interrupted.

``--bounded`` reads each topic up to the offsets current at start and then ends
(with a final checkpoint, hence a final Iceberg commit): what the demo and the
end-to-end tests use. An interrupted streaming run keeps its last checkpoint,
and the next run resumes from it, so the tables neither miss nor repeat rows.
"""

from __future__ import annotations

import argparse
import logging
import time

from stacktide.config import Config

log = logging.getLogger(__name__)

JOB_NAME = "stacktide-jobs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["run"], help="run the jobs on the local MiniCluster")
    parser.add_argument(
        "--bounded", action="store_true", help="stop at the topics' current end offsets"
    )
    parser.add_argument(
        "--fresh", action="store_true", help="ignore retained checkpoints; start from group offsets"
    )


def run(args: argparse.Namespace, config: Config) -> int:
    result = run_jobs(config, bounded=args.bounded, fresh=args.fresh)
    return 0 if result else 1


def run_jobs(config: Config, *, bounded: bool, fresh: bool = False) -> bool:
    from jobs import notifications
    from jobs.environment import JobJars, create_table_env, latest_checkpoint
    from stacktide.catalog import ensure_table, load_catalog
    from stacktide.local.jars import ensure_jars
    from stacktide.schema import TABLES

    jars = ensure_jars(config)
    catalog = load_catalog(config.iceberg)
    for table in TABLES.values():
        ensure_table(catalog, config.iceberg, table)
    restore = None
    if not fresh:
        restore = latest_checkpoint(config.local.state_dir / "flink" / "checkpoints" / JOB_NAME)
    env = create_table_env(
        config,
        JobJars(pipeline=tuple(jars["flink"]), hadoop=tuple(jars["hadoop"])),
        job_name=JOB_NAME,
        restore_from=restore,
    )
    statements = env.create_statement_set()
    notifications.build(env, statements, config, bounded=bounded)
    started = time.monotonic()
    result = statements.execute()
    client = result.get_job_client()
    log.info("job submitted id=%s bounded=%s", client.get_job_id() if client else "?", bounded)
    try:
        result.wait()
    except KeyboardInterrupt:
        log.info("interrupted: cancelling; the last checkpoint is kept for the next run")
        if client is not None:
            client.cancel().result()
        return True
    log.info("jobs finished in %.1f s", time.monotonic() - started)
    return True
