"""``stacktide tables maintain``: small-file compaction, snapshot expiry and orphan cleanup of
the Iceberg tables the jobs commit to on every checkpoint.

pyiceberg 0.8 can neither rewrite data files nor expire snapshots, and a newer one is out of
reach (it needs pyarrow >= 17, which apache-flink's Beam forbids). Both steps therefore run
through Iceberg's Java API in the JVM PyFlink starts anyway: the table is loaded from a Java
``JdbcCatalog`` with the properties Flink's catalog uses, compaction's Flink job (Iceberg's
``RowDataRewriter``) runs on a local MiniCluster in batch mode, and its commit is a
``RewriteFiles`` validated against the snapshot it started from, so a running job's appends
meanwhile neither conflict nor get lost. Orphan cleanup needs no JVM: pyiceberg reads every
reachable file from the metadata, and the folders are listed locally. The rules
(:mod:`stacktide.upkeep`) and how to schedule this are in docs/upkeep.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from stacktide.catalog import java_catalog_properties, load_catalog
from stacktide.config import MIN_ORPHAN_AGE, Config, UpkeepConfig, format_duration, parse_duration
from stacktide.errors import StacktideError
from stacktide.schema import TABLES
from stacktide.upkeep import (
    STEPS,
    CompactionResult,
    DataFileInfo,
    ExpiryResult,
    LocalFile,
    OrphanResult,
    Report,
    RewriteGroup,
    TableReport,
    delete_files,
    expiry_cutoff_ms,
    find_orphans,
    iceberg_files,
    last_flink_commit,
    list_files,
    plan_compaction,
    reachable_files,
    render_text,
    table_folders,
    table_state,
)

log = logging.getLogger(__name__)

JOB_NAME = "stacktide-upkeep"


# --- the command ---------------------------------------------------------------------------

def _duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["maintain"],
                        help="compact small files, expire snapshots, delete orphan files")
    parser.add_argument("--table", action="append", metavar="NAME",
                        help="only these tables (repeat, or comma-separated); default: every "
                             "table of stacktide.schema in the namespace")
    parser.add_argument("--skip", action="append", metavar="STEP",
                        help=f"leave out a step: {', '.join(STEPS)} (repeat or comma-separated)")
    parser.add_argument("--expire-older-than", type=_duration, metavar="DURATION",
                        help="expire snapshots older than this (7d, 12h, 0s); default "
                             "upkeep.expire_older_than")
    parser.add_argument("--retain-last", type=_positive(int), metavar="N",
                        help="keep at least the last N snapshots; default upkeep.retain_last")
    parser.add_argument("--target-file-size-mb", type=_positive(float), metavar="MB",
                        help="size compaction writes; default upkeep.target_file_size_mb")
    parser.add_argument("--orphan-older-than", type=_duration, metavar="DURATION",
                        help="delete unreferenced files older than this (at least "
                             f"{format_duration(MIN_ORPHAN_AGE)}); default upkeep.orphan_older_than")
    parser.add_argument("--dry-run", action="store_true",
                        help="report what would be done, change nothing")
    parser.add_argument("--output", choices=["text", "json"], default="text")


def _names(values: list[str] | str | None) -> list[str]:
    """Repeated and comma-separated values (an environment twin arrives as one string)."""
    if values is None:
        return []
    items = [values] if isinstance(values, str) else values
    return [n.strip() for item in items for n in item.split(",") if n.strip()]


def settings(args: argparse.Namespace, config: Config) -> UpkeepConfig:
    """``upkeep`` of the configuration with the command line's overrides."""
    base = config.upkeep
    chosen = {
        "expire_older_than": args.expire_older_than,
        "retain_last": args.retain_last,
        "target_file_size_mb": args.target_file_size_mb,
        "orphan_older_than": args.orphan_older_than,
    }
    merged = dataclasses.replace(base, **{k: v for k, v in chosen.items() if v is not None})
    if merged.orphan_older_than < MIN_ORPHAN_AGE:
        raise StacktideError(
            f"tables maintain: --orphan-older-than: expected at least "
            f"{format_duration(MIN_ORPHAN_AGE)} (a younger unreferenced file may belong to a "
            f"commit in progress), got {format_duration(merged.orphan_older_than)}")
    return merged


def run(args: argparse.Namespace, config: Config) -> int:
    skip = set(_names(args.skip))
    unknown = sorted(skip - set(STEPS))
    if unknown:
        raise StacktideError(f"tables maintain: --skip: expected steps among {', '.join(STEPS)}, "
                             f"got {', '.join(unknown)}")
    report = maintain(config, settings(args, config), tables=_names(args.table),
                      steps=[s for s in STEPS if s not in skip], dry_run=args.dry_run)
    if args.output == "json":
        print(json.dumps(dataclasses.asdict(report), indent=2))
    else:
        print(render_text(report))
    return 1 if report.failed else 0


# --- one run over the tables ---------------------------------------------------------------

def resolve_tables(config: Config, names: list[str]) -> list[str]:
    """Identifiers of the tables to maintain: *names* (each must exist in the namespace),
    else every table of :data:`stacktide.schema.TABLES` the catalog has."""
    catalog, ns = load_catalog(config.iceberg), config.iceberg.namespace
    have = {ident[-1] for ident in catalog.list_tables(ns)} if _namespace_exists(catalog, ns) else set()
    if not names:
        return [f"{ns}.{name}" for name in TABLES if name in have]
    missing = [n for n in names if n not in have]
    if missing:
        known = ", ".join(sorted(have)) or "none"
        raise StacktideError(f"tables maintain: --table: no table {', '.join(missing)} in "
                             f"namespace {ns} (tables there: {known})")
    return [f"{ns}.{name}" for name in dict.fromkeys(names)]


def _namespace_exists(catalog: Any, namespace: str) -> bool:
    return any(n == (namespace,) for n in catalog.list_namespaces())


@contextmanager
def exclusive(config: Config) -> Iterator[None]:
    """One upkeep at a time on this machine: two compactions of one table would rewrite the
    same files, and the second commit fails after all its work."""
    path = config.local.state_dir / "upkeep.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StacktideError(f"tables maintain: another upkeep holds {path}") from None
        yield


def maintain(config: Config, upkeep: UpkeepConfig, *, tables: list[str] | None = None,
             steps: list[str] | None = None, dry_run: bool = False) -> Report:
    """Run the *steps* (default all: compact, expire, orphans, in that order) on each table.

    Compaction first, so that the files it replaced go with the snapshots expiry removes;
    orphans last, once expiry deleted what it knows about. A failing table is reported and
    the others still run.
    """
    steps = list(STEPS) if steps is None else steps
    report = Report(dry_run=dry_run)
    with exclusive(config):
        idents = resolve_tables(config, tables or [])
        java = JavaTables(config) if {"compact", "expire"} & set(steps) else None
        try:
            for ident in idents:
                report.tables.append(maintain_table(config, upkeep, ident, steps, dry_run, java))
        finally:
            if java is not None:
                java.close()
    return report


def maintain_table(config: Config, upkeep: UpkeepConfig, ident: str, steps: list[str],
                   dry_run: bool, java: JavaTables | None) -> TableReport:
    report = TableReport(ident)
    started = time.monotonic()
    catalog = load_catalog(config.iceberg)
    table = catalog.load_table(ident)
    folders = table_folders(table)
    report.before = table_state(table, list_files(folders) if folders else None)
    try:
        if "compact" in steps and java is not None:
            report.compaction = compact(java, ident, upkeep, dry_run, config.jobs.parallelism)
        if "expire" in steps and java is not None:
            report.expiry = expire(java, config, ident, upkeep, dry_run)
        if "orphans" in steps:
            report.orphans = remove_orphans(catalog.load_table(ident), ident, upkeep, dry_run)
    except StacktideError as exc:
        report.error = str(exc)
        log.error("%s: %s", ident, exc)
    except Exception as exc:  # a Java or I/O failure of one table: report it, go on
        report.error = f"{type(exc).__name__}: {_java_error(exc)[0]}"
        log.exception("%s: upkeep failed", ident)
    if not dry_run:
        table = catalog.load_table(ident)
        report.after = table_state(table, list_files(folders) if folders else None)
    report.seconds = round(time.monotonic() - started, 1)
    return report


# --- Iceberg's Java API --------------------------------------------------------------------

class JavaTables:
    """Iceberg's Java catalog in PyFlink's JVM, and a batch environment for compaction."""

    def __init__(self, config: Config) -> None:
        from pyflink.java_gateway import get_gateway

        from jobs.environment import JobJars, create_batch_env
        from stacktide.local.jars import ensure_jars, pipeline_jars

        jars = ensure_jars(config, groups=("flink", "hadoop", "iceberg-aws"))
        self.env = create_batch_env(config, JobJars(pipeline_jars(config, jars), tuple(jars["hadoop"])),
                                    job_name=JOB_NAME)
        self.jvm = get_gateway().jvm
        props = self.jvm.java.util.HashMap()
        for key, value in java_catalog_properties(config.iceberg).items():
            props.put(key, value)
        self.catalog = self.jvm.org.apache.iceberg.CatalogUtil.buildIcebergCatalog(
            config.iceberg.catalog_name, props, self.jvm.org.apache.hadoop.conf.Configuration())

    def load(self, ident: str) -> Any:
        return self.catalog.loadTable(self.jvm.org.apache.iceberg.catalog.TableIdentifier.parse(ident))

    def metadata(self, table: Any) -> Any:
        """pyiceberg's model of the Java table's current metadata (one call, not one per
        snapshot: a table committed every few seconds has thousands)."""
        from pyiceberg.table.metadata import TableMetadataUtil

        text = self.jvm.org.apache.iceberg.TableMetadataParser.toJson(table.operations().current())
        return TableMetadataUtil.parse_raw(text)

    def close(self) -> None:
        self.catalog.close()


def _java_error(exc: Exception) -> tuple[str, bool]:
    """(message, cleanable) of a Java exception: cleanable when Iceberg says the files a
    failed commit wrote are certainly not referenced (``CleanableFailure``)."""
    from py4j.protocol import Py4JJavaError

    if not isinstance(exc, Py4JJavaError):
        return str(exc), False
    from pyflink.java_gateway import get_gateway
    from pyflink.util.java_utils import is_instance_of

    java = exc.java_exception
    failure = get_gateway().jvm.org.apache.iceberg.exceptions.CleanableFailure
    return str(java.toString()), bool(is_instance_of(java, failure))


def current_data_files(table: Any) -> tuple[Any, list[DataFileInfo], dict[str, Any]]:
    """The current snapshot, its live data files, and each file's Java scan task by path."""
    snapshot = table.currentSnapshot()
    if snapshot is None:
        return None, [], {}
    specs: dict[int, Any] = {}
    files, tasks = [], {}
    scan = table.newScan().useSnapshot(snapshot.snapshotId()).ignoreResiduals().planFiles()
    try:
        it = scan.iterator()
        while it.hasNext():
            task = it.next()
            f = task.file()
            spec_id = f.specId()
            if spec_id not in specs:
                specs[spec_id] = table.specs().get(spec_id)
            path = f.location()
            seq = f.dataSequenceNumber()
            files.append(DataFileInfo(path, int(f.fileSizeInBytes()),
                                      f"{spec_id}/{specs[spec_id].partitionToPath(f.partition())}",
                                      int(seq) if seq is not None else 0,
                                      not task.deletes().isEmpty()))
            tasks[path] = task
    finally:
        scan.close()
    return snapshot, files, tasks


def compact(java: JavaTables, ident: str, upkeep: UpkeepConfig, dry_run: bool,
            parallelism: int) -> CompactionResult:
    """Rewrite the planned groups of small files in one Flink batch job and commit the
    swap as one ``replace`` snapshot."""
    table = java.load(ident)
    snapshot, files, tasks = current_data_files(table)
    groups = plan_compaction(files, upkeep.target_file_size_bytes, upkeep.min_input_files)
    result = CompactionResult(partitions=len({g.partition for g in groups}),
                              files_rewritten=sum(len(g.files) for g in groups),
                              bytes_rewritten=sum(g.size for g in groups))
    if dry_run or not groups:
        if not dry_run:
            result.files_written, result.bytes_written = 0, 0
        return result
    log.info("%s: rewriting %d files in %d groups", ident, result.files_rewritten, len(groups))
    added = _rewrite(java, table, groups, tasks, parallelism)
    result.files_written = len(added)
    result.bytes_written = sum(int(f.fileSizeInBytes()) for f in added)
    update = table.newRewrite().validateFromSnapshot(snapshot.snapshotId())
    update.dataSequenceNumber(snapshot.sequenceNumber())  # what the old rows had, so that
    for group in groups:  # equality deletes committed meanwhile still apply to them
        for f in group.files:
            update.deleteFile(tasks[f.path].file())
    for f in added:
        update.addFile(f)
    update.set("stacktide.upkeep", "compaction")
    try:
        update.commit()
    except Exception as exc:
        message, cleanable = _java_error(exc)
        if cleanable:
            for f in added:
                table.io().deleteFile(f.location())
        raise StacktideError(f"{ident}: compaction commit failed: {message}") from exc
    return result


def _rewrite(java: JavaTables, table: Any, groups: list[RewriteGroup], tasks: dict[str, Any],
             parallelism: int) -> list[Any]:
    jvm = java.jvm
    combined = jvm.java.util.ArrayList()
    for group in groups:
        members = jvm.java.util.ArrayList()
        for f in group.files:
            members.add(tasks[f.path])
        combined.add(jvm.org.apache.iceberg.BaseCombinedScanTask(members))
    stream = java.env._j_stream_execution_environment.fromCollection(combined)
    rewriter = jvm.org.apache.iceberg.flink.source.RowDataRewriter(
        table, False, table.io(), table.encryption())
    try:
        return list(rewriter.rewriteDataForTasks(stream, max(1, min(len(groups), parallelism))))
    except Exception as exc:
        raise StacktideError(f"compaction job failed: {_java_error(exc)[0]}") from exc


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def expire(java: JavaTables, config: Config, ident: str, upkeep: UpkeepConfig,
           dry_run: bool) -> ExpiryResult:
    """Expire snapshots older than the cutoff (Iceberg deletes the files only they held),
    keeping the last ``retain_last`` and the newest Flink commit with every snapshot after
    it."""
    table = java.load(ident)
    metadata = java.metadata(table)
    asked = int((time.time() - upkeep.expire_older_than.total_seconds()) * 1000)
    cutoff = expiry_cutoff_ms(metadata, asked)
    result = ExpiryResult(older_than=_utc(asked), cutoff=_utc(cutoff), retain_last=upkeep.retain_last,
                          flink_commit=last_flink_commit(metadata))
    if metadata.current_snapshot_id is None:
        return result
    update = table.expireSnapshots().expireOlderThan(cutoff).retainLast(upkeep.retain_last)
    py_table = load_catalog(config.iceberg).load_table(ident)
    folders = table_folders(py_table)
    if dry_run:
        gone = {int(s.snapshotId()) for s in update.apply()}
        result.snapshots_expired = len(gone)
        if folders is not None:
            freed = _would_free(py_table, gone, folders)
            result.files_deleted, result.bytes_deleted = len(freed), sum(f.size for f in freed)
        return result
    listed = list_files(folders) if folders is not None else None
    before = {s.snapshot_id for s in metadata.snapshots}
    try:
        update.commit()
    except Exception as exc:
        raise StacktideError(f"{ident}: snapshot expiry failed: {_java_error(exc)[0]}") from exc
    table.refresh()
    result.snapshots_expired = len(before - {s.snapshot_id for s in java.metadata(table).snapshots})
    if listed is not None and folders is not None:
        now = {f.path for f in list_files(folders)}
        freed = [f for f in iceberg_files(listed) if f.path not in now]
        result.files_deleted, result.bytes_deleted = len(freed), sum(f.size for f in freed)
    return result


def _would_free(table: Any, gone: set[int], folders: list[Any]) -> list[LocalFile]:
    """The files expiring the snapshots *gone* would delete: reachable now, not after."""
    keep = {s.snapshot_id for s in table.metadata.snapshots} - gone
    freed = reachable_files(table) - reachable_files(table, keep)
    return [f for f in iceberg_files(list_files(folders)) if f.path in freed]


def remove_orphans(table: Any, ident: str, upkeep: UpkeepConfig, dry_run: bool) -> OrphanResult:
    """Delete the files under the table's folders that no metadata references and that are
    older than ``orphan_older_than``. The folders are listed before the metadata is read, so
    a file a commit references meanwhile is seen as referenced."""
    result = OrphanResult(older_than=format_duration(upkeep.orphan_older_than))
    folders = table_folders(table)
    if folders is None:
        result.skipped = (f"{table.metadata.location} is not a local folder: orphan cleanup "
                          "lists file:// warehouses only (docs/upkeep.md)")
        return result
    listed = list_files(folders)
    table.refresh()
    scan = find_orphans(listed, reachable_files(table),
                        older_than_s=upkeep.orphan_older_than.total_seconds(), now=time.time())
    orphans = iceberg_files(scan.orphans)
    result.files_deleted = len(orphans)
    result.bytes_deleted = sum(f.size for f in orphans)
    result.young_kept = len(iceberg_files(scan.young))
    result.paths = [str(f.path) for f in orphans]
    if not dry_run and scan.orphans:
        delete_files(scan.orphans, folders)
        log.info("%s: deleted %d orphan files", ident, len(orphans))
    return result
