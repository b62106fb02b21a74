"""A single-node KRaft Kafka broker, run from the Maven Central jars of ``jvm/kafka-broker``.

There is no Debian package and no Docker here, so the broker is ``java -cp
'<jars>/*' kafka.Kafka server.properties`` in its own JVM (its Scala 2.13 jars must
never meet Flink's 2.12 ones). Storage is formatted once, on the first start.
The broker is detached from the caller through a short-lived shell, so it outlives
the command that started it and never becomes the caller's zombie.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from stacktide.config import Config
from stacktide.errors import ServiceError
from stacktide.local import process
from stacktide.local.jars import ensure_jars, jar_dir

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient

log = logging.getLogger(__name__)

START_TIMEOUT_S = 90.0
TOPICS = ("notifications", "samples", "dead-letters", "alerts")
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# Per-topic configs at creation. The bridge's producer sends up to 16 MiB: an 8 MB
# notification (the parser's limit) or a dead letter of a body that large must fit,
# or Kafka would refuse it and the message would be redelivered forever.
TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    "notifications": {"max.message.bytes": str(MAX_MESSAGE_BYTES)},
    "dead-letters": {"max.message.bytes": str(MAX_MESSAGE_BYTES)},
}

LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = info
logger.apache.name = org.apache.kafka
logger.apache.level = info
"""


def home(config: Config) -> Path:
    return config.local.state_dir / "kafka"


def pidfile(config: Config) -> Path:
    return home(config) / "pid"


def log_path(config: Config) -> Path:
    return home(config) / "logs" / "server.log"


def bootstrap(config: Config) -> str:
    """The address of the local broker (not necessarily ``config.kafka.bootstrap_servers``)."""
    return f"127.0.0.1:{config.local.kafka_port}"


def running_pid(config: Config) -> int | None:
    """The pid of the broker *we* started for this state dir, if it is still running."""
    # The properties path is the broker's last argument: " <path> " in the joined cmdline.
    return process.owned_pid(pidfile(config), f" {home(config) / 'server.properties'} ")


def server_properties(config: Config) -> str:
    port, controller = config.local.kafka_port, config.local.kafka_controller_port
    return f"""\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={home(config) / "data"}
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
"""


def _java(config: Config, main: str, *args: str) -> list[str]:
    classpath = str(jar_dir(config, "kafka-broker") / "*")
    log4j = f"-Dlog4j2.configurationFile={home(config) / 'log4j2.properties'}"
    return ["java", "-Xmx512m", "-cp", classpath, log4j, main, *args]


def _run_tool(config: Config, *args: str) -> str:
    command = _java(config, "kafka.tools.StorageTool", *args)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    except OSError as exc:
        raise ServiceError(f"cannot run java for Kafka's StorageTool: {exc}") from exc
    if done.returncode != 0:
        raise ServiceError(f"Kafka StorageTool {args[0]} failed (exit {done.returncode}): "
                           f"{(done.stdout + done.stderr).strip()[-500:]}")
    return done.stdout.strip()


def _prepare(config: Config) -> Path:
    """Write the config files (every start, so port changes apply); format storage once."""
    root = home(config)
    (root / "logs").mkdir(parents=True, exist_ok=True)
    props = root / "server.properties"
    props.write_text(server_properties(config), encoding="utf-8")
    (root / "log4j2.properties").write_text(LOG4J2.format(log=log_path(config)), encoding="utf-8")
    if not (root / "data" / "meta.properties").exists():
        cluster_id = _run_tool(config, "random-uuid").splitlines()[-1].strip()
        log.info("formatting Kafka storage cluster_id=%s", cluster_id)
        _run_tool(config, "format", "-t", cluster_id, "-c", str(props))
    return props


def start(config: Config) -> int:
    """Start the broker unless ours already runs; return its pid once it answers metadata."""
    pid = running_pid(config)
    if pid is not None:
        log.info("Kafka already running pid=%d port=%d", pid, config.local.kafka_port)
        _wait_ready(config, pid)
        return pid
    process.require_free({"broker port": config.local.kafka_port,
                          "controller port": config.local.kafka_controller_port}, "Kafka")
    ensure_jars(config, groups=["kafka-broker"])
    props = _prepare(config)
    stdout = home(config) / "logs" / "stdout.log"
    # The shell starts java in the background, prints its pid and exits: java is
    # re-parented to init and lives in its own session, detached from us.
    script = 'exec "$@" </dev/null >>"$0" 2>&1 & echo $!'
    log.info("starting Kafka port=%d state=%s", config.local.kafka_port, home(config))
    command = ["sh", "-c", script, str(stdout), *_java(config, "kafka.Kafka", str(props))]
    done = subprocess.run(command, capture_output=True, text=True, start_new_session=True,
                          check=True)
    pid = int(done.stdout.strip())
    pidfile(config).write_text(f"{pid}\n", encoding="ascii")
    _wait_ready(config, pid)
    log.info("Kafka ready pid=%d port=%d", pid, config.local.kafka_port)
    return pid


def _wait_ready(config: Config, pid: int) -> None:
    """Wait until the broker serves metadata: the port opens before the controller is elected."""
    from confluent_kafka import KafkaException

    def answers() -> bool:
        if not process.alive(pid):
            stdout = home(config) / "logs" / "stdout.log"
            raise ServiceError(f"Kafka pid {pid} exited during start-up; see {log_path(config)} "
                               f"and {stdout}, which ends:\n{process.tail(stdout)}")
        if not process.port_open(config.local.kafka_port):
            return False
        try:
            _admin(bootstrap(config)).list_topics(timeout=5)
        except KafkaException:
            return False
        return True

    if not process.wait_for(answers, START_TIMEOUT_S, interval_s=0.5):
        raise ServiceError(f"Kafka on {bootstrap(config)} did not answer within "
                           f"{START_TIMEOUT_S:.0f} s; see {log_path(config)}")


def _admin(servers: str) -> AdminClient:
    """An admin client that keeps quiet about refused connections: probing expects them."""
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": servers, "log_level": 2})


def ensure_topics(config: Config, bootstrap_servers: str | None = None) -> list[str]:
    """Create the stacktide topics that do not exist yet; return all their names.

    Talks to *bootstrap_servers*, by default ``config.kafka.bootstrap_servers``.
    """
    from confluent_kafka import KafkaError, KafkaException

    # The documented public name; the package's type stubs do not re-export it.
    from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

    admin = _admin(bootstrap_servers or config.kafka.bootstrap_servers)
    names = [config.kafka.topic(t) for t in TOPICS]
    wanted = [NewTopic(config.kafka.topic(t), num_partitions=config.kafka.partitions,
                       replication_factor=1, config=TOPIC_CONFIGS.get(t, {}))
              for t in TOPICS]
    for name, future in admin.create_topics(wanted, request_timeout=30).items():
        try:
            future.result(timeout=60)
            log.info("created Kafka topic %s", name)
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise ServiceError(f"cannot create Kafka topic {name}: {error}") from exc

    # The controller acknowledges a creation before the broker's metadata shows it;
    # callers produce right away, so return only once the topics are visible.
    def visible() -> bool:
        try:
            topics = admin.list_topics(timeout=10).topics
        except KafkaException:
            return False
        return all(n in topics and topics[n].error is None and topics[n].partitions
                   for n in names)

    if not process.wait_for(visible, 30.0):
        raise ServiceError(f"Kafka topics {', '.join(names)} were created but did not appear "
                           f"in the metadata of {bootstrap_servers or config.kafka.bootstrap_servers}")
    return names


def stop(config: Config) -> bool:
    """Stop the broker we started (True), or do nothing when none of ours runs (False)."""
    pid = running_pid(config)
    if pid is None:
        return False
    process.stop(pid, "Kafka")
    pidfile(config).unlink(missing_ok=True)
    return True


def restart(config: Config) -> int:
    """Stop the broker (SIGTERM, clean) and start it again on the same data; returns the new pid."""
    stop(config)
    return start(config)
