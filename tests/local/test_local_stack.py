"""``stacktide local``: the real RabbitMQ and Kafka, started, reached, stopped.

Most tests use the session's test stack (conftest ``stack``); the ``down`` test
starts a second stack on other ports so the session stack stays up, and checks
the session stack's processes survive it.
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pika
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from stacktide.cli import main
from stacktide.config import Config
from stacktide.errors import ServiceError
from stacktide.local import down, jars, kafka, process, rabbitmq, status, up
from tests.conftest import SLOT, STACK_DIR, TEST_PORTS

SECOND_STACK = {k: v + 10 for k, v in TEST_PORTS.items()}
BUSY_RABBIT, BUSY_KAFKA = 5702 + 1000 * SLOT, 9302 + 1000 * SLOT


@pytest.mark.stack
def test_up_is_idempotent_and_quick_when_running(stack: Config) -> None:
    before = status(stack)
    started = time.monotonic()
    after = up(stack)
    assert time.monotonic() - started < 10
    assert after.running
    assert (after.rabbitmq.pid, after.kafka.pid) == (before.rabbitmq.pid, before.kafka.pid)


@pytest.mark.stack
def test_status_reports_both_services_with_ports(
    stack: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = status(stack)
    assert result.rabbitmq.running and result.kafka.running
    rabbit, kafka = TEST_PORTS["rabbitmq_port"], TEST_PORTS["kafka_port"]
    assert (result.rabbitmq.port, result.kafka.port) == (rabbit, kafka)
    assert process.alive(result.rabbitmq.pid or -1) and process.alive(result.kafka.pid or -1)
    assert result.kafka.log.is_file()
    assert result.warehouse.startswith("file://") and result.catalog_uri.startswith("jdbc:sqlite:")
    assert (stack.local.state_dir / "iceberg" / "warehouse").is_dir()

    config_file = tmp_path / "stacktide.yaml"
    config_file.write_text(
        f"cells: [{{name: cell1, transport_url: 'rabbit://guest:guest@127.0.0.1:{rabbit}/'}}]\n"
        f"local: {{state_dir: '{stack.local.state_dir}', rabbitmq_port: {rabbit}, "
        f"kafka_port: {kafka}, kafka_controller_port: {TEST_PORTS['kafka_controller_port']}}}\n",
        encoding="utf-8")
    assert main(["--config", str(config_file), "local", "status"]) == 0
    out = capsys.readouterr().out
    assert f"running  pid={result.rabbitmq.pid}" in out
    assert f"running  pid={result.kafka.pid}" in out
    assert f"port={rabbit}" in out and f"port={kafka}" in out


@pytest.mark.stack
def test_rabbitmq_message_round_trip(stack: Config) -> None:
    params = pika.ConnectionParameters("127.0.0.1", stack.local.rabbitmq_port,
                                       credentials=pika.PlainCredentials("guest", "guest"))
    body = uuid.uuid4().hex.encode()
    connection = pika.BlockingConnection(params)
    try:
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.basic_publish("", queue, body)
        got = None
        for _ in range(50):
            _, _, got = channel.basic_get(queue, auto_ack=True)
            if got is not None:
                break
            time.sleep(0.1)
    finally:
        connection.close()
    assert got == body


@pytest.mark.stack
def test_topics_created_and_record_round_trip(stack: Config) -> None:
    config = dataclasses.replace(
        stack, kafka=dataclasses.replace(stack.kafka, topic_prefix=f"t{uuid.uuid4().hex[:8]}"))
    names = kafka.ensure_topics(config)
    assert kafka.ensure_topics(config) == names  # a second call finds them and is fine
    metadata = AdminClient({"bootstrap.servers": config.kafka.bootstrap_servers}).list_topics(
        timeout=10)
    for name in names:
        assert len(metadata.topics[name].partitions) == config.kafka.partitions
    assert {stack.kafka.topic(t) for t in kafka.TOPICS} <= set(metadata.topics)

    topic, value = config.kafka.topic("notifications"), uuid.uuid4().hex.encode()
    producer = Producer({"bootstrap.servers": config.kafka.bootstrap_servers})
    producer.produce(topic, value, key=b"k")
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": config.kafka.bootstrap_servers,
                         "group.id": f"g{uuid.uuid4().hex}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    got: list[tuple[bytes | None, bytes | None]] = []
    try:
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                got.append((msg.key(), msg.value()))
    finally:
        consumer.close()
    assert got == [(b"k", value)]


@pytest.fixture
def second_stack(
    tmp_path_factory: pytest.TempPathFactory, make_stack_config: Callable[..., Config]
) -> Iterator[Config]:
    """A second stack's config, fresh; stable state dir, so a crashed run's leftovers are ours."""
    config = make_stack_config(
        tmp_path_factory.getbasetemp().parent / f"{STACK_DIR}-2", **SECOND_STACK)
    down(config)
    shutil.rmtree(config.local.state_dir, ignore_errors=True)
    yield config
    down(config)


@pytest.mark.stack
def test_down_stops_only_what_up_started(stack: Config, second_stack: Config) -> None:
    session_before = status(stack)
    started = up(second_stack)
    assert started.running
    assert started.rabbitmq.pid != session_before.rabbitmq.pid
    stopped = down(second_stack)
    assert not stopped.rabbitmq.running and not stopped.kafka.running
    assert not process.alive(started.rabbitmq.pid or -1)
    assert not process.alive(started.kafka.pid or -1)
    assert not process.port_open(SECOND_STACK["rabbitmq_port"])
    assert not process.port_open(SECOND_STACK["kafka_port"])
    session_after = status(stack)
    assert session_after.running
    assert (session_after.rabbitmq.pid, session_after.kafka.pid) == (
        session_before.rabbitmq.pid, session_before.kafka.pid)


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """A process stacktide did not start."""
    proc = subprocess.Popen(["sleep", "300"])
    yield proc
    proc.kill()
    proc.wait()


def test_down_leaves_a_foreign_pid_alone(
    tmp_path: Path, make_stack_config: Callable[..., Config], stranger: subprocess.Popen[bytes]
) -> None:
    config = make_stack_config(tmp_path, **SECOND_STACK)
    for pidfile in (rabbitmq.pidfile(config), kafka.pidfile(config)):
        pidfile.parent.mkdir(parents=True, exist_ok=True)
        pidfile.write_text(f"{stranger.pid}\n")
    result = down(config)
    assert stranger.poll() is None, "down killed a process it did not start"
    assert not result.rabbitmq.running and not result.kafka.running
    assert not rabbitmq.pidfile(config).exists()  # the stale pid file was dropped


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A foreign listener on the RabbitMQ and Kafka ports of a throw-away stack."""
    sockets = []
    for port in (BUSY_RABBIT, BUSY_KAFKA):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()
        sockets.append(sock)
    yield sockets[0]
    for sock in sockets:
        sock.close()


@pytest.mark.parametrize("service", [rabbitmq, kafka], ids=["rabbitmq", "kafka"])
def test_port_held_by_a_foreign_listener_is_refused(
    service: object, tmp_path: Path, make_stack_config: Callable[..., Config],
    listener: socket.socket
) -> None:
    config = make_stack_config(tmp_path, rabbitmq_port=BUSY_RABBIT, kafka_port=BUSY_KAFKA,
                               kafka_controller_port=9303)
    with pytest.raises(ServiceError,
                       match=rf"127\.0\.0\.1:({BUSY_RABBIT}|{BUSY_KAFKA}) is already in use"):
        service.start(config)  # type: ignore[attr-defined]
    assert not service.pidfile(config).exists()  # type: ignore[attr-defined]


@pytest.mark.stack
def test_jars_verify_against_the_committed_checksums(stack: Config) -> None:
    expected = jars.read_checksums(jars.CHECKSUMS)
    verified = jars.verify_jars(stack)
    assert set(verified) == set(jars.GROUPS)
    listed = {f"{group}/{p.name}" for group, paths in verified.items() for p in paths}
    assert listed == set(expected)
    names = {p.name for p in verified["kafka-broker"]}
    assert "kafka_2.13-4.2.2.jar" in names and "log4j-core-2.25.3.jar" in names
    assert any(p.name.startswith("iceberg-flink-runtime-2.1") for p in verified["flink"])
    assert jars.ensure_jars(stack) == verified


def _tampered(tmp_path: Path, name: str) -> tuple[Path, str]:
    lines = jars.CHECKSUMS.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.endswith("  " + name))
    good = lines[index][:64]
    lines[index] = ("0" if good[0] != "0" else "1") + good[1:] + lines[index][64:]
    path = tmp_path / "checksums.sha256"
    path.write_text("\n".join(lines) + "\n")
    return path, good


@pytest.mark.stack
def test_tampered_checksum_names_file_and_both_hashes(stack: Config, tmp_path: Path) -> None:
    name = "hadoop/jsr305-3.0.2.jar"
    checksums, good = _tampered(tmp_path, name)
    with pytest.raises(ServiceError) as caught:
        jars.verify_jars(stack, checksums=checksums)
    message = str(caught.value)
    assert name in message and good in message and str(checksums) in message
    assert jars.read_checksums(checksums)[name] in message
    # ensure_jars refetches, still finds the mismatch, and leaves the good cache intact.
    with pytest.raises(ServiceError, match="checksum mismatch for hadoop/jsr305"):
        jars.ensure_jars(stack, groups=["hadoop"], checksums=checksums)
    assert jars.verify_jars(stack, groups=["hadoop"])["hadoop"]


def test_unlisted_jar_is_an_error(stack_config: Config, tmp_path: Path) -> None:
    lines = [line for line in jars.CHECKSUMS.read_text().splitlines()
             if not line.endswith("hadoop/jsr305-3.0.2.jar")]
    checksums = tmp_path / "checksums.sha256"
    checksums.write_text("\n".join(lines) + "\n")
    jars.ensure_jars(stack_config, groups=["hadoop"])  # the real cache, fetched if need be
    with pytest.raises(ServiceError, match=r"unexpected jar.*jsr305-3\.0\.2\.jar"):
        jars.verify_jars(stack_config, groups=["hadoop"], checksums=checksums)


def test_missing_maven_is_a_clear_error(
    stack_config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty_cache = dataclasses.replace(stack_config.local, cache_dir=tmp_path / "cache")
    config = dataclasses.replace(stack_config, local=empty_cache)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServiceError, match="install Maven: apt-get install maven"):
        jars.ensure_jars(config, groups=["hadoop"])
