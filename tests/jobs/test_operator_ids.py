"""The operator ids of the jobs do not depend on their parallelism: a savepoint taken at one
parallelism restores at another (docs/cluster.md, "Upgrading through a savepoint").

Flink maps a savepoint's state to operators by operator id. This builds the job graph of
``jobs submit`` (:func:`jobs.command.build_jobs`, :func:`jobs.environment.stream_graph`) at
parallelism 1 and at 2, each in a process of its own as two submissions are, and compares the
ids and the maximum parallelism state is saved under: at 2 the Iceberg writers could not chain
to their committers (parallelism 1), which changed every id Flink derives from the graph's
shape and, chained at 1, the committers' maximum parallelism. Nothing is run, so no stack is needed;
tests/e2e/test_cluster_submit.py restores a real savepoint at another parallelism.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from jobs import instance_state, request_state
from stacktide.config import REPO_ROOT, load_config
from stacktide.local.process import fresh_environment
from stacktide.schema import TABLES


def graph_at(parallelism: int, work: Path) -> tuple[subprocess.Popen[bytes], Path]:
    work.mkdir()
    with (log := work / "stderr.log").open("wb") as err:
        return subprocess.Popen([sys.executable, "-m", "tests.jobs.test_operator_ids",
                                 str(parallelism), str(work / "state")], cwd=REPO_ROOT,
                                env=fresh_environment(), stdout=subprocess.PIPE, stderr=err), log


def result(child: subprocess.Popen[bytes], log: Path) -> dict[str, Any]:
    out, _ = child.communicate(timeout=900)
    assert child.returncode == 0, log.read_text()[-4000:]
    parsed: dict[str, Any] = json.loads(out)
    return parsed


def test_operator_ids_do_not_change_with_the_parallelism(tmp_path: Path) -> None:
    children = [graph_at(p, tmp_path / f"p{p}") for p in (1, 2)]
    one, two = (result(*c) for c in children)
    # At 2 the writers run at 2, their committers at 1 (the committers never chain to them).
    assert {v["parallelism"] for v in one["vertices"]} == {1}
    assert {v["parallelism"] for v in two["vertices"]} == {1, 2}
    ids = [{i for v in g["vertices"] for i in v["operators"]} for g in (one, two)]
    assert ids[0] == ids[1], [v["name"] for v in one["vertices"]
                              if set(v["operators"]) - ids[1]]
    # A restore also refuses state saved under another maximum parallelism than the operator's
    # vertex sets (-1: none set, Flink's default then adapts to the savepoint's).
    most = [{i: v["max_parallelism"] for v in g["vertices"] for i in v["operators"]}
            for g in (one, two)]
    assert most[0] == most[1], {i: (most[0][i], most[1][i]) for i in ids[0]
                                if most[0][i] != most[1][i]}
    # Every table the jobs write has its committer (the sink's state) under a uid of its name.
    committers = {u for u in one["uids"] if u.endswith("-committer")}
    assert committers == {f"iceberg-{t}-committer" for t in TABLES}, committers
    # The SQL operators carry the planner's uids (`<node id>_<kind>`): the Kafka sources too.
    assert sum(u.endswith("_source") for u in one["uids"]) >= 4, one["uids"]
    # The JVM keyed functions run alone in their threads, their outputs' writers in others
    # (jobs.keyed_source.CHAIN_OUTPUTS; Flink drops the setting, stream_graph puts it back).
    names = {v["name"] for v in one["vertices"]}
    assert {instance_state.UID_JVM, request_state.UID_JVM} <= names, sorted(names)


def main(parallelism: int, state_dir: Path) -> None:
    """Print the job graph at *parallelism*: each vertex's operator ids, and every uid."""
    from jobs.command import JOB_NAME, build_jobs
    from jobs.environment import iterate, stream_graph

    config = load_config()
    home = state_dir / "iceberg"  # the catalog too: both children create every table at once
    home.mkdir(parents=True)
    config = dataclasses.replace(
        config, jobs=dataclasses.replace(config.jobs, parallelism=parallelism),
        local=dataclasses.replace(config.local, state_dir=state_dir),
        iceberg=dataclasses.replace(config.iceberg, uri=f"jdbc:sqlite:{home / 'catalog.db'}",
                                    warehouse=(home / "warehouse").as_uri()))
    graph = stream_graph(build_jobs(config, bounded=False, restore=None), JOB_NAME)
    vertices = [{"name": str(v.getName()), "parallelism": int(v.getParallelism()),
                 "max_parallelism": int(v.getMaxParallelism()),
                 "operators": [str(p.getGeneratedOperatorID().toHexString())
                               for p in v.getOperatorIDs()]}
                for v in iterate(graph.getJobGraph().getVertices())]
    uids = sorted(str(n.getTransformationUID()) for n in iterate(graph.getStreamNodes())
                  if n.getTransformationUID())
    json.dump({"vertices": vertices, "uids": uids}, sys.stdout)


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))
