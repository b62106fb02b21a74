"""``stacktide.local.flink_cluster``: a JobManager and a TaskManager as processes of their own,
on the slot's ports, that fault tests can kill and replace."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import yaml

from stacktide.cli import main
from stacktide.config import Config
from stacktide.errors import ServiceError
from stacktide.local import process
from stacktide.local.flink_cluster import JOBMANAGER_CLASS, TASKMANAGER_CLASS, FlinkCluster
from tests.conftest import FLINK_PORTS

pytestmark = pytest.mark.stack


def test_cluster_runs_two_processes_on_the_slot_ports(flink_cluster: FlinkCluster,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    jm, tm = flink_cluster.jobmanager_pid(), flink_cluster.taskmanager_pid()
    assert jm is not None and tm is not None and jm != tm
    assert JOBMANAGER_CLASS in process.cmdline(jm) and TASKMANAGER_CLASS in process.cmdline(tm)
    assert flink_cluster.rest_url == f"http://127.0.0.1:{FLINK_PORTS['flink_rest_port']}"
    written = yaml.safe_load((flink_cluster.conf_dir / "config.yaml").read_text())
    assert written["rest.port"] == FLINK_PORTS["flink_rest_port"]
    assert written["jobmanager.rpc.port"] == FLINK_PORTS["flink_rpc_port"]
    assert Path(written["python.executable"]).exists()
    overview = flink_cluster.rest.call("GET", "/overview")
    assert overview["slots-total"] == flink_cluster.sizes.slots
    assert len(flink_cluster.rest.taskmanagers()) == 1
    assert flink_cluster.up().taskmanager_pid() == tm  # idempotent: nothing restarted

    assert main(["--config", str(write(flink_cluster.config, flink_cluster.home / "st.yaml")),
                 "local", "cluster", "status"]) == 0
    out = capsys.readouterr().out
    assert f"running  pid={jm}" in out and f"running  pid={tm}" in out


def group_members(group: int) -> list[int]:
    """The live processes of process group *group* (``/proc/<pid>/stat``, field 5)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == group:
            out.append(int(stat.parent.name))
    return out


def test_a_killed_taskmanager_is_replaced(flink_cluster: FlinkCluster) -> None:
    before = set(flink_cluster.rest.taskmanagers())
    tm, jm = flink_cluster.taskmanager_pid(), flink_cluster.jobmanager_pid()
    assert tm is not None and jm is not None
    group = os.getpgid(tm)  # the TaskManager's and its Python workers', nothing else's
    assert tm in group_members(group) and group not in (os.getpgid(jm), os.getpgrp())
    killed = flink_cluster.kill_taskmanager()
    assert killed == tm and not process.alive(killed) and flink_cluster.taskmanager_pid() is None
    assert process.wait_for(lambda: not group_members(group), 10.0), group_members(group)
    replacement = flink_cluster.start_taskmanager()
    assert replacement != killed and process.alive(replacement)
    assert set(flink_cluster.rest.taskmanagers()) - before  # registered under a new id
    assert flink_cluster.jobmanager_pid() is not None


def test_a_second_cluster_on_taken_ports_is_refused(flink_cluster: FlinkCluster,
                                                    tmp_path: Path) -> None:
    config = flink_cluster.config
    other = FlinkCluster(dataclasses.replace(
        config, local=dataclasses.replace(config.local, state_dir=tmp_path)))
    with pytest.raises(ServiceError, match=f"REST port 127.0.0.1:{config.local.flink_rest_port}"):
        other.up()


def write(config: Config, path: Path) -> Path:
    path.write_text(yaml.safe_dump({"local": {
        "state_dir": str(config.local.state_dir), "flink_rest_port": config.local.flink_rest_port,
        "flink_rpc_port": config.local.flink_rpc_port}}))
    return path
