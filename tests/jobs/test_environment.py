"""The Flink options every job run gets from the stacktide configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.environment import JobJars, _settings
from stacktide.config import config_from_mapping
from stacktide.errors import ConfigError


@pytest.fixture(autouse=True)
def _own_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HADOOP_CLASSPATH", "FLINK_LOG_DIR", "LOG4J_PROPERTIES"):
        monkeypatch.delenv(name, raising=False)  # _settings sets them for the JVM to inherit


@pytest.mark.parametrize(("configured", "expected"), [(None, "20000"), (500, "500"), (0, "0")])
def test_python_state_cache_sizes_every_cache(tmp_path: Path, configured: int | None,
                                              expected: str) -> None:
    jobs = {} if configured is None else {"python_state_cache": configured}
    config = config_from_mapping({"local": {"state_dir": str(tmp_path)}, "jobs": jobs},
                                 "<test>", base=tmp_path)
    settings = _settings(config, JobJars((), ()), "job", None)
    assert {k: v for k, v in settings.items() if "cache-size" in k} == {
        "python.state.cache-size": expected,
        "python.map-state.read-cache-size": expected,
        "python.map-state.write-cache-size": expected,
    }


def test_python_state_cache_refuses_a_negative_size(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"jobs\.python_state_cache"):
        config_from_mapping({"local": {"state_dir": str(tmp_path)},
                             "jobs": {"python_state_cache": -1}}, "<test>", base=tmp_path)
