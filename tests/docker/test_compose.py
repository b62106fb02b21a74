"""docker/: the compose file, its image and its configuration, checked without a Docker engine.

First against the Compose Specification's own JSON schema (installed by ``make venv``), then
by the rules a schema cannot express: every long-running service has a health check, every
one-shot is awaited by a service that outlives it (or ``docker compose up --wait`` fails on
its exit), every dependency names a service that can satisfy its condition, every named
volume is declared; the image's pins agree with pyproject.toml, the Makefile and jvm/; and
docker/stacktide.yaml loads with the project's loader and names the services of the file.
Each rule is also shown to catch a broken copy, so a rule that cannot fail cannot pass.
"""

from __future__ import annotations

import copy
import json
import re
import sys
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import pytest
import yaml

from stacktide.config import REPO_ROOT, S3_SECRET_ENV, Config, load_config
from stacktide.local.jars import JDBC_DRIVER_PACKAGES

DOCKER = REPO_ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
STACKTIDE_YAML = DOCKER / "stacktide.yaml"
FLINK_CONFIG = DOCKER / "flink" / "config.yaml"
# Where `make venv` puts the schema (Makefile, COMPOSE_SCHEMA): the venv that runs the tests.
SCHEMA = Path(sys.prefix) / "share" / "compose-spec" / "compose-spec.json"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = load(COMPOSE)
    assert isinstance(doc, dict)
    return doc


@pytest.fixture
def stack_config(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Config:
    """docker/stacktide.yaml as the stacktide services load it: with the environment the file
    gives them (the warehouse's secret key comes from there)."""
    environment = compose["services"]["bridge"]["environment"]
    monkeypatch.setenv(S3_SECRET_ENV, environment[S3_SECRET_ENV])
    return load_config(STACKTIDE_YAML)


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    assert SCHEMA.is_file(), f"{SCHEMA} is missing: `make venv` installs it (npm's dclint 3.1.0)"
    loaded: dict[str, Any] = json.loads(SCHEMA.read_text(encoding="utf-8"))
    return loaded


# --- the rules ---------------------------------------------------------------------------------

def schema_errors(doc: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    # The schema names draft 07 in a spelling jsonschema does not look up ("…/draft-07/schema").
    assert "draft-07" in schema["$schema"]
    validator = jsonschema.Draft7Validator(schema)
    # An error under oneOf/anyOf says only "not valid under any of the given schemas"; the
    # errors of each branch (its context) say why.
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
            for top in validator.iter_errors(doc) for e in (top, *top.context)]


def one_shot(service: dict[str, Any]) -> bool:
    return service.get("restart") == "no"


def conditions(service: dict[str, Any]) -> dict[str, str]:
    """depends_on as service -> condition (the short list form means ``service_started``)."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def health_problems(doc: dict[str, Any]) -> list[str]:
    services = doc["services"]
    problems = []
    for name, svc in services.items():
        if "restart" not in svc:
            problems.append(f"{name}: no restart policy ('no' for a one-shot, else unless-stopped)")
        elif one_shot(svc):
            adopters = [n for n, s in services.items()
                        if conditions(s).get(name) == "service_completed_successfully"]
            if not adopters:
                problems.append(f"{name}: a one-shot no service awaits with "
                                "service_completed_successfully (up --wait fails on its exit)")
        else:
            check = svc.get("healthcheck") or {}
            if check.get("disable") or not check.get("test"):
                problems.append(f"{name}: a long-running service without a health check")
    return problems


def dependency_problems(doc: dict[str, Any]) -> list[str]:
    services = doc["services"]
    problems = []
    for name, svc in services.items():
        if isinstance(svc.get("depends_on"), list):
            problems.append(f"{name}: depends_on without conditions orders the start only")
        for dep, condition in conditions(svc).items():
            if dep not in services:
                problems.append(f"{name}: depends on {dep}, which is no service of the file")
            elif condition == "service_healthy" and not services[dep].get("healthcheck"):
                problems.append(f"{name}: waits for {dep} to be healthy, which has no health check")
            elif condition == "service_completed_successfully" and not one_shot(services[dep]):
                problems.append(f"{name}: waits for {dep} to complete, which is long-running")
            elif condition == "service_started":
                problems.append(f"{name}: waits for {dep} to start only, not to be ready")
    return problems


def named_volumes(svc: dict[str, Any]) -> dict[str, str]:
    """Named volume -> mount path of a service (bind mounts and anonymous volumes left out)."""
    found = {}
    for volume in svc.get("volumes") or []:
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            target = rest.split(":")[0]
        else:
            source, target = volume.get("source", ""), volume.get("target", "")
            if volume.get("type", "volume") != "volume":
                continue
        if source and target and not source.startswith((".", "/", "~", "$")):
            found[source] = target
    return found


def volume_problems(doc: dict[str, Any]) -> list[str]:
    declared = set(doc.get("volumes") or {})
    used = {v for svc in doc["services"].values() for v in named_volumes(svc)}
    return ([f"volume {v} is used but not declared under volumes:" for v in sorted(used - declared)]
            + [f"volume {v} is declared but no service mounts it" for v in sorted(declared - used)])


# --- the compose file --------------------------------------------------------------------------

def test_the_compose_file_is_valid_against_the_compose_specification(
        compose: dict[str, Any], schema: dict[str, Any]) -> None:
    assert schema["title"] == "Compose Specification"
    assert schema_errors(compose, schema) == []


@pytest.mark.parametrize(("path", "value", "complaint"), [
    (("services", "kafka", "healthcheck", "every"), "10s", "'every' does not match any of the regexes"),
    (("services", "bridge", "depends_on", "setup", "condition"), "service_done", "is not one of"),
    (("services", "postgres", "ports"), "5432", "is not of type 'array'"),
    (("volumes", "state"), "a string", "is not of type 'object'"),
])
def test_the_schema_rejects_what_compose_would(
        compose: dict[str, Any], schema: dict[str, Any], path: tuple[str, ...], value: Any,
        complaint: str) -> None:
    broken = copy.deepcopy(compose)
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert any(complaint in e for e in schema_errors(broken, schema)), schema_errors(broken, schema)


def test_services_the_stack_needs_are_all_there(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"rabbitmq", "kafka", "postgres", "minio", "minio-bucket",
                                        "setup", "flink-jobmanager", "flink-taskmanager", "bridge",
                                        "jobs"}


def test_every_long_running_service_has_a_health_check_and_every_one_shot_is_awaited(
        compose: dict[str, Any]) -> None:
    assert health_problems(compose) == []
    assert [n for n, s in compose["services"].items() if one_shot(s)] == ["minio-bucket", "setup"]


def test_the_health_rule_catches_a_missing_check_and_an_orphan_one_shot(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    del broken["services"]["kafka"]["healthcheck"]
    broken["services"]["bridge"]["depends_on"]["setup"]["condition"] = "service_healthy"
    broken["services"]["jobs"]["depends_on"].pop("setup")
    assert health_problems(broken) == [
        "kafka: a long-running service without a health check",
        "setup: a one-shot no service awaits with service_completed_successfully "
        "(up --wait fails on its exit)",
    ]


def test_every_dependency_names_a_service_that_can_meet_its_condition(compose: dict[str, Any]) -> None:
    assert dependency_problems(compose) == []


def test_the_dependency_rule_catches_unknown_unhealthy_and_unfinished_targets(
        compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    deps = broken["services"]["jobs"]["depends_on"]
    deps["trino"] = {"condition": "service_healthy"}
    deps["bridge"] = {"condition": "service_completed_successfully"}
    deps["rabbitmq"] = {"condition": "service_started"}
    broken["services"]["setup"]["healthcheck"] = None
    broken["services"]["flink-taskmanager"]["depends_on"] = ["flink-jobmanager"]
    assert sorted(dependency_problems(broken)) == [
        "flink-taskmanager: depends_on without conditions orders the start only",
        "flink-taskmanager: waits for flink-jobmanager to start only, not to be ready",
        "jobs: depends on trino, which is no service of the file",
        "jobs: waits for bridge to complete, which is long-running",
        "jobs: waits for rabbitmq to start only, not to be ready",
    ]


def test_every_named_volume_is_declared_and_used(compose: dict[str, Any]) -> None:
    assert volume_problems(compose) == []
    assert set(compose["volumes"]) == {"rabbitmq", "kafka", "postgres", "minio", "state"}


def test_the_volume_rule_catches_an_undeclared_and_an_unused_volume(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["postgres"]["volumes"] = ["pgdata:/var/lib/postgresql/data"]
    assert volume_problems(broken) == ["volume pgdata is used but not declared under volumes:",
                                       "volume postgres is declared but no service mounts it"]


def test_the_flink_processes_and_the_jobs_share_the_state_volume_at_one_path(
        compose: dict[str, Any]) -> None:
    """Checkpoints and savepoints are file:// paths: the JobManager writes their metadata, the
    TaskManagers their state and the Iceberg data files, the jobs' client reads them back."""
    mounts = {n: named_volumes(compose["services"][n]).get("state")
              for n in ("flink-jobmanager", "flink-taskmanager", "jobs", "bridge", "setup")}
    assert set(mounts.values()) == {"/var/lib/stacktide"}, mounts


def test_the_jobs_submit_to_the_jobmanager_of_the_file(compose: dict[str, Any]) -> None:
    flink = load(FLINK_CONFIG)
    services = compose["services"]
    rest = f"{flink['rest']['address']}:{flink['rest']['port']}"
    assert flink["rest"]["address"] == flink["jobmanager"]["rpc"]["address"] == "flink-jobmanager"
    assert flink["rest"]["address"] in services
    assert services["jobs"]["environment"]["SUBMIT_ARGS"] == f"remote -m {rest}"
    assert f"http://{rest}" in services["jobs"]["healthcheck"]["test"]
    assert f"http://{rest}" in services["flink-taskmanager"]["healthcheck"]["test"]
    assert f"http://localhost:{flink['rest']['port']}/overview" in \
        services["flink-jobmanager"]["healthcheck"]["test"]
    assert f"{flink['rest']['port']}:{flink['rest']['port']}" in services["flink-jobmanager"]["ports"]


def test_the_job_the_health_check_waits_for_is_the_one_the_jobs_submit(compose: dict[str, Any]) -> None:
    from jobs.command import JOB_NAME

    assert compose["services"]["jobs"]["healthcheck"]["test"][-1] == JOB_NAME


# --- the image and its pins --------------------------------------------------------------------

def pom_versions(group: str) -> dict[str, str]:
    """artifactId -> version of the dependencies of jvm/<group>/pom.xml."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    root = ET.parse(REPO_ROOT / "jvm" / group / "pom.xml").getroot()  # noqa: S314 (our own file)
    return {d.findtext("m:artifactId", namespaces=ns) or "": d.findtext("m:version", namespaces=ns) or ""
            for d in root.iterfind("m:dependencies/m:dependency", ns)}


def pyproject() -> dict[str, Any]:
    with (REPO_ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def test_the_image_runs_the_python_of_pyproject() -> None:
    wanted = re.fullmatch(r">=(\d+\.\d+),<\d+\.\d+", pyproject()["project"]["requires-python"])
    assert wanted is not None
    found = set(re.findall(r"python(\d+\.\d+)", DOCKERFILE.read_text(encoding="utf-8")))
    assert found == {wanted.group(1)}  # the Debian packages and FLINK_HOME's site-packages path


def test_the_image_runs_the_jdk_of_the_makefile() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    system = set(re.findall(r"openjdk-(\d+)-jdk-headless", makefile))
    image = set(re.findall(r"openjdk-(\d+)-j(?:dk|re)-headless", DOCKERFILE.read_text(encoding="utf-8")))
    assert len(system) == 1 and image == system


def test_the_jars_of_the_image_are_built_for_the_flink_pyflink_brings() -> None:
    """The cluster is PyFlink's own distribution (apache-flink's pin); the connector and the
    Iceberg runtime that `stacktide local jars` fetches into the image must be built for it."""
    pin = next(d for d in pyproject()["project"]["dependencies"] if d.startswith("apache-flink=="))
    minor = ".".join(pin.split("==")[1].split(".")[:2])
    flink = pom_versions("flink")
    assert flink["flink-connector-kafka"].endswith(f"-{minor}")
    assert f"iceberg-flink-runtime-{minor}" in flink
    assert "RUN --mount=type=cache,target=/root/.m2 stacktide local jars" in \
        DOCKERFILE.read_text(encoding="utf-8")


def test_the_kafka_image_is_the_broker_version_of_jvm(compose: dict[str, Any]) -> None:
    broker = next(v for a, v in pom_versions("kafka-broker").items() if a.startswith("kafka_"))
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{broker}"


def test_the_image_tag_is_the_project_version(compose: dict[str, Any]) -> None:
    version = pyproject()["project"]["version"]
    tagged = {s["image"] for s in compose["services"].values() if "build" in s}
    assert tagged == {f"stacktide:{version}"}


def test_every_file_the_image_installs_exists() -> None:
    named = set(re.findall(r"/opt/stacktide/(docker/[\w./-]+)", DOCKERFILE.read_text(encoding="utf-8")))
    assert named == {"docker/flink/config.yaml", "docker/entrypoint.sh", "docker/healthcheck.py"}
    assert all((REPO_ROOT / n).is_file() for n in named)


def test_the_flink_cluster_loads_the_jdbc_drivers_parent_first_as_the_jobs_do() -> None:
    patterns = load(FLINK_CONFIG)["classloader"]["parent-first-patterns"]["additional"]
    assert tuple(patterns) == JDBC_DRIVER_PACKAGES


# --- the configuration of the stack ------------------------------------------------------------

def test_the_stack_config_loads_with_the_project_loader(stack_config: Config) -> None:
    config = stack_config
    assert config.iceberg.uri.startswith("jdbc:postgresql://")
    assert config.iceberg.warehouse.startswith("s3://") and config.iceberg.object_store


def test_the_stack_config_names_the_services_and_credentials_of_the_file(
        compose: dict[str, Any], stack_config: Config) -> None:
    config = stack_config
    services = compose["services"]
    rabbit = services["rabbitmq"]["environment"]
    for c in config.cells:
        for host in c.transport.hosts:
            assert host.host in services
            assert (host.username, host.password.value) == (rabbit["RABBITMQ_DEFAULT_USER"],
                                                           rabbit["RABBITMQ_DEFAULT_PASS"])
    advertised = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    for server in config.kafka.bootstrap_servers.split(","):
        assert server.split(":")[0] in services
        assert f"//{server}" in advertised
    catalog = urlparse(config.iceberg.uri.removeprefix("jdbc:"))
    postgres = services["postgres"]["environment"]
    assert catalog.hostname in services and catalog.path == f"/{postgres['POSTGRES_DB']}"
    assert not catalog.query  # credentials are keys of their own, never in the uri
    assert (config.iceberg.user, config.iceberg.password) == (postgres["POSTGRES_USER"],
                                                              postgres["POSTGRES_PASSWORD"])


def test_the_warehouse_is_the_bucket_the_one_shot_makes_in_minio(
        compose: dict[str, Any], stack_config: Config) -> None:
    services = compose["services"]
    s3, minio = stack_config.iceberg.s3, services["minio"]
    assert s3 is not None and s3.path_style_access  # MinIO serves buckets by path
    endpoint = urlparse(s3.endpoint)
    assert endpoint.hostname == "minio"
    assert endpoint.port == 9000 and "9000:9000" in minio["ports"]
    root = minio["environment"]
    assert (s3.access_key_id, s3.secret_access_key) == (root["MINIO_ROOT_USER"],
                                                        root["MINIO_ROOT_PASSWORD"])
    # The secret key is in no file stacktide reads, only in every stacktide service's environment.
    assert "secret_access_key:" not in [line.strip().split(" ")[0] for line in
                                        STACKTIDE_YAML.read_text(encoding="utf-8").splitlines()]
    for name, svc in services.items():
        if "build" in svc:
            assert svc["environment"][S3_SECRET_ENV] == root["MINIO_ROOT_PASSWORD"], name
    bucket = urlparse(stack_config.iceberg.warehouse).netloc
    maker = services["minio-bucket"]
    assert maker["image"] == minio["image"] and maker["environment"] == root
    assert f"mc alias set stack {s3.endpoint} " in maker["command"][0]
    assert f"mc mb --ignore-existing stack/{bucket}" in maker["command"][0]
    # The jobs create the tables: they wait for the bucket.
    assert conditions(services["jobs"])["minio-bucket"] == "service_completed_successfully"
    assert conditions(maker)["minio"] == "service_healthy"


def test_the_stack_config_is_where_the_services_read_it_and_keeps_state_on_the_volume(
        compose: dict[str, Any], stack_config: Config) -> None:
    config = stack_config
    for name, svc in compose["services"].items():
        if "build" not in svc:
            continue
        target = svc["environment"]["STACKTIDE_CONFIG"]
        assert f"./{STACKTIDE_YAML.name}:{target}:ro" in svc["volumes"], name
        state = named_volumes(svc)["state"]
        assert config.local.state_dir == Path(state), name


def test_the_bridge_serves_its_health_where_its_check_asks(
        compose: dict[str, Any], stack_config: Config) -> None:
    config = stack_config
    bridge = compose["services"]["bridge"]
    assert config.bridge.metrics_host == "0.0.0.0"  # reached by the health probe
    assert f"http://localhost:{config.bridge.metrics_port}/healthz" in bridge["healthcheck"]["test"]
    assert f"{config.bridge.metrics_port}:{config.bridge.metrics_port}" in bridge["ports"]
