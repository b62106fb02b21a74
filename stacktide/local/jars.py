"""The one place that fetches JVM jars: Maven resolves them, ``jvm/checksums.sha256`` pins them.

Each group (``jvm/<group>/pom.xml``) is copied by ``mvn dependency:copy-dependencies``
into ``<cache_dir>/jars/<group>``, and every jar is checked against the committed
checksum file, so a changed artifact in a repository, a partial download or a jar
someone dropped into the cache stops start-up instead of running silently.
A fetch lands in a scratch folder and replaces the group only once it verifies:
a bad checksum file never destroys a good cache, and a running JVM keeps its open jars.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from stacktide.config import REPO_ROOT, Config
from stacktide.errors import ServiceError

log = logging.getLogger(__name__)

GROUPS = ("kafka-broker", "flink", "hadoop", "iceberg-aws")
CHECKSUMS = REPO_ROOT / "jvm" / "checksums.sha256"
# The JDBC drivers of the Iceberg catalog, among the jars of the flink group, and their
# packages, which every Flink JVM loads parent-first (the jobs' settings; for the Flink cluster
# of docker/compose.yaml, docker/flink/config.yaml).
JDBC_DRIVER_JARS = ("sqlite-jdbc-", "postgresql-")
JDBC_DRIVER_PACKAGES = ("org.sqlite.", "org.postgresql.")


def jar_dir(config: Config, group: str) -> Path:
    """Where the jars of *group* live in the cache."""
    if group not in GROUPS:
        raise ServiceError(f"unknown jar group {group!r}; known: {', '.join(GROUPS)}")
    return config.local.cache_dir / "jars" / group


def ensure_jars(
    config: Config, groups: Iterable[str] = GROUPS, checksums: Path = CHECKSUMS
) -> dict[str, list[Path]]:
    """Group -> sorted jar paths, each verified; fetches a group only when it does not verify."""
    expected = read_checksums(checksums)
    result: dict[str, list[Path]] = {}
    with _locked(config):
        for group in groups:
            target = jar_dir(config, group)
            try:
                result[group] = _verify(target, group, expected, checksums)
                continue
            except ServiceError as exc:
                log.info("jar group %s needs fetching: %s", group, exc)
            scratch = _fetch(group, target)
            try:
                _verify(scratch, group, expected, checksums)
                _replace(scratch, target)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            result[group] = _verify(target, group, expected, checksums)
    return result


def system_classpath(jars: dict[str, list[Path]]) -> list[Path]:
    """What a Flink JVM needs on its system classpath (``HADOOP_CLASSPATH``), of the groups
    :func:`ensure_jars` returns: Hadoop's client, because Flink's ``HadoopUtils`` lives in
    flink-dist and cannot see user-classloader jars, and the JDBC drivers, because
    ``DriverManager`` refuses a driver whose class came from another classloader than its
    caller's, and every job (and the client) has a classloader of its own: with several
    Iceberg sinks starting at once, a driver registered by one loader made the others fail
    "No suitable driver"; they load parent-first (:data:`JDBC_DRIVER_PACKAGES`)."""
    drivers = [j for j in jars.get("flink", []) if j.name.startswith(JDBC_DRIVER_JARS)]
    return [*jars.get("hadoop", []), *drivers]


def pipeline_jars(config: Config, jars: dict[str, list[Path]]) -> tuple[Path, ...]:
    """The jars a Flink job of *config* ships (``pipeline.jars``), of the groups
    :func:`ensure_jars` returns: the flink group, and with an ``s3://`` warehouse the
    iceberg-aws group (Iceberg's ``S3FileIO``, which the catalog loads by class name from the
    job's class loader). A file-system warehouse leaves its 60 MB out of every job."""
    extra = jars["iceberg-aws"] if config.iceberg.object_store else []
    return (*jars["flink"], *extra)


def verify_jars(
    config: Config, groups: Iterable[str] = GROUPS, checksums: Path = CHECKSUMS
) -> dict[str, list[Path]]:
    """Like :func:`ensure_jars` but never fetches: a missing or changed jar is an error."""
    expected = read_checksums(checksums)
    with _locked(config):
        return {g: _verify(jar_dir(config, g), g, expected, checksums) for g in groups}


def update_checksums(config: Config, checksums: Path = CHECKSUMS) -> Path:
    """Fetch every group afresh and write *checksums* from what Maven delivered."""
    lines = []
    with _locked(config):
        for group in GROUPS:
            target = jar_dir(config, group)
            scratch = _fetch(group, target)
            _replace(scratch, target)
            lines += [f"{sha256(p)}  {group}/{p.name}" for p in _jars(target)]
    checksums.write_text("\n".join(lines) + "\n", encoding="utf-8")
    log.info("wrote %d checksums to %s", len(lines), checksums)
    return checksums


def read_checksums(path: Path) -> dict[str, str]:
    """``group/name.jar`` -> sha256 hex, from a file in ``sha256sum`` format."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ServiceError(f"cannot read jar checksums {path}: {exc.strerror}") from exc
    result = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name or "/" not in name:
            raise ServiceError(f"{path}:{number}: expected '<sha256>  <group>/<jar>', got {line!r}")
        result[name.strip()] = digest.lower()
    return result


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _jars(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.jar")) if folder.is_dir() else []


def _verify(folder: Path, group: str, expected: dict[str, str], source: Path) -> list[Path]:
    """The jars of *folder*, each matching *expected*; otherwise a ServiceError naming it."""
    want = {k.partition("/")[2]: v for k, v in expected.items() if k.startswith(group + "/")}
    if not want:
        raise ServiceError(f"{source} lists no jars of group {group}; run "
                           "'stacktide local jars --update-checksums'")
    jars = _jars(folder)
    have = {p.name: p for p in jars}
    missing = sorted(set(want) - set(have))
    if missing:
        raise ServiceError(f"{folder}: missing {len(missing)} jar(s) listed in {source}: "
                           f"{', '.join(missing[:5])}")
    unexpected = sorted(set(have) - set(want))
    if unexpected:
        raise ServiceError(f"{folder}: unexpected jar(s) not listed in {source}: "
                           f"{', '.join(unexpected[:5])}")
    for name, path in have.items():
        actual = sha256(path)
        if actual != want[name]:
            raise ServiceError(f"checksum mismatch for {group}/{name}: {source} expects "
                               f"{want[name]}, the file {path} has {actual}")
    return jars


def _fetch(group: str, target: Path) -> Path:
    """Run Maven for *group* into a fresh scratch folder next to *target*; return the folder."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServiceError("Maven (mvn) is not on PATH; install Maven: apt-get install maven")
    pom = REPO_ROOT / "jvm" / group / "pom.xml"
    scratch = target.parent / f".{group}.fetch"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    command = [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
               f"-DoutputDirectory={scratch}", "-DincludeScope=runtime"]
    log.info("fetching jar group %s with Maven into %s", group, target)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        shutil.rmtree(scratch, ignore_errors=True)
        output = (done.stdout + done.stderr).strip().splitlines()[-20:]
        raise ServiceError(f"Maven failed for {pom} (exit {done.returncode}):\n"
                           + "\n".join(output))
    return scratch


def _replace(scratch: Path, target: Path) -> None:
    """Swap *scratch* in as *target*; the old folder is removed only after the swap."""
    old = target.parent / f".{target.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    scratch.rename(target)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def _locked(config: Config) -> Iterator[None]:
    """Serialise fetches: two commands filling one cache at once would mix their files."""
    root = config.local.cache_dir / "jars"
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
