"""``stacktide local up|down|status|jars|cluster``: the embedded default stack on this machine.

``cluster up|down|status`` runs a standalone Flink session cluster beside it
(:mod:`stacktide.local.flink_cluster`), for ``stacktide jobs submit``.

``up`` is idempotent (what already runs is left alone) and refuses ports held by
processes it did not start; ``down`` stops only what ``up`` started, as recorded
by the pid files in the state dir. The same operations are the Python API
(:func:`up`, :func:`down`, :func:`status`) used by the tests and the demo.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from stacktide.config import Config
from stacktide.local import jars, kafka, process, rabbitmq
from stacktide.local.operators import operator_jar

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    name: str
    running: bool
    pid: int | None
    port: int
    log: Path
    foreign: bool = False  # the port answers, but not from a process we started

    def line(self) -> str:
        state = f"running  pid={self.pid}" if self.running else "stopped"
        if self.foreign:
            state += f" (port {self.port} held by a process stacktide did not start)"
        return f"{self.name:<9} {state:<22} port={self.port} log={self.log}"


@dataclass(frozen=True, slots=True)
class StackStatus:
    rabbitmq: ServiceStatus
    kafka: ServiceStatus
    jar_cache: Path
    catalog_uri: str
    warehouse: str

    @property
    def running(self) -> bool:
        return self.rabbitmq.running and self.kafka.running

    def text(self) -> str:
        return "\n".join([
            self.rabbitmq.line(),
            self.kafka.line(),
            f"{'jars':<9} cache={self.jar_cache}",
            f"{'iceberg':<9} catalog={self.catalog_uri} warehouse={self.warehouse}",
        ])


def _service(name: str, pid: int | None, port: int, log_path: Path) -> ServiceStatus:
    foreign = pid is None and process.port_open(port)
    return ServiceStatus(name, pid is not None, pid, port, log_path, foreign)


def status(config: Config) -> StackStatus:
    """What runs of this config's stack; never starts or stops anything."""
    return StackStatus(
        rabbitmq=_service("rabbitmq", rabbitmq.running_pid(config), config.local.rabbitmq_port,
                          rabbitmq.log_dir(config)),
        kafka=_service("kafka", kafka.running_pid(config), config.local.kafka_port,
                       kafka.log_path(config)),
        jar_cache=config.local.cache_dir / "jars",
        catalog_uri=config.iceberg.uri,
        warehouse=config.iceberg.warehouse,
    )


def up(config: Config) -> StackStatus:
    """Jars verified, RabbitMQ and Kafka answering, topics and Iceberg dirs present."""
    jars.ensure_jars(config)
    rabbitmq.start(config)
    kafka.start(config)
    (config.local.state_dir / "iceberg" / "warehouse").mkdir(parents=True, exist_ok=True)
    kafka.ensure_topics(config, kafka.bootstrap(config))
    if kafka.bootstrap(config) not in config.kafka.bootstrap_servers.split(","):
        log.warning("kafka.bootstrap_servers=%s does not name the local broker %s; the bridge "
                    "and jobs will not use it", config.kafka.bootstrap_servers,
                    kafka.bootstrap(config))
    return status(config)


def down(config: Config) -> StackStatus:
    """Stop Kafka, then RabbitMQ (only the processes ``up`` started); data stays."""
    kafka.stop(config)
    rabbitmq.stop(config)
    return status(config)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("up", "down", "status", "jars", "cluster"),
                        help="start, stop or show the stack; jars: fetch and verify the JVM jars, "
                             "build the project's operator jar; cluster: a standalone Flink "
                             "cluster (JobManager and TaskManager) on this machine")
    parser.add_argument("cluster_action", nargs="?", choices=("up", "down", "status"),
                        help="with 'cluster': start, stop or show it")
    parser.add_argument("--update-checksums", action="store_true",
                        help="with 'jars': refetch every group and rewrite jvm/checksums.sha256")
    parser.add_argument("--classpath", action="store_true",
                        help="with 'jars': print only the system classpath a Flink JVM of the "
                             "jobs needs (HADOOP_CLASSPATH: Hadoop's client, the JDBC drivers)")


def run(args: argparse.Namespace, config: Config) -> int:
    # pika logs every connection step at INFO; the readiness probes would drown the output.
    logging.getLogger("pika").setLevel(logging.WARNING)
    started = time.monotonic()
    if args.action == "cluster":
        return _cluster(args.cluster_action or "status", config, started)
    if args.cluster_action is not None:
        print(f"'{args.cluster_action}' after '{args.action}' only applies to "
              "'stacktide local cluster'", file=sys.stderr)
        return 2
    if args.action == "jars":
        if args.update_checksums:
            print(f"wrote {jars.update_checksums(config)}")
        verified = jars.ensure_jars(config)
        if args.classpath:  # for $(...): a Flink cluster's JVMs are started with it
            print(os.pathsep.join(str(p) for p in jars.system_classpath(verified)))
            return 0
        for group, paths in verified.items():
            print(f"{group:<13} {len(paths):>3} jars verified in {jars.jar_dir(config, group)}")
        print(f"{'operators':<13}   1 jar  built from jvm/operators: {operator_jar(config)}")
        return 0
    for flag in ("update_checksums", "classpath"):
        if getattr(args, flag):
            print(f"--{flag.replace('_', '-')} only applies to 'stacktide local jars'", file=sys.stderr)
            return 2
    if args.action == "up":
        result = up(config)
    elif args.action == "down":
        result = down(config)
    else:
        result = status(config)
    print(result.text())
    if args.action != "status":
        print(f"{args.action} took {time.monotonic() - started:.1f} s")
    return 0


def _cluster(action: str, config: Config, started: float) -> int:
    from stacktide.local.flink_cluster import FlinkCluster

    cluster = FlinkCluster(config)
    if action == "up":
        cluster.up()
    elif action == "down":
        cluster.down()
    print(cluster.status())
    if action != "status":
        print(f"cluster {action} took {time.monotonic() - started:.1f} s")
    return 0
