"""docker/compose.yaml brought up for real, with testcontainers: every service healthy, and a
notification published to the stack's RabbitMQ arrives in its Kafka through the bridge.

Needs a Docker engine with the compose plugin, so these tests are marked ``docker`` and
deselected by default (pyproject.toml's addopts); run them where an engine runs:

    .venv/bin/pytest -m docker tests/docker

The first run builds the image (several minutes: apache-flink, the jars). The stack is torn
down with its volumes afterwards. It publishes fixed host ports (docker/compose.yaml): stop a
stack of the same file, or anything else on those ports, first.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from testcontainers.compose import DockerCompose

from connectors.replay import publish
from jobs.command import JOB_NAME
from stacktide.config import REPO_ROOT, Config, config_from_mapping
from stacktide.schema import CapturedMessage
from tests.helpers import read_topic

pytestmark = pytest.mark.docker

DOCKER = REPO_ROOT / "docker"


@pytest.fixture(scope="module")
def stack() -> Iterator[DockerCompose]:
    """The whole stack, built and up; ``up --wait`` returns once every service is healthy
    and the one-shot set-up has completed, and fails if one does not."""
    with DockerCompose(DOCKER, compose_file_name="compose.yaml", build=True, wait=True) as compose:
        yield compose


@pytest.fixture(scope="module")
def host_config() -> Config:
    """docker/stacktide.yaml as seen from the host: the same cells, topics and credentials,
    through the ports compose.yaml publishes (Kafka's listener advertised as localhost)."""
    data: dict[str, Any] = yaml.safe_load((DOCKER / "stacktide.yaml").read_text(encoding="utf-8"))
    for cell in data["cells"]:
        cell["transport_url"] = cell["transport_url"].replace("@rabbitmq:", "@127.0.0.1:")
    data["kafka"]["bootstrap_servers"] = "127.0.0.1:9094"
    # The warehouse through MinIO's published port, with the secret key the services get from
    # their environment.
    services = yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))["services"]
    data["iceberg"]["s3"]["endpoint"] = "http://127.0.0.1:9000"
    data["iceberg"]["s3"]["secret_access_key"] = services["minio"]["environment"]["MINIO_ROOT_PASSWORD"]
    return config_from_mapping(data, "docker/stacktide.yaml (from the host)", base=DOCKER)


def test_every_long_running_service_is_healthy_and_the_set_up_completed(stack: DockerCompose) -> None:
    containers = {c.Service: c for c in stack.get_containers(include_all=True)}
    services = yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))["services"]
    assert set(containers) == set(services)
    for name, svc in services.items():
        if svc.get("restart") == "no":
            assert (containers[name].State, containers[name].ExitCode) == ("exited", 0), name
        else:
            assert (containers[name].State, containers[name].Health) == ("running", "healthy"), name


def test_the_jobs_run_on_the_flink_cluster_with_its_taskmanager(stack: DockerCompose) -> None:
    out, err, code = stack.exec_in_container(
        ["curl", "-fsS", "http://flink-jobmanager:8081/jobs/overview"], service_name="jobs")
    assert code == 0, err
    jobs = json.loads(out)["jobs"]
    assert [j["state"] for j in jobs if j["name"] == JOB_NAME] == ["RUNNING"]
    out, err, code = stack.exec_in_container(
        ["curl", "-fsS", "http://localhost:8081/taskmanagers"], service_name="flink-jobmanager")
    assert code == 0, err
    assert len(json.loads(out)["taskmanagers"]) == 1


def test_a_notification_published_to_rabbitmq_reaches_kafka(
        stack: DockerCompose, host_config: Config) -> None:
    message_id = str(uuid.uuid4())
    body = json.dumps({
        "message_id": message_id, "event_type": "compute.instance.create.end",
        "priority": "INFO", "publisher_id": "compute.docker-test",
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
        "payload": {"instance_id": str(uuid.uuid4()), "tenant_id": "docker-test", "state": "active"},
    })
    message = CapturedMessage.from_wire("cell1", "nova", "notifications.info", body.encode(),
                                        {"content_type": "application/json", "delivery_mode": 2})
    assert publish(host_config, [message]) == 1

    def arrived() -> list[dict[str, Any]]:
        records = read_topic(host_config, "notifications", timeout=30)
        return [e for e in (json.loads(r.value) for r in records) if e["message_id"] == message_id]

    deadline = time.monotonic() + 120
    found = arrived()
    while not found and time.monotonic() < deadline:
        time.sleep(2)
        found = arrived()
    assert len(found) == 1
    assert (found[0]["cell"], found[0]["exchange"], found[0]["event_type"]) == \
        ("cell1", "nova", "compute.instance.create.end")
