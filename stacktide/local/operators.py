"""The project's own Flink classes (``jvm/operators/src``), compiled into one jar with their
resources (``jvm/operators/resources``: the service files through which Flink finds its
table format).

They are few and small, so they are built from source on first use rather than published:
``javac`` against the Flink jars PyFlink ships, for Java 11 (Flink 2's minimum), into
``<cache_dir>/jars/operators/stacktide-operators-<hash>.jar``, the hash that of the sources,
so a changed source builds a new jar and a running JVM keeps its open one.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

from stacktide.config import REPO_ROOT, Config
from stacktide.errors import ServiceError

log = logging.getLogger(__name__)

SOURCES = REPO_ROOT / "jvm" / "operators" / "src"


def operator_jar(config: Config, sources: Path = SOURCES) -> Path:
    """The jar of *sources* and of the resources beside them (``../resources``, if any),
    built if it is not in the cache yet."""
    files = sorted(sources.rglob("*.java"))
    if not files:
        raise ServiceError(f"no Java sources under {sources}")
    resources = sources.parent / "resources"
    extras = sorted(p for p in resources.rglob("*") if p.is_file()) if resources.is_dir() else []
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(sources).as_posix().encode() + b"\0" + path.read_bytes())
    for path in extras:
        digest.update(b"resource:" + path.relative_to(resources).as_posix().encode() + b"\0"
                      + path.read_bytes())
    name = f"stacktide-operators-{digest.hexdigest()[:12]}.jar"
    target = config.local.cache_dir / "jars" / "operators" / name
    if target.is_file():
        return target
    javac = shutil.which("javac")
    if javac is None:
        raise ServiceError("javac not found: the jobs need a JDK 17 (Debian: openjdk-17-jdk-headless)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        classes = Path(scratch) / "classes"
        done = subprocess.run([javac, "--release", "11", "-nowarn", "-d", str(classes),
                               "-cp", ":".join(str(j) for j in _flink_jars()),
                               *map(str, files)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ServiceError(f"javac failed on {sources}:\n{done.stderr[-3000:]}")
        partial = Path(scratch) / target.name
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as jar:
            for path in sorted(classes.rglob("*.class")):
                jar.write(path, path.relative_to(classes).as_posix())
            for path in extras:
                jar.write(path, path.relative_to(resources).as_posix())
        partial.replace(target)  # whole or not at all: a concurrent build writes the same
    log.info("built %s from %d sources", target, len(files))
    return target


def _flink_jars() -> list[Path]:
    """What the sources compile against: the jars of the installed PyFlink."""
    import pyflink

    root = Path(pyflink.__file__).parent
    jars = [*sorted((root / "lib").glob("flink-dist-*.jar")),
            *sorted((root / "lib").glob("flink-table-api-java-uber-*.jar")),
            *sorted((root / "lib").glob("flink-table-runtime-*.jar")),
            *sorted((root / "opt").glob("flink-python-*.jar"))]
    if len(jars) != 4:
        raise ServiceError(f"expected flink-dist, flink-table-api-java-uber, flink-table-runtime "
                           f"and flink-python jars under {root}, found {jars}")
    return jars
