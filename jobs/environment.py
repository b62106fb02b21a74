"""The Flink table environment of the jobs: jars, checkpoints, state, Python workers.

Local runs use PyFlink's embedded MiniCluster. Two things must be right before
the JVM starts, which is why this module owns environment creation:
``HADOOP_CLASSPATH`` (Iceberg's catalog needs Hadoop on the system classpath)
and ``python.executable`` (PyFlink's default, ``python``, is not this venv).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.sqlfile import Ident, Literal
from stacktide.catalog import flink_catalog_options, load_catalog
from stacktide.config import REPO_ROOT, Config
from stacktide.local.jars import JDBC_DRIVER_PACKAGES, system_classpath

if TYPE_CHECKING:
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment, TableEnvironment

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class JobJars:
    pipeline: tuple[Path, ...]  # shipped with the job (connector, Iceberg runtime, JDBC)
    hadoop: tuple[Path, ...]  # on the JVM system classpath


def latest_checkpoint(directory: Path) -> Path | None:
    """The newest completed checkpoint (``chk-N`` with ``_metadata``) under *directory*."""
    done = [m.parent for m in directory.glob("*/chk-*/_metadata")]
    return max(done, key=lambda p: p.stat().st_mtime, default=None)


def restore_point(flink_dir: Path, job_name: str) -> Path | None:
    """Where a run resumes: the newer of the last retained checkpoint and the last savepoint
    taken when a run was stopped (SIGTERM or Ctrl-C). Savepoints of drained runs (stopped at
    the end of event time, every timer fired) are not resumed from: they end a run for good."""
    points = [p for p in (latest_checkpoint(flink_dir / "checkpoints" / job_name),
                          *(m.parent for m in stopped_savepoints(flink_dir, job_name).glob(
                              "savepoint-*/_metadata"))) if p is not None]
    return max(points, key=lambda p: (p / "_metadata").stat().st_mtime, default=None)


def stopped_savepoints(flink_dir: Path, job_name: str) -> Path:
    return flink_dir / "savepoints" / job_name / "stopped"


def drained_savepoints(flink_dir: Path, job_name: str) -> Path:
    return flink_dir / "savepoints" / job_name / "drained"


def _settings(config: Config, jars: JobJars, job_name: str, restore_from: Path | None
              ) -> dict[str, str]:
    """The Flink options of every job run; sets the process environment the JVM inherits."""
    log_dir = config.local.state_dir / "flink" / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    # Hadoop's client and the JDBC drivers go on the system classpath; the drivers load
    # parent-first (stacktide.local.jars.system_classpath says why).
    classpath = system_classpath({"hadoop": list(jars.hadoop), "flink": list(jars.pipeline)})
    os.environ["HADOOP_CLASSPATH"] = os.pathsep.join(str(j) for j in classpath)
    os.environ["FLINK_LOG_DIR"] = str(log_dir)
    os.environ["LOG4J_PROPERTIES"] = str(REPO_ROOT / "conf" / "flink" / "log4j.properties")
    log.info("flink logs in %s", log_dir)
    checkpoints = config.local.state_dir / "flink" / "checkpoints" / job_name
    settings = {
        "pipeline.name": job_name,
        "pipeline.jars": ";".join(j.as_uri() for j in jars.pipeline),
        "classloader.parent-first-patterns.additional": ";".join(JDBC_DRIVER_PACKAGES),
        "parallelism.default": str(config.jobs.parallelism),
        "execution.checkpointing.interval": f"{int(config.jobs.checkpoint_interval_s * 1000)} ms",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        # Chained operators hand each other their records as they are instead of a copy (by
        # default Flink copies every record between chained operators: the payload's bytes
        # several times per notification on the sources' thread). Safe because no operator
        # of the jobs keeps a record it was handed once it returns: Flink's SQL operators
        # copy what they buffer, the JVM keyed functions and their observers build new
        # objects, and the Iceberg writers write each row as it comes. bench_state_job, the
        # instance job: with 2-s checkpoints 1.24 times the rate on a fifth less CPU; with
        # the default 10 s the same overall rate, a steady one 1.13 times (bench/README).
        "pipeline.object-reuse": "true",
        # A checkpoint that fails (declined while a task finishes, late on a busy machine) is
        # skipped, not a reason to restart the job: the next one commits what it would have.
        "execution.checkpointing.tolerable-failed-checkpoints": "10",
        "execution.checkpointing.dir": checkpoints.as_uri(),
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "table.exec.state.ttl": f"{int(config.jobs.dedup_ttl_hours * 3600 * 1000)} ms",
        # Every SQL operator gets a uid from its node in the plan (`<node id>_<kind>`), not the
        # hash Flink derives from the job graph's shape: that hash changes with chaining, hence
        # with the parallelism, and a savepoint could not be restored at another one. The
        # Iceberg sinks' own operators get theirs in stream_graph().
        "table.exec.uid.generation": "ALWAYS",
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        # PyFlink's default (1,000 keys) is below the keys of a cloud's live instances and
        # open requests: each miss is a blocking state read, each eviction a write.
        "python.state.cache-size": str(config.jobs.python_state_cache),
        "python.map-state.read-cache-size": str(config.jobs.python_state_cache),
        "python.map-state.write-cache-size": str(config.jobs.python_state_cache),
    }
    if restore_from is not None:
        settings["execution.state-recovery.path"] = restore_from.as_uri()
        log.info("restoring job=%s from checkpoint=%s", job_name, restore_from)
    return settings


def create_table_env(
    config: Config, jars: JobJars, *, job_name: str, restore_from: Path | None = None,
    batch: bool = False,
) -> TableEnvironment:
    """A table environment with the catalog registered; *batch* for queries over the tables
    (the ready queries of ``sql/``), streaming otherwise."""
    settings = _settings(config, jars, job_name, restore_from)  # before the JVM starts: it
    from pyflink.common import Configuration  # inherits the environment this sets
    from pyflink.table import EnvironmentSettings, TableEnvironment

    conf = Configuration()
    for key, value in settings.items():
        conf.set_string(key, value)
    mode = EnvironmentSettings.new_instance()
    mode = mode.in_batch_mode() if batch else mode.in_streaming_mode()
    env = TableEnvironment.create(mode.with_configuration(conf).build())
    register_catalog(env, config)
    return env


def create_stream_env(
    config: Config, jars: JobJars, *, job_name: str, restore_from: Path | None = None,
    overrides: Mapping[str, str | None] | None = None,
) -> tuple[StreamExecutionEnvironment, StreamTableEnvironment]:
    """A DataStream environment and its table environment, for SQL and Python jobs in one
    Flink job. *overrides* (Flink options) win over the defaults: the benchmark sets the
    Python execution mode and bundle sizes there, a submission the cluster's address; None
    drops a default (``flink run`` sets the Python executables itself). Thread mode runs Python
    inside the JVM (PemJa), which imports from ``PYTHONPATH``, not from the venv that started it."""
    merged = {**_settings(config, jars, job_name, restore_from), **(overrides or {})}
    settings = {k: v for k, v in merged.items() if v is not None}
    if settings.get("python.execution-mode") == "thread":
        site = next(p for p in sys.path if p.endswith("site-packages"))
        os.environ["PYTHONPATH"] = os.pathsep.join([site, str(REPO_ROOT)])
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import EnvironmentSettings, StreamTableEnvironment

    conf = Configuration()
    for key, value in settings.items():
        conf.set_string(key, value)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    t_env = StreamTableEnvironment.create(
        env, EnvironmentSettings.new_instance().in_streaming_mode().with_configuration(conf).build())
    number_plan_nodes_from_one(t_env)
    register_catalog(t_env, config)
    return env, t_env


def number_plan_nodes_from_one(t_env: StreamTableEnvironment) -> None:
    """Restart the planner's node numbering, which the SQL operators' uids carry
    (``table.exec.uid.generation``): the counter is the JVM's, not the environment's, so a
    process that built a job before (``jobs run`` resuming in the tests' process, after other
    runs) would number this one's nodes from there, and its uids would not be those of the
    checkpoint it resumes from. The planner lives behind a class loader of its own
    (flink-table-planner-loader), hence the reflection."""
    from pyflink.java_gateway import get_gateway

    gateway = get_gateway()
    loader = t_env._j_tenv.getPlanner().getClass().getClassLoader()
    context = loader.loadClass("org.apache.flink.table.planner.plan.nodes.exec.ExecNodeContext")
    reset = context.getMethod("resetIdCounter", gateway.new_array(gateway.jvm.Class, 0))
    reset.invoke(None, gateway.new_array(gateway.jvm.Object, 0))


def create_batch_env(config: Config, jars: JobJars, *, job_name: str) -> StreamExecutionEnvironment:
    """A DataStream environment in batch mode, without checkpoints or a table environment: for
    the Flink jobs Iceberg's Java API builds itself (the compaction of ``stacktide tables
    maintain``). Its ``pipeline.jars`` reach the JVM's context class loader too, so the
    Iceberg classes answer through Py4J once this returns."""
    settings = {k: v for k, v in _settings(config, jars, job_name, None).items()
                if not k.startswith("execution.checkpointing")}
    settings["execution.runtime-mode"] = "BATCH"
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment

    conf = Configuration()
    for key, value in settings.items():
        conf.set_string(key, value)
    return StreamExecutionEnvironment.get_execution_environment(conf)


def register_catalog(env: TableEnvironment, config: Config) -> None:
    """``CREATE CATALOG <catalog_name>`` with the JDBC catalog options (the statement holds the
    catalog's password: it is never logged). pyiceberg reaches the catalog first: an unreachable
    database or a refused login is then a clear CatalogError, not a Java stack trace."""
    load_catalog(config.iceberg)
    options = ",\n  ".join(
        f"{Literal(k).render()} = {Literal(v).render()}"
        for k, v in flink_catalog_options(config.iceberg).items()
    )
    name = Ident(config.iceberg.catalog_name).render()
    env.execute_sql(f"CREATE CATALOG IF NOT EXISTS {name} WITH (\n  {options}\n)")


def stream_graph(env: StreamExecutionEnvironment, job_name: str) -> Any:
    """The Java ``StreamGraph`` of *env* as :func:`submit` executes it, with the keyed broadcast
    operators of the Python jobs translated by ``stacktide.flink.CheckpointedTimersTranslator``
    (jvm/operators): PyFlink's own operator leaves the timers registered by the last bundle
    before a checkpoint out of that checkpoint, and a job restored from it loses them. PyFlink
    puts its translator back each time it configures its operators, so this does its steps and
    then puts ours. Also what the tests read the operator ids of a version of the job from."""
    from pyflink.java_gateway import get_gateway
    from pyflink.util.java_utils import get_field_value

    jvm = get_gateway().jvm
    j_env = env._j_stream_execution_environment
    config_util = jvm.org.apache.flink.python.util.PythonConfigUtil
    config_util.configPythonOperator(j_env)
    jvm.org.apache.flink.python.chain.PythonOperatorChainingOptimizer.apply(j_env)
    config_util.setPartitionCustomOperatorNumPartitions(get_field_value(j_env, "transformations"))
    jvm.stacktide.flink.CheckpointedTimersTranslator.register()
    unchained = never_chained(get_field_value(j_env, "transformations"))
    graph = j_env.getStreamGraph(True)
    graph.setJobName(job_name)
    for node in iterate(graph.getStreamNodes()):
        if int(node.getId()) in unchained:
            node.getOperatorFactory().setChainingStrategy(
                jvm.org.apache.flink.streaming.api.operators.ChainingStrategy.NEVER)
    name_iceberg_sinks(graph)
    return graph


def never_chained(transformations: Any) -> set[int]:
    """Ids of the transformations (*transformations* and all they read) that were told never
    to chain (``disableChaining``). Flink's translator of keyed broadcast transformations builds
    their operator without the transformation's chaining strategy, so a keyed function's
    ``disableChaining`` is lost on the way to the stream graph; :func:`stream_graph` puts it
    back on the stream nodes of these ids (a transformation's id is its node's)."""
    from pyflink.java_gateway import get_gateway

    jvm = get_gateway().jvm
    never = jvm.org.apache.flink.streaming.api.operators.ChainingStrategy.NEVER
    broadcast = jvm.java.lang.Class.forName(
        "org.apache.flink.streaming.api.transformations.AbstractBroadcastStateTransformation")
    found: set[int] = set()
    for sink in iterate(transformations):
        for t in iterate(sink.getTransitivePredecessors()):
            if broadcast.isInstance(t) and t.getChainingStrategy().equals(never):
                found.add(int(t.getId()))
    return found


# The operators Iceberg's FlinkSink appends after a table's rows, in order: the writer (data
# files), the committer (its state: the files of checkpoints not committed yet, the last
# committed checkpoint) and a sink that discards what the committer emits, named after the table.
ICEBERG_SINK = ("IcebergStreamWriter", "IcebergFilesCommitter", "IcebergSink ")


def name_iceberg_sinks(graph: Any) -> dict[int, str]:
    """Give the operators of each Iceberg table sink a uid named after the table
    (``iceberg-<table>-writer``, ``-committer``, ``-sink``), each committer at the head of a chain;
    the uids given, by stream node id.

    The Iceberg connector builds its sink from the stream the planner hands it and sets no uid
    (SQL has no way to pass one), so the planner's ``table.exec.uid.generation`` does not reach
    these operators: Flink derives their ids from the graph's shape. The writer chained to the
    committer (parallelism and maximum parallelism 1) only while the job ran at parallelism 1,
    so at any other the committer's id changed. Chained, the committer's state was also saved
    under the writer's maximum parallelism (128), which a restore at another parallelism, where
    the committer runs alone at its own (1), refuses. So the writers always hand their files to
    the committer over the network (round-robin, as Flink connects them at any other
    parallelism): the connector's operator factory ignores a chaining strategy, and an edge
    that does not forward is never chained."""
    from pyflink.java_gateway import get_gateway

    partitioners = get_gateway().jvm.org.apache.flink.streaming.runtime.partitioner
    nodes = {int(n.getId()): n for n in iterate(graph.getStreamNodes())}
    named: dict[int, str] = {}
    for node in nodes.values():
        if str(node.getOperatorName()) != ICEBERG_SINK[0] or node.getTransformationUID():
            continue
        chain = [node]
        for expected in ICEBERG_SINK[1:]:
            after = [nodes[int(e.getTargetId())] for e in iterate(chain[-1].getOutEdges())]
            if len(after) != 1 or not str(after[0].getOperatorName()).startswith(expected):
                raise RuntimeError(f"Iceberg sink after node {node.getId()}: expected "
                                   f"{' -> '.join(ICEBERG_SINK)}, found "
                                   f"{[str(a.getOperatorName()) for a in after]}")
            chain.append(after[0])
        # "IcebergSink catalog.namespace.table", with ": Writer" when Flink expanded the sink
        table = str(chain[-1].getOperatorName()).removeprefix(ICEBERG_SINK[2]).split(":")[0]
        for part, op in zip(("writer", "committer", "sink"), chain, strict=True):
            uid = f"iceberg-{table.rsplit('.', 1)[-1]}-{part}"
            if uid in named.values():
                raise RuntimeError(f"two Iceberg sinks write table {table}: uid {uid} twice")
            op.setTransformationUID(uid)
            named[int(op.getId())] = uid
        for edge in iterate(chain[1].getInEdges()):
            if edge.getPartitioner().getClass().getSimpleName() == "ForwardPartitioner":
                edge.setPartitioner(partitioners.RebalancePartitioner())
    return named


def iterate(collection: Any) -> Any:
    """The elements of a Java collection."""
    it = collection.iterator()
    while it.hasNext():
        yield it.next()


def submit(env: StreamExecutionEnvironment, job_name: str) -> Any:
    """``env.execute_async(job_name)`` of the graph :func:`stream_graph` builds."""
    from pyflink.common.job_client import JobClient

    graph = stream_graph(env, job_name)
    return JobClient(j_job_client=env._j_stream_execution_environment.executeAsync(graph))
