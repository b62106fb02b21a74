"""``stacktide jobs submit|stop`` before any cluster is reached: the options a submission
carries, and the errors an operator sees for a missing or wrong cluster address."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from jobs.submit import SubmitError, local_path, rest_for, submit_options
from stacktide.cli import main
from stacktide.config import load_config
from stacktide.flink_rest import FlinkRest, FlinkRestError, parse_address


def test_no_cluster_given_names_the_flag_and_the_config_key() -> None:
    config = load_config()
    assert not config.jobs.jobmanager
    with pytest.raises(SubmitError, match=r"host:port \(or jobs.jobmanager in .*stacktide.yaml\)"):
        rest_for(config, None)
    with pytest.raises(SubmitError, match="expected host:port"):
        rest_for(config, "flink-jm")


@pytest.mark.parametrize(("given", "url"), [("jm.example:8081", "http://jm.example:8081"),
                                            ("https://jm.example:443/", "https://jm.example:443")])
def test_addresses(given: str, url: str) -> None:
    assert parse_address(given) == url


def test_submit_options_ship_code_python_and_savepoint(tmp_path: Path) -> None:
    options = submit_options(FlinkRest("http://jm.example:8081"), python_executable="/opt/py",
                             python_archives="venv.zip#venv", from_savepoint="file:/sp/savepoint-1",
                             allow_non_restored_state=False, checkpoint_dir=str(tmp_path))
    assert (options["execution.target"], options["rest.address"], options["rest.port"]) == (
        "remote", "jm.example", "8081")
    shipped = [Path(p) for p in str(options["python.files"]).split(",")]
    assert [p.name for p in shipped] == ["stacktide", "jobs"] and all(p.is_dir() for p in shipped)
    assert options["python.executable"] == "/opt/py"
    assert options["python.client.executable"] is None  # dropped: the client is this process
    assert options["python.archives"] == "venv.zip#venv"
    assert options["execution.state-recovery.path"] == "file:///sp/savepoint-1"
    assert options["execution.state-recovery.ignore-unclaimed-state"] == "false"
    assert options["execution.checkpointing.dir"] == tmp_path.as_uri()


def test_savepoint_locations_as_flink_prints_them() -> None:
    assert local_path("file:/sp/savepoint-1") == Path("/sp/savepoint-1")
    assert local_path("file:///sp/savepoint-1") == Path("/sp/savepoint-1")
    assert local_path("s3://bucket/savepoint-1") is None


def test_an_unreachable_jobmanager_is_a_clear_error() -> None:
    port = free_port()
    with pytest.raises(FlinkRestError, match=f"127.0.0.1:{port} cannot be reached"):
        FlinkRest(f"http://127.0.0.1:{port}").jobs()


def test_flags_of_another_action_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["jobs", "run", "--drain"]) == 2
    assert "--drain does not apply to 'stacktide jobs run'" in capsys.readouterr().err
    assert main(["jobs", "stop", "--from-savepoint", "x"]) == 2
    assert main(["jobs", "submit"]) == 2  # no cluster: a clear error, exit code 2
    assert "no Flink cluster given" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
