"""A private PostgreSQL cluster, run from Debian's ``postgresql`` server binaries.

A catalog on PostgreSQL is what several machines share; this cluster is for trying that
on one machine and for the tests: ``initdb`` makes it in a folder of its own, ``pg_ctl``
starts it on 127.0.0.1 and one port (no Unix socket, so it never meets a system cluster),
and its superuser is the catalog's user, logging in with a password (SCRAM) as a remote
catalog would. PostgreSQL refuses to run as root, so a root caller runs the server as
the unprivileged ``postgres`` user Debian's package creates, and hands it the folder:
that folder and every folder above it must be reachable by that user.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pwd
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from stacktide.errors import ServiceError
from stacktide.local import process

log = logging.getLogger(__name__)

BIN_ROOT = Path("/usr/lib/postgresql")
START_TIMEOUT_S = 60
SERVICE_USER = "postgres"


@dataclass(frozen=True, slots=True)
class Cluster:
    """One cluster: its folder (data in ``data/``, the server log in ``postgres.log``), its
    loopback port, its superuser and that user's password, and the database it serves."""

    home: Path
    port: int
    user: str
    password: str = dataclasses.field(repr=False)
    database: str = "stacktide"

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def log(self) -> Path:
        return self.home / "postgres.log"

    @property
    def jdbc_uri(self) -> str:
        """The ``iceberg.uri`` of a catalog in this cluster (credentials go in their own keys)."""
        return f"jdbc:postgresql://127.0.0.1:{self.port}/{self.database}"


def bin_dir() -> Path:
    """The newest installed server's ``bin`` (Debian 12: ``/usr/lib/postgresql/15/bin``)."""
    found = [p.parent for p in BIN_ROOT.glob("*/bin/postgres") if p.parent.parent.name.isdigit()]
    if not found:
        raise ServiceError(f"no PostgreSQL server under {BIN_ROOT}/<version>/bin; install Debian's "
                           "postgresql package (make venv does)")
    return max(found, key=lambda p: int(p.parent.name))


def _server_user() -> pwd.struct_passwd:
    """Who runs initdb and the server: ourselves, or ``postgres`` when we are root."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise ServiceError(f"PostgreSQL refuses to run as root and there is no {SERVICE_USER!r} "
                           "user to run it as; Debian's postgresql package creates it") from None


def _run(command: list[str], what: str, account: pwd.struct_passwd, cwd: Path) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "HOME": str(cwd)}
    as_other = account.pw_uid != os.geteuid()
    try:
        done = subprocess.run(
            command, env=env, cwd=cwd, capture_output=True, text=True, check=False,
            timeout=START_TIMEOUT_S + 30, start_new_session=True,
            user=account.pw_uid if as_other else None,
            group=account.pw_gid if as_other else None,
            extra_groups=[] if as_other else None,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceError(f"PostgreSQL {what}: {exc}") from exc
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-600:]
        raise ServiceError(f"PostgreSQL {what} failed (exit {done.returncode}): {output}")


def running_pid(cluster: Cluster) -> int | None:
    """The postmaster of *cluster*'s data folder, if it runs (its ``postmaster.pid`` names it,
    and the process's command line names the folder: a reused pid is not taken for it)."""
    try:
        first = (cluster.data / "postmaster.pid").read_text(encoding="ascii").split("\n", 1)[0]
    except (OSError, UnicodeDecodeError):
        return None
    pid = int(first) if first.strip().isdigit() else None
    if pid is None or not process.alive(pid) or f"-D {cluster.data}" not in process.cmdline(pid):
        return None
    return pid


def start(cluster: Cluster) -> int:
    """Create the cluster when its folder has none, start it unless it runs, create its
    database when missing; return the postmaster's pid once it accepts logins."""
    pid = running_pid(cluster)
    if pid is None:
        process.require_free({"port": cluster.port}, "PostgreSQL")
        account = _server_user()
        if not (cluster.data / "PG_VERSION").is_file():
            _init(cluster, account)
        options = (f"-c listen_addresses=127.0.0.1 -c port={cluster.port} "
                   "-c unix_socket_directories=''")
        log.info("starting PostgreSQL port=%d data=%s", cluster.port, cluster.data)
        _run([str(bin_dir() / "pg_ctl"), "start", "--wait", f"--timeout={START_TIMEOUT_S}",
              "-D", str(cluster.data), "-l", str(cluster.log), "-o", options],
             f"start (see {cluster.log})", account, cluster.home)
        pid = running_pid(cluster)
        if pid is None:
            raise ServiceError(f"PostgreSQL reported a start but no server runs for {cluster.data}; "
                               f"see {cluster.log}:\n{process.tail(cluster.log)}")
    _create_database(cluster)
    log.info("PostgreSQL ready pid=%d port=%d database=%s", pid, cluster.port, cluster.database)
    return pid


def _init(cluster: Cluster, account: pwd.struct_passwd) -> None:
    """``initdb`` with *cluster*'s user as superuser; its password reaches initdb through a
    file only that user can read, removed at once."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", cluster.user):
        raise ServiceError(f"PostgreSQL cluster user {cluster.user!r}: expected a plain lower-case "
                           "name")
    cluster.home.mkdir(parents=True, exist_ok=True)
    os.chown(cluster.home, account.pw_uid, account.pw_gid)
    pwfile = cluster.home / "pwfile"
    pwfile.write_text(cluster.password + "\n", encoding="utf-8")
    try:
        os.chmod(pwfile, 0o600)
        os.chown(pwfile, account.pw_uid, account.pw_gid)
        log.info("creating PostgreSQL cluster in %s (run as user %s)", cluster.data, account.pw_name)
        _run([str(bin_dir() / "initdb"), "-D", str(cluster.data), "-U", cluster.user,
              f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8", "--no-locale"],
             f"initdb in {cluster.data} (the folder and every one above it must be reachable "
             f"by user {account.pw_name})", account, cluster.home)
    finally:
        pwfile.unlink(missing_ok=True)


def _create_database(cluster: Cluster) -> None:
    import psycopg2
    from psycopg2 import sql

    try:
        conn = psycopg2.connect(host="127.0.0.1", port=cluster.port, user=cluster.user,
                                password=cluster.password, dbname="postgres", connect_timeout=10)
    except psycopg2.Error as exc:
        raise ServiceError(f"PostgreSQL on 127.0.0.1:{cluster.port} refused a login as "
                           f"{cluster.user!r}: {' '.join(str(exc).split())}") from None
    try:
        conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (cluster.database,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(cluster.database)))
    finally:
        conn.close()


def stop(cluster: Cluster) -> bool:
    """Stop *cluster*'s server (True), or do nothing when it does not run (False).

    SIGINT is PostgreSQL's fast shutdown: sessions are ended, the data is left consistent.
    (SIGTERM, the smart one, would wait for every client to leave.)
    """
    pid = running_pid(cluster)
    if pid is None:
        return False
    log.info("stopping PostgreSQL pid=%d", pid)
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return True
    if not process.wait_for(lambda: not process.alive(pid), process.STOP_TIMEOUT_S):
        process.stop(pid, "PostgreSQL")
    return True
