"""``stacktide jobs submit`` and ``stacktide jobs stop``: the jobs on a Flink session cluster.

``submit`` builds the same job graph as ``jobs run`` (:func:`jobs.command.build_jobs`) and
hands it to the JobManager's REST API (Flink's ``remote`` executor), with what the cluster
needs to run it, each the Flink option behind the ``flink run`` flag of the same name:

- the jars: ``pipeline.jars`` (the connector, Iceberg, the JDBC drivers, the operator jar),
  uploaded with the job;
- the Python code: ``python.files`` (``-pyfs``), the project's packages, shipped with the job
  and put first on the Python workers' path;
- the Python environment: ``python.executable`` (``-pyexec``), a Python with the project's
  dependencies at a path valid on the TaskManagers' machines (by default this venv's: right
  on this machine's cluster), or ``python.archives`` (``-pyarch``), a zipped venv Flink
  unpacks beside each worker, with ``--pyexec`` naming the Python inside it;
- the state to start from: ``execution.state-recovery.path`` (``-s``).

The stacktide configuration is read here, by the client: the jobs take their settings from it
while the graph is built, and the Python functions carry them, so the TaskManagers never
read the file. The submission is detached: the job runs on the cluster until it is stopped,
by ``jobs stop`` (a savepoint to upgrade from) or in Flink's UI.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import urlsplit

from stacktide.config import REPO_ROOT, Config
from stacktide.errors import StacktideError
from stacktide.flink_rest import FlinkRest, parse_address

log = logging.getLogger(__name__)

# The packages the jobs' Python functions import on the TaskManagers.
PACKAGES = ("stacktide", "jobs")


class SubmitError(StacktideError):
    """The jobs cannot be submitted or stopped as asked."""


def rest_for(config: Config, jobmanager: str | None) -> FlinkRest:
    """The REST API of ``--jobmanager``, else of ``jobs.jobmanager`` in the config."""
    address = jobmanager or config.jobs.jobmanager
    if not address:
        raise SubmitError("no Flink cluster given: --jobmanager host:port (or jobs.jobmanager in "
                          f"{config.source})")
    try:
        return FlinkRest(parse_address(address))
    except ValueError as exc:
        raise SubmitError(f"--jobmanager: {exc}") from None


def submit_options(rest: FlinkRest, *, python_executable: str, python_archives: str | None,
                   from_savepoint: str | None, allow_non_restored_state: bool,
                   checkpoint_dir: str | None) -> dict[str, str | None]:
    """The Flink options that turn ``jobs run``'s environment into a submission to *rest*."""
    where = urlsplit(rest.url)
    options: dict[str, str | None] = {
        "execution.target": "remote",
        "rest.address": where.hostname,
        "rest.port": str(where.port or (443 if where.scheme == "https" else 80)),
        "python.files": ",".join(str(REPO_ROOT / p) for p in PACKAGES),
        "python.executable": python_executable,
        "python.client.executable": None,  # the client is this process
    }
    if python_archives:
        options["python.archives"] = python_archives
    if checkpoint_dir:
        options["execution.checkpointing.dir"] = _uri(checkpoint_dir)
    if from_savepoint:
        options["execution.state-recovery.path"] = _uri(from_savepoint)
        # Off by default: a savepoint holding state no operator of the new job claims means a
        # changed uid, and the upgrade would silently lose that state.
        options["execution.state-recovery.ignore-unclaimed-state"] = str(
            allow_non_restored_state).lower()
    return options


def local_path(location: str) -> Path | None:
    """The path on this machine of a savepoint *location* as Flink prints it (``file:/x``),
    as a URI (``file:///x``) or a plain path; None for a remote file system (s3://, hdfs://)."""
    if location.startswith("file:"):
        return Path(urlsplit(location).path)
    return None if "://" in location else Path(location).resolve()


def _uri(location: str) -> str:
    """A local path as a file:// URI; a URI of another file system as it is."""
    local = local_path(location)
    return location if local is None else local.as_uri()


def submit_jobs(config: Config, *, jobmanager: str | None = None, python_executable: str | None = None,
                python_archives: str | None = None, from_savepoint: str | None = None,
                allow_non_restored_state: bool = False, checkpoint_dir: str | None = None) -> str:
    """Submit the jobs to the cluster; the Flink job id. Refuses when a job of that name
    still runs there: two would write every row twice."""
    import sys

    from jobs.command import JOB_NAME, build_jobs
    from jobs.environment import submit

    rest = rest_for(config, jobmanager)
    running = rest.running(JOB_NAME)
    if running:
        raise SubmitError(f"{rest.url} already runs {JOB_NAME} ({', '.join(j.id for j in running)}, "
                          f"{running[0].state}): stop it first (stacktide jobs stop)")
    restore = local_path(from_savepoint) if from_savepoint else None
    if restore is not None and not (restore / "_metadata").exists():
        raise SubmitError(f"--from-savepoint {from_savepoint}: no savepoint there (no _metadata "
                          f"in {restore})")
    options = submit_options(rest, python_executable=python_executable or sys.executable,
                             python_archives=python_archives, from_savepoint=from_savepoint,
                             allow_non_restored_state=allow_non_restored_state,
                             checkpoint_dir=checkpoint_dir)
    # The Python workers run on the TaskManagers: never PyFlink's in-process (loopback) workers,
    # which it starts in the client when it takes the deployment for a local one.
    os.environ["_python_worker_execution_mode"] = "process"  # noqa: SIM112 - PyFlink spells it so
    # A restored job's Kafka sources read on from the savepoint's offsets; without one, the
    # keyed jobs start at the earliest offset, as a first ``jobs run`` does.
    env = build_jobs(config, bounded=False, restore=restore, flink_options=options)
    client = submit(env, JOB_NAME)
    job_id = str(client.get_job_id())
    log.info("submitted %s to %s: job %s", JOB_NAME, rest.url, job_id)
    return job_id


def stop_jobs(config: Config, *, jobmanager: str | None = None, savepoint_dir: str | None = None,
              drain: bool = False, job_id: str | None = None) -> str:
    """Stop the running jobs with a savepoint; its path. *savepoint_dir*: where (a path every
    cluster machine reaches); None: the cluster's ``execution.checkpointing.savepoint-dir``."""
    from jobs.command import JOB_NAME

    rest = rest_for(config, jobmanager)
    if job_id is None:
        running = rest.running(JOB_NAME)
        if len(running) != 1:
            raise SubmitError(f"{rest.url} runs {len(running)} jobs named {JOB_NAME}; give "
                              "--job-id" if running else f"{rest.url} runs no job {JOB_NAME}")
        job_id = running[0].id
    target = _uri(savepoint_dir) if savepoint_dir else None
    path = rest.stop_with_savepoint(job_id, target, drain=drain)
    log.info("stopped job %s with savepoint %s", job_id, path)
    return path
