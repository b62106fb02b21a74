"""Pid files, liveness, ports and stopping, shared by the RabbitMQ and Kafka launchers.

A pid file alone is not proof of ownership: pids are reused, and a stale file may
point at somebody else's process. So every check also reads ``/proc/<pid>/cmdline``
and requires a marker only our own launch puts there (a path inside our state dir).
Processes are detached from the caller; they may end up as zombies of an init that
does not reap, so a zombie counts as stopped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

from stacktide.errors import ServiceError

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 30.0


def read_pid(pidfile: Path) -> int | None:
    """The pid in *pidfile*, or None when the file is missing or not a number."""
    try:
        text = pidfile.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def alive(pid: int) -> bool:
    """True when *pid* runs; a zombie (exited, not reaped) is not running."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it happens to be our own child
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    # The state letter follows the parenthesised command name, which may contain spaces.
    return stat.rpartition(")")[2].split()[0] not in {"Z", "X"}


def cmdline(pid: int) -> str:
    """The command line of *pid*, arguments joined by spaces ('' when unreadable)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode("utf-8", errors="replace")


def owned_pid(pidfile: Path, marker: str) -> int | None:
    """The pid of *pidfile* if it is alive and its command line contains *marker*.

    A pid file whose process is gone, or whose pid now belongs to another program,
    is stale: it is removed, so later starts do not trip over it.
    """
    pid = read_pid(pidfile)
    if pid is None:
        return None
    if alive(pid) and marker in cmdline(pid):
        return pid
    log.info("removing stale pid file %s (pid %s is not ours or not running)", pidfile, pid)
    pidfile.unlink(missing_ok=True)
    return None


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on *host*:*port*."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def require_free(ports: dict[str, int], service: str) -> None:
    """Refuse to start *service* on ports held by a process we did not start."""
    for name, port in ports.items():
        if port_open(port):
            raise ServiceError(
                f"{service}: {name} 127.0.0.1:{port} is already in use by a process "
                f"stacktide did not start; stop it or choose another port in the config"
            )


def wait_for(check: Callable[[], bool], timeout_s: float, interval_s: float = 0.2) -> bool:
    """Poll *check* until it returns True (then True) or *timeout_s* passes (then False)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def stop(pid: int, service: str, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM *pid* and wait for it; SIGKILL it when it outlives *timeout_s*."""
    log.info("stopping %s pid=%d", service, pid)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if wait_for(lambda: not alive(pid), timeout_s):
        return
    log.warning("%s pid=%d ignored SIGTERM for %.0f s; sending SIGKILL", service, pid, timeout_s)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    if not wait_for(lambda: not alive(pid), 10.0):
        raise ServiceError(f"{service}: pid {pid} survived SIGKILL")


# What PyFlink writes into the environment of a process that ran a job with in-process
# (loopback) Python workers, or that PyFlink's own launcher started.
PYFLINK_ENV = ("PYFLINK_", "_PYFLINK_", "PYTHON_LOOPBACK_", "_PYTHON_WORKER_", "FLINK_",
               "BOOT_LOG_DIR", "SEMI_PERSISTENT_DIRECTORY")


def fresh_environment() -> dict[str, str]:
    """This process's environment, less what PyFlink's in-process (loopback) Python workers
    wrote into it when this process ran the jobs: a child inheriting it refuses to start
    its JVM (PYFLINK_GATEWAY_DISABLED) or sends its Python work to this process's workers
    (PYTHON_LOOPBACK_SERVER_ADDRESS), which hangs both once the child is killed."""
    return {k: v for k, v in os.environ.items() if not k.startswith(PYFLINK_ENV)}


def tail(path: Path, lines: int = 15) -> str:
    """The last *lines* lines of *path*, for error messages ('' when unreadable)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
