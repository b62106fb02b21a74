"""``stacktide.local.operators``: the project's Flink classes built from source, once."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from stacktide.config import Config, config_from_mapping, load_config
from stacktide.errors import ServiceError
from stacktide.local import jars
from stacktide.local.operators import SOURCES, operator_jar


def config(tmp_path: Path) -> Config:
    return config_from_mapping({"local": {"cache_dir": str(tmp_path / "cache")}}, "<test>",
                               base=tmp_path)


def test_the_jar_holds_every_class_and_is_built_once(tmp_path: Path) -> None:
    jar = operator_jar(config(tmp_path))
    names = set(zipfile.ZipFile(jar).namelist())
    for source in SOURCES.rglob("*.java"):
        assert source.relative_to(SOURCES).with_suffix(".class").as_posix() in names
    stamp = jar.stat().st_mtime_ns
    assert operator_jar(config(tmp_path)) == jar and jar.stat().st_mtime_ns == stamp


def test_the_benchmarks_jvm_probe_compiles(tmp_path: Path) -> None:
    """bench/jvm is built the same way, by bench_state_job.py --jvm only: kept compiling here."""
    sources = SOURCES.parents[2] / "bench" / "jvm" / "src"
    names = set(zipfile.ZipFile(operator_jar(config(tmp_path), sources)).namelist())
    assert "stacktide/bench/KeyedStateProbe.class" in names


def test_a_changed_source_builds_a_new_jar(tmp_path: Path) -> None:
    sources = tmp_path / "src" / "demo"
    sources.mkdir(parents=True)
    (sources / "A.java").write_text("package demo; public class A {}\n")
    first = operator_jar(config(tmp_path), tmp_path / "src")
    (sources / "A.java").write_text("package demo; public class A { int x; }\n")
    second = operator_jar(config(tmp_path), tmp_path / "src")
    assert first != second and first.is_file() and second.is_file()


def test_a_source_that_does_not_compile_names_the_error(tmp_path: Path) -> None:
    sources = tmp_path / "src"
    sources.mkdir()
    (sources / "B.java").write_text("public class B { int x = ; }\n")
    with pytest.raises(ServiceError, match=r"(?s)javac failed on .*B\.java:1: error"):
        operator_jar(config(tmp_path), sources)
    assert not list((tmp_path / "cache").rglob("*.jar"))


def test_local_jars_builds_the_operator_jar_and_prints_the_classpath_of_a_flink_jvm() -> None:
    """``stacktide local jars``, what docker/Dockerfile runs: the pinned jars verified and the
    operator jar built, so that the image needs no Maven nor javac; ``--classpath``, what
    docker/entrypoint.sh gives the Flink cluster's JVMs: the jars the jobs' local runs put on
    HADOOP_CLASSPATH (Hadoop's client, the JDBC drivers)."""
    config, command = load_config(), [str(Path(sys.executable).parent / "stacktide"), "local", "jars"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"built from jvm/operators: {operator_jar(config)}" in done.stdout
    done = subprocess.run([*command, "--classpath"], capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = [Path(p) for p in done.stdout.strip().split(os.pathsep)]
    verified = jars.verify_jars(config)
    assert printed == jars.system_classpath(verified)
    assert printed[:len(verified["hadoop"])] == verified["hadoop"]
    assert sorted(p.name.split("-")[0] for p in printed[len(verified["hadoop"]):]) == ["postgresql", "sqlite"]
