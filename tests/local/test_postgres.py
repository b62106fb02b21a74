"""``stacktide.local.postgres``: a cluster of its own, run by an unprivileged user, password login."""

from __future__ import annotations

import os
import pwd
import stat

import psycopg2
import pytest

from stacktide.errors import ServiceError
from stacktide.local import postgres as pg
from stacktide.local import process


def test_cluster_is_unprivileged_idempotent_and_needs_its_password(postgres: pg.Cluster) -> None:
    pid = pg.running_pid(postgres)
    assert pid is not None and pg.start(postgres) == pid  # a second start leaves it alone
    owner = os.stat(f"/proc/{pid}").st_uid
    assert owner != 0
    if os.geteuid() == 0:
        assert pwd.getpwuid(owner).pw_name == pg.SERVICE_USER
    data = postgres.data.stat()
    assert data.st_uid == owner and stat.S_IMODE(data.st_mode) == 0o700
    assert f"-D {postgres.data}" in process.cmdline(pid)

    conn = psycopg2.connect(host="127.0.0.1", port=postgres.port, user=postgres.user,
                            password=postgres.password, dbname=postgres.database)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT current_database(), current_user")
        assert cur.fetchone() == (postgres.database, postgres.user)
    conn.close()
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(host="127.0.0.1", port=postgres.port, user=postgres.user,
                         password="wrong", dbname=postgres.database)


def test_a_second_cluster_refuses_a_taken_port(postgres: pg.Cluster) -> None:
    other = pg.Cluster(postgres.home.with_name(postgres.home.name + "-other"), postgres.port,
                       "someone", "pw")
    with pytest.raises(ServiceError, match=f"127.0.0.1:{postgres.port} is already in use"):
        pg.start(other)
    assert not other.home.exists()
