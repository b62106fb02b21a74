"""Shared fixtures: a test stack of real services, started once per session.

The test stack has its own ports (RabbitMQ 5682, Kafka 9192/9193) and its own
state dir (fresh each session), so it never meets a developer's default stack on 5672/9092. It shares
the normal jar cache, so the jars are fetched once per machine, not per run.
No skips: when a service cannot start, the tests that need it fail.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stacktide.config import Config, config_from_mapping
from stacktide.local import postgres as pg

# STACKTIDE_TEST_SLOT=N (default 0) moves the test stacks to ports + 1000*N and a state dir and lock
# of its own, so two checkouts on one machine can run their stack tests at the same time.
SLOT = int(os.environ.get("STACKTIDE_TEST_SLOT", "0"))
TEST_PORTS = {"rabbitmq_port": 5682 + 1000 * SLOT, "kafka_port": 9192 + 1000 * SLOT,
              "kafka_controller_port": 9193 + 1000 * SLOT}
# The standalone Flink cluster of the tests that submit jobs (stacktide.local.flink_cluster).
FLINK_PORTS = {"flink_rest_port": 8181 + 1000 * SLOT, "flink_rpc_port": 6223 + 1000 * SLOT}
STACK_DIR = "stacktide-test-stack" + (f"-slot{SLOT}" if SLOT else "")
POSTGRES_PORT = 5442 + 1000 * SLOT
S3_PORT = 9290 + 1000 * SLOT
FAULT_PORTS = {"rabbitmq_port": 5747 + 1000 * SLOT, "kafka_port": 9347 + 1000 * SLOT,
               "kafka_controller_port": 9348 + 1000 * SLOT,
               "flink_rest_port": 8247 + 1000 * SLOT, "flink_rpc_port": 6247 + 1000 * SLOT}


def make_config(state_dir: Path, rabbitmq_port: int, kafka_port: int,
                kafka_controller_port: int, flink_rest_port: int = FLINK_PORTS["flink_rest_port"],
                flink_rpc_port: int = FLINK_PORTS["flink_rpc_port"]) -> Config:
    """A config for a stack on the given loopback ports whose state lives in *state_dir*."""
    data: dict[str, Any] = {
        "cells": [{"name": "cell1",
                   "transport_url": f"rabbit://guest:guest@127.0.0.1:{rabbitmq_port}/"}],
        "kafka": {"bootstrap_servers": f"127.0.0.1:{kafka_port}", "topic_prefix": "stacktide"},
        "local": {"state_dir": str(state_dir), "rabbitmq_port": rabbitmq_port,
                  "kafka_port": kafka_port, "kafka_controller_port": kafka_controller_port,
                  "flink_rest_port": flink_rest_port, "flink_rpc_port": flink_rpc_port},
    }
    # The cache dir is left to its default ($STACKTIDE_CACHE or ~/.cache/stacktide).
    return config_from_mapping(data, "<tests/conftest.py>", base=state_dir)


@pytest.fixture(scope="session")
def make_stack_config() -> Callable[..., Config]:
    """The factory of test-stack configs, for tests that need a second stack or odd ports."""
    return make_config


@pytest.fixture(scope="session")
def stack_config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """The test stack's config (services not necessarily running; use ``stack`` for that).

    The state dir sits beside pytest's numbered temp dirs rather than inside one, so
    a stack left running by a crashed session is found (by its pid files) and stopped
    by the next session instead of blocking its ports as a stranger.
    """
    root = tmp_path_factory.getbasetemp().parent / STACK_DIR
    return make_config(root / "state", **TEST_PORTS)


@contextmanager
def _exclusive(lock: Path, timeout_s: float = 1200.0) -> Iterator[None]:
    """One test session at a time owns the test stack's ports; others wait their turn."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another test session holds {lock}") from None
                time.sleep(1.0)
        yield


@pytest.fixture(scope="session")
def stack(stack_config: Config) -> Iterator[Config]:
    """The test stack, up and fresh: RabbitMQ and Kafka answering, topics and jars in place."""
    from stacktide.local import down, up

    state = stack_config.local.state_dir
    with _exclusive(state.parent / "session.lock"):
        down(stack_config)  # whatever a crashed session left running
        shutil.rmtree(state, ignore_errors=True)
        try:
            up(stack_config)
            yield stack_config
        finally:
            down(stack_config)


@pytest.fixture(scope="module")
def fault_stack(stack: Config) -> Iterator[Config]:
    """A stack of the module's own, for tests that restart or kill its brokers (the session
    stack's other users must not see that). Fresh for each module that asks; the session's
    lock is held through ``stack``."""
    from stacktide.local import down, up

    config = make_config(stack.local.state_dir.parent / "fault-stack", **FAULT_PORTS)
    down(config)
    shutil.rmtree(config.local.state_dir, ignore_errors=True)
    try:
        up(config)
        yield config
    finally:
        down(config)


@pytest.fixture(scope="session")
def flink_cluster(stack: Config) -> Iterator[Any]:
    """A standalone Flink cluster (JobManager and TaskManager, separate processes) beside the
    test stack, on the slot's Flink ports, its state in the stack's (fresh) state dir."""
    from stacktide.local.flink_cluster import FlinkCluster

    cluster = FlinkCluster(stack)
    try:
        yield cluster.up()
    finally:
        cluster.down()


@pytest.fixture(scope="session")
def postgres() -> Iterator[pg.Cluster]:
    """A PostgreSQL cluster of this session's own (port 5442 + 1000 * slot), fresh, with a
    password made for the session, for catalogs on PostgreSQL.

    Its folder is in the system temp dir rather than beside the stack's: as root the server runs
    as the ``postgres`` user, who cannot enter pytest's private ``/tmp/pytest-of-root``. The
    folder's name is fixed per slot, so a cluster a crashed session left running is found (by
    its ``postmaster.pid``) and stopped by the next one.
    """
    home = Path(tempfile.gettempdir()) / ("stacktide-test-postgres" + (f"-slot{SLOT}" if SLOT else ""))
    cluster = pg.Cluster(home, POSTGRES_PORT, "stacktide", secrets.token_urlsafe(16))
    with _exclusive(home.with_name(home.name + ".lock")):
        pg.stop(cluster)
        shutil.rmtree(home, ignore_errors=True)
        try:
            pg.start(cluster)
            yield cluster
        finally:
            pg.stop(cluster)


@dataclass(frozen=True)
class S3Server:
    """An S3-compatible server on loopback and the keys the tests sign their requests with."""

    endpoint: str
    access_key_id: str
    secret_access_key: str
    region: str = "us-east-1"

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=self.region,
                            aws_access_key_id=self.access_key_id,
                            aws_secret_access_key=self.secret_access_key)


def _answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's S3 server (``python -m moto.server``) as a process of its own, on port
    9290 + 1000 * slot, with keys made for the session. It keeps objects in its memory: a
    fresh process is a fresh store. moto accepts any signature; what the keys are checked for
    is that they never show up in output or logs."""
    log = tmp_path_factory.mktemp("s3") / "moto.log"
    lock = Path(tempfile.gettempdir()) / ("stacktide-test-s3" + (f"-slot{SLOT}" if SLOT else "") + ".lock")
    with _exclusive(lock), log.open("wb") as out:
        if _answers(S3_PORT):
            raise RuntimeError(f"port {S3_PORT} is taken: the S3 server of this slot cannot start")
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                    "-p", str(S3_PORT)], stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while not _answers(S3_PORT):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto's S3 server did not start: {log.read_text()[-2000:]}")
                time.sleep(0.2)
            yield S3Server(f"http://127.0.0.1:{S3_PORT}", "stacktide-test",
                           secrets.token_urlsafe(24))
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
