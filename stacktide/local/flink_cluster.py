"""A standalone Flink session cluster on this machine: one JobManager, one TaskManager.

What ``stacktide jobs submit`` is tested against, and what an operator can try it on before a
real cluster. Each process is started from the PyFlink wheel's own ``bin/`` scripts
(``jobmanager.sh`` / ``taskmanager.sh start-foreground``, which ``exec`` the JVM, so the pid we
record is the JVM's), with a private ``FLINK_CONF_DIR`` whose ``config.yaml`` this module writes
on every start: ports from ``local.flink_rest_port`` / ``local.flink_rpc_port`` (the TaskManager's
and the blob server's are picked by the kernel, so two clusters never collide), memory sized for
a small machine, checkpoints and savepoints under the state dir, the venv's Python for the
Python workers. The JVMs get the jobs' system classpath (Hadoop's client, the JDBC drivers, as
``stacktide.local.jars`` provides it) and PyFlink's runtime jar, as docker/'s cluster does.

The processes are detached (they outlive the command that started them); pid files and the
``--configDir`` on their command lines tell ours from anyone else's. ``kill_taskmanager`` and
``start_taskmanager`` are for fault tests: a TaskManager killed with SIGKILL and a new one that
registers under a new resource id.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stacktide.config import Config
from stacktide.errors import ServiceError
from stacktide.flink_rest import FlinkRest
from stacktide.local import process
from stacktide.local.jars import JDBC_DRIVER_PACKAGES, ensure_jars, system_classpath

log = logging.getLogger(__name__)

START_TIMEOUT_S = 180.0  # a JVM start on a loaded 2-core machine takes tens of seconds
JOBMANAGER_CLASS = "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint"
TASKMANAGER_CLASS = "org.apache.flink.runtime.taskexecutor.TaskManagerRunner"


def flink_home() -> Path:
    """The Flink distribution inside the PyFlink wheel (``bin/``, ``lib/``, ``opt/``, ``conf/``)."""
    import pyflink

    return Path(pyflink.__file__).resolve().parent


def python_runtime_jar() -> Path:
    """PyFlink's runtime (``opt/flink-python-*.jar``): the local MiniCluster loads it by itself,
    a cluster's JVMs need it on their classpath to accept a job with Python operators."""
    found = sorted((flink_home() / "opt").glob("flink-python-*.jar"))
    if not found:
        raise ServiceError(f"no flink-python jar in {flink_home() / 'opt'}: is apache-flink installed?")
    return found[0]


@dataclass(frozen=True, slots=True)
class Sizes:
    """What the cluster offers. Two slots, so a job can run at parallelism 2; the TaskManager's
    memory holds the Python workers (managed memory) of both slots."""

    slots: int = 2
    jobmanager_memory: str = "1024m"
    taskmanager_memory: str = "2560m"


class FlinkCluster:
    """The standalone cluster of *config* (its ports and state dir). ``up`` is idempotent."""

    def __init__(self, config: Config, sizes: Sizes = Sizes()) -> None:
        self.config, self.sizes = config, sizes
        self.home = config.local.state_dir / "flink-cluster"
        self.conf_dir = self.home / "conf"
        self.log_dir = self.home / "log"
        self._starts = itertools.count(1)

    # -- addresses -------------------------------------------------------------------------
    @property
    def address(self) -> str:
        """``host:port`` of the REST API: what ``stacktide jobs submit --jobmanager`` takes."""
        return f"127.0.0.1:{self.config.local.flink_rest_port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.address}"

    @property
    def rest(self) -> FlinkRest:
        return FlinkRest(self.rest_url)

    @property
    def checkpoints(self) -> Path:
        return self.home / "checkpoints"

    @property
    def savepoints(self) -> Path:
        return self.home / "savepoints"

    # -- processes ---------------------------------------------------------------------------
    def _pidfile(self, role: str) -> Path:
        return self.home / f"{role}.pid"

    def _pid(self, role: str) -> int | None:
        """The pid of our *role* process: its pid file's, if that JVM runs this cluster's conf
        dir and the role's entry point (the JobManager's command line puts its memory settings
        between the two)."""
        pid = process.owned_pid(self._pidfile(role), f"--configDir {self.conf_dir}")
        entry = JOBMANAGER_CLASS if role == "jobmanager" else TASKMANAGER_CLASS
        return pid if pid is not None and f" {entry} " in process.cmdline(pid) else None

    def jobmanager_pid(self) -> int | None:
        return self._pid("jobmanager")

    def taskmanager_pid(self) -> int | None:
        return self._pid("taskmanager")

    def settings(self) -> dict[str, Any]:
        """The cluster's ``config.yaml`` (flat keys). What the jobs set themselves (their
        checkpoint folder, parallelism, jars, Python files) travels with each job; this is
        what the processes need before a job arrives, and the defaults for ones that set less."""
        wheel = yaml.safe_load((flink_home() / "conf" / "config.yaml").read_text(encoding="utf-8"))
        java_opts = wheel["env"]["java"]["opts"]["all"]  # --add-opens Flink needs on Java 17
        local = self.config.local
        return {
            "env.java.opts.all": java_opts,
            "env.pid.dir": str(self.home),
            "env.log.dir": str(self.log_dir),
            "jobmanager.rpc.address": "127.0.0.1",
            "jobmanager.rpc.port": local.flink_rpc_port,
            "jobmanager.bind-host": "127.0.0.1",
            "jobmanager.memory.process.size": self.sizes.jobmanager_memory,
            "jobmanager.execution.failover-strategy": "region",
            "taskmanager.host": "127.0.0.1",
            "taskmanager.bind-host": "127.0.0.1",
            "taskmanager.rpc.port": "0",
            "taskmanager.data.port": 0,
            "taskmanager.numberOfTaskSlots": self.sizes.slots,
            "taskmanager.memory.process.size": self.sizes.taskmanager_memory,
            "blob.server.port": "0",
            "rest.address": "127.0.0.1",
            "rest.bind-address": "127.0.0.1",
            "rest.port": local.flink_rest_port,
            "parallelism.default": 1,
            "execution.checkpointing.dir": self.checkpoints.as_uri(),
            "execution.checkpointing.savepoint-dir": self.savepoints.as_uri(),
            "python.executable": sys.executable,
            "python.client.executable": sys.executable,
            "classloader.parent-first-patterns.additional": ";".join(JDBC_DRIVER_PACKAGES),
        }

    def _prepare(self) -> dict[str, str]:
        """Write the conf dir; the environment the scripts run in."""
        for folder in (self.conf_dir, self.log_dir, self.checkpoints, self.savepoints):
            folder.mkdir(parents=True, exist_ok=True)
        (self.conf_dir / "config.yaml").write_text(
            "# Written by stacktide.local.flink_cluster on every start; edits are lost.\n"
            + yaml.safe_dump(self.settings(), sort_keys=True, width=100_000), encoding="utf-8")
        for name in ("log4j-console.properties", "logback-console.xml"):
            source = flink_home() / "conf" / name
            (self.conf_dir / name).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
        jars = ensure_jars(self.config, groups=["flink", "hadoop"])
        classpath = [*system_classpath(jars), python_runtime_jar()]
        env = process.fresh_environment()  # not the PyFlink state of a process that ran jobs
        env.update({
            "FLINK_HOME": str(flink_home()),
            "FLINK_CONF_DIR": str(self.conf_dir),
            "FLINK_LOG_DIR": str(self.log_dir),
            "FLINK_PID_DIR": str(self.home),
            "HADOOP_CLASSPATH": os.pathsep.join(str(p) for p in classpath),
        })
        return env

    def _start(self, role: str, *args: str) -> int:
        script = flink_home() / "bin" / f"{role}.sh"
        env = self._prepare()
        stdout = self.log_dir / f"{role}.stdout"
        # As for Kafka: a short-lived shell starts the JVM in the background and prints its pid,
        # so the JVM is nobody's child and outlives the command (or test) that started it.
        launcher = 'exec "$@" </dev/null >>"$0" 2>&1 & echo $!'
        command = ["sh", "-c", launcher, str(stdout), "bash", str(script), "start-foreground", *args]
        done = subprocess.run(command, capture_output=True, text=True, env=env,
                              start_new_session=True, check=True)
        pid = int(done.stdout.strip())
        self._pidfile(role).write_text(f"{pid}\n", encoding="ascii")
        log.info("started Flink %s pid=%d logs=%s", role, pid, self.log_dir)
        return pid

    def _wait(self, role: str, pid: int, ready: Any, what: str) -> None:
        def check() -> bool:
            if not process.alive(pid):
                stdout = self.log_dir / f"{role}.stdout"
                raise ServiceError(f"Flink {role} pid {pid} exited during start-up; see "
                                   f"{self.log_dir}; {stdout} ends:\n{process.tail(stdout)}")
            return bool(ready())

        if not process.wait_for(check, START_TIMEOUT_S, interval_s=0.5):
            raise ServiceError(f"Flink {role} pid {pid}: {what} not within "
                               f"{START_TIMEOUT_S:.0f} s; see {self.log_dir}")

    def start_jobmanager(self) -> int:
        pid = self.jobmanager_pid()
        if pid is None:
            process.require_free({"REST port": self.config.local.flink_rest_port,
                                  "RPC port": self.config.local.flink_rpc_port}, "Flink JobManager")
            pid = self._start("jobmanager")
        self._wait("jobmanager", pid, self.rest.answers, f"REST API on {self.rest_url}")
        return pid

    def start_taskmanager(self) -> int:
        """Start a TaskManager unless ours runs; return once the JobManager lists it. Each start
        registers under a new resource id, so a replacement is never mistaken for the one it
        replaces (which the JobManager lists until it misses its heartbeats)."""
        pid = self.taskmanager_pid()
        if pid is not None:
            return pid
        resource = f"stacktide-tm-{os.getpid()}-{int(time.time())}-{next(self._starts)}"
        pid = self._start("taskmanager", "-D", f"taskmanager.resource-id={resource}")
        self._wait("taskmanager", pid, lambda: resource in self.rest.taskmanagers(),
                   f"registration as {resource} at {self.rest_url}")
        return pid

    def up(self) -> FlinkCluster:
        """JobManager and TaskManager running, the TaskManager registered; what already runs
        is left alone."""
        started = time.monotonic()
        self.start_jobmanager()
        self.start_taskmanager()
        log.info("Flink cluster up at %s in %.1f s", self.rest_url, time.monotonic() - started)
        return self

    def kill_taskmanager(self) -> int:
        """SIGKILL the TaskManager with the Python workers it started (a crashed machine, for
        fault tests); its pid. They share the process group its launcher opened (``_start``),
        which holds nothing else: killed alone, the JVM would leave its workers behind."""
        pid = self.taskmanager_pid()
        if pid is None:
            raise ServiceError(f"no TaskManager of the cluster in {self.home} runs")
        try:
            group = os.getpgid(pid)
        except ProcessLookupError:
            group = None
        if group is not None and group != os.getpgrp():
            os.killpg(group, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
        if not process.wait_for(lambda: not process.alive(pid), 30.0):
            raise ServiceError(f"Flink TaskManager pid {pid} survived SIGKILL")
        self._pidfile("taskmanager").unlink(missing_ok=True)
        log.info("killed Flink TaskManager pid=%d", pid)
        return pid

    def down(self) -> None:
        """Stop the TaskManager, then the JobManager (SIGTERM; SIGKILL after a while). Jobs
        still running are not stopped with a savepoint: stop them first to keep their state."""
        for role in ("taskmanager", "jobmanager"):
            pid = self._pid(role)
            if pid is not None:
                process.stop(pid, f"Flink {role}")
            self._pidfile(role).unlink(missing_ok=True)

    def status(self) -> str:
        jm, tm = self.jobmanager_pid(), self.taskmanager_pid()

        def state(pid: int | None) -> str:
            return f"running  pid={pid}" if pid is not None else "stopped"

        return "\n".join([
            f"{'flink-jm':<9} {state(jm):<22} rest={self.rest_url} rpc=127.0.0.1:"
            f"{self.config.local.flink_rpc_port} log={self.log_dir}",
            f"{'flink-tm':<9} {state(tm):<22} slots={self.sizes.slots} log={self.log_dir}",
        ])
