"""Table upkeep, the parts that need no JVM: what to compact, which snapshot the Flink sink
still needs, which files are orphans, and the report of a run.

``jobs/upkeep.py`` runs the two steps pyiceberg 0.8 cannot do (rewriting data files and
expiring snapshots) through Iceberg's Java API; what they act on is decided here, from
plain values and pyiceberg's view of the table, so that the rules can be read (and tested)
without starting Flink. docs/upkeep.md explains the rules to operators.
"""

from __future__ import annotations

import contextlib
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

if TYPE_CHECKING:
    from pyiceberg.table import Table
    from pyiceberg.table.metadata import TableMetadata
    from pyiceberg.table.snapshots import Snapshot

# What Iceberg's Flink sink writes into the summary of each snapshot it commits. On restore
# it walks back from the branch head to the newest snapshot of the restored job and reads
# the checkpoint id there; what its checkpoint holds beyond that id it commits again. With
# that snapshot expired the walk ends empty, and a restore from a checkpoint whose commit had
# not completed commits it a second time or, with the parent chain cut, cannot tell.
FLINK_JOB_ID = "flink.job-id"
FLINK_CHECKPOINT_ID = "flink.max-committed-checkpoint-id"
FLINK_OPERATOR_ID = "flink.operator-id"

# Files at least this fraction of the target are left alone by compaction: rewriting them
# costs a full read and write for little gain (Iceberg's own bin-pack default).
SMALL_FRACTION = 0.75

STEPS = ("compact", "expire", "orphans")


# --- compaction ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class DataFileInfo:
    """One live data file of the current snapshot, as compaction plans with it."""

    path: str
    size: int
    partition: str  # "<spec id>/<partition path>": files of different specs never mix
    sequence: int  # data sequence number: the order the files were committed in
    has_deletes: bool


@dataclass(frozen=True, slots=True)
class RewriteGroup:
    """Data files of one partition rewritten together into about one target-sized file."""

    partition: str
    files: tuple[DataFileInfo, ...]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def plan_compaction(files: Iterable[DataFileInfo], target_bytes: int,
                    min_input_files: int) -> list[RewriteGroup]:
    """Groups of small files to rewrite, per partition, each at most *target_bytes*.

    A file is small below 3/4 of the target. A partition is compacted once it has
    *min_input_files* small files; they are packed in commit order (consecutive files hold
    consecutive event times in an append-only table, so the merged file keeps narrow
    min/max statistics), and a group of one file is left as it is. Files with delete files
    attached are skipped: the rewrite would apply the deletes and leave the delete files
    behind, which is the business of an engine that rewrites deletes too.
    """
    limit = target_bytes * SMALL_FRACTION
    partitions: dict[str, list[DataFileInfo]] = defaultdict(list)
    for f in files:
        if f.size < limit and not f.has_deletes:
            partitions[f.partition].append(f)
    groups = []
    for partition in sorted(partitions):
        small = sorted(partitions[partition], key=lambda f: (f.sequence, f.path))
        if len(small) < min_input_files:
            continue
        current: list[DataFileInfo] = []
        for f in small:
            if current and sum(c.size for c in current) + f.size > target_bytes:
                groups.append(current)
                current = []
            current.append(f)
        groups.append(current)
    return [RewriteGroup(g[0].partition, tuple(g)) for g in groups if len(g) > 1]


# --- snapshots -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class FlinkCommit:
    """The newest snapshot of the main branch committed by Iceberg's Flink sink."""

    snapshot_id: int
    timestamp_ms: int
    job_id: str
    checkpoint_id: int
    operator_id: str | None


def ancestry(metadata: TableMetadata) -> list[Snapshot]:
    """The current snapshot and its parents, newest first (a dict, not pyiceberg's linear
    lookup per step: a table committed every few seconds has thousands of snapshots)."""
    by_id = {s.snapshot_id: s for s in metadata.snapshots}
    chain = []
    snapshot = by_id.get(metadata.current_snapshot_id) if metadata.current_snapshot_id else None
    while snapshot is not None:
        chain.append(snapshot)
        parent = snapshot.parent_snapshot_id
        snapshot = by_id.get(parent) if parent is not None else None
    return chain


def last_flink_commit(metadata: TableMetadata) -> FlinkCommit | None:
    """The snapshot a restoring Flink sink finds first on its walk back from the head."""
    for snapshot in ancestry(metadata):
        summary = snapshot.summary
        job = summary.get(FLINK_JOB_ID) if summary is not None else None
        checkpoint = summary.get(FLINK_CHECKPOINT_ID) if summary is not None else None
        if summary is not None and job and checkpoint:
            return FlinkCommit(snapshot.snapshot_id, snapshot.timestamp_ms, str(job),
                               int(checkpoint), summary.get(FLINK_OPERATOR_ID))
    return None


def expiry_cutoff_ms(metadata: TableMetadata, older_than_ms: int) -> int:
    """The ``expireOlderThan`` that keeps the last Flink commit and every snapshot after it.

    Iceberg keeps the ancestors of the branch head back to the first one older than the
    cutoff (and at least ``retainLast``). Taking the oldest timestamp on the way from the
    head down to the Flink commit keeps that whole path, even when a writer with a clock a
    little behind committed in between; so the sink's walk still reaches its snapshot.
    """
    commit = last_flink_commit(metadata)
    if commit is None:
        return older_than_ms
    oldest = older_than_ms
    for snapshot in ancestry(metadata):
        oldest = min(oldest, snapshot.timestamp_ms)
        if snapshot.snapshot_id == commit.snapshot_id:
            break
    return oldest


# --- files ---------------------------------------------------------------------------------

def local_path(location: str) -> Path | None:
    """The local path of a ``file:`` (or scheme-less) location; None on an object store.

    Hadoop writes ``file:/a/b``, pyiceberg ``file:///a/b``: both are the same file. Percent
    signs are kept as they are: both clients create the file with the literal name.
    """
    url = urlparse(location)
    if url.scheme not in ("", "file"):
        return None
    return Path(os.path.normpath(url.path))


def reachable_files(table: Table, snapshot_ids: set[int] | None = None) -> set[Path]:
    """Every local file the table's metadata references: the current metadata file and its
    log, statistics, and for each snapshot (of *snapshot_ids*, default all) its manifest
    list, manifests and their live data and delete files."""
    import json

    metadata = table.metadata
    locations = [table.metadata_location, *(e.metadata_file for e in metadata.metadata_log)]
    with table.io.new_input(table.metadata_location).open() as stream:
        raw = json.loads(stream.read())
    for key in ("statistics", "partition-statistics"):
        locations += [s["statistics-path"] for s in raw.get(key) or [] if "statistics-path" in s]
    manifests: dict[str, Any] = {}
    for snapshot in metadata.snapshots:
        if snapshot_ids is not None and snapshot.snapshot_id not in snapshot_ids:
            continue
        locations.append(snapshot.manifest_list or "")
        for manifest in snapshot.manifests(table.io):
            manifests.setdefault(manifest.manifest_path, manifest)
    for path, manifest in manifests.items():
        locations.append(path)
        locations += [e.data_file.file_path for e in manifest.fetch_manifest_entry(table.io)]
    return {p for p in map(local_path, filter(None, locations)) if p is not None}


@dataclass(frozen=True, slots=True)
class LocalFile:
    path: Path
    size: int
    mtime: float

    @property
    def checksum(self) -> bool:
        """Hadoop's local file system writes ``.<name>.crc`` beside each file it writes."""
        return self.path.name.startswith(".") and self.path.name.endswith(".crc")

    @property
    def owner(self) -> Path:
        """The file a checksum file belongs to."""
        return self.path.with_name(self.path.name[1:-len(".crc")])


def table_folders(table: Table) -> list[Path] | None:
    """The folders Iceberg writes the table's files into (``write.data.path`` and
    ``write.metadata.path`` when set, else ``data`` and ``metadata`` under the location);
    None when any of them is not local. Nothing else under the location is looked at."""
    props, location = table.properties, table.metadata.location.rstrip("/")
    folders = [props.get("write.data.path") or f"{location}/data",
               props.get("write.metadata.path") or f"{location}/metadata"]
    paths = [local_path(f) for f in folders]
    return None if any(p is None for p in paths) else [p for p in paths if p is not None]


def list_files(folders: Iterable[Path]) -> list[LocalFile]:
    """Every file under *folders* with its size and modification time."""
    found = []
    for folder in folders:
        for root, _, names in os.walk(folder):
            for name in names:
                path = Path(root) / name
                try:
                    st = path.stat()
                except FileNotFoundError:  # deleted by a concurrent commit's cleanup
                    continue
                found.append(LocalFile(path, st.st_size, st.st_mtime))
    return sorted(found, key=lambda f: f.path)


def iceberg_files(files: Iterable[LocalFile]) -> list[LocalFile]:
    """*files* without Hadoop's checksum files: what the table itself consists of."""
    return [f for f in files if not f.checksum]


@dataclass(frozen=True, slots=True)
class OrphanScan:
    """Unreferenced files: those old enough to delete and those kept for being young."""

    orphans: tuple[LocalFile, ...]
    young: tuple[LocalFile, ...]


def find_orphans(files: Iterable[LocalFile], reachable: set[Path], *, older_than_s: float,
                 now: float) -> OrphanScan:
    """Files no metadata references, split by age: a file younger than *older_than_s* may
    belong to a commit in progress (a checkpoint's data files and manifests exist before the
    commit that references them). A checksum file goes with the file it belongs to, and is
    an orphan itself only when that file is gone."""
    files = list(files)
    regular = {f.path: f for f in files if not f.checksum}
    checksums = {f.owner: f for f in files if f.checksum}
    orphans: list[LocalFile] = []
    young: list[LocalFile] = []
    for path, f in regular.items():
        if path in reachable:
            continue
        (young if now - f.mtime < older_than_s else orphans).append(f)
    gone = {f.path for f in orphans}
    for owner, crc in checksums.items():
        if owner in gone:
            orphans.append(crc)
        elif owner not in regular:
            (young if now - crc.mtime < older_than_s else orphans).append(crc)
    return OrphanScan(tuple(sorted(orphans, key=lambda f: f.path)),
                      tuple(sorted(young, key=lambda f: f.path)))


def delete_files(files: Iterable[LocalFile], folders: Iterable[Path]) -> None:
    """Delete *files*, then the folders that became empty (never *folders* themselves)."""
    roots = {Path(f) for f in folders}
    parents = set()
    for f in files:
        with contextlib.suppress(FileNotFoundError):
            f.path.unlink()
        parents.add(f.path.parent)
    for parent in sorted(parents, key=lambda p: -len(p.parts)):
        for folder in _up_to(parent, roots):
            try:
                folder.rmdir()
            except OSError:  # not empty (or gone): stop climbing
                break


def _up_to(folder: Path, roots: set[Path]) -> Iterator[Path]:
    while folder not in roots and any(folder.is_relative_to(r) for r in roots):
        yield folder
        folder = folder.parent


# --- the report ----------------------------------------------------------------------------

@dataclass(slots=True)
class TableState:
    """What a table holds at one moment: snapshots, live data files (those a reader scans)
    and the files under its data and metadata folders (None on an object store)."""

    snapshots: int
    data_files: int
    data_bytes: int
    files: int | None = None
    bytes: int | None = None


@dataclass(slots=True)
class CompactionResult:
    partitions: int = 0
    files_rewritten: int = 0
    bytes_rewritten: int = 0
    files_written: int | None = None  # None: a dry run wrote nothing
    bytes_written: int | None = None


@dataclass(slots=True)
class ExpiryResult:
    older_than: str  # ISO-8601 UTC: the cutoff asked for
    cutoff: str  # the cutoff applied (earlier when the last Flink commit is older)
    retain_last: int
    snapshots_expired: int = 0
    flink_commit: FlinkCommit | None = None
    files_deleted: int | None = None  # None on an object store
    bytes_deleted: int | None = None


@dataclass(slots=True)
class OrphanResult:
    older_than: str
    files_deleted: int = 0
    bytes_deleted: int = 0
    young_kept: int = 0
    paths: list[str] = field(default_factory=list)
    skipped: str | None = None  # why the step did not run (an object-store warehouse)


@dataclass(slots=True)
class TableReport:
    table: str
    before: TableState | None = None
    after: TableState | None = None
    compaction: CompactionResult | None = None
    expiry: ExpiryResult | None = None
    orphans: OrphanResult | None = None
    error: str | None = None
    seconds: float = 0.0  # the table's whole upkeep, JVM start-up not included


@dataclass(slots=True)
class Report:
    dry_run: bool
    tables: list[TableReport] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(t.error for t in self.tables)


def table_state(table: Table, files: list[LocalFile] | None) -> TableState:
    """*table*'s snapshots and live data files (from the current snapshot's summary totals,
    which every Iceberg writer maintains) and, when listed, its files on disk."""
    metadata = table.metadata
    current = metadata.current_snapshot()
    summary = current.summary if current is not None else None
    count = int(summary.get("total-data-files") or 0) if summary is not None else 0
    size = int(summary.get("total-files-size") or 0) if summary is not None else 0
    kept = iceberg_files(files) if files is not None else None
    return TableState(len(metadata.snapshots), count, size,
                      None if kept is None else len(kept),
                      None if kept is None else sum(f.size for f in kept))


def human_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def render_text(report: Report) -> str:
    """The report for a person: one block per table, what changed and what was kept."""
    would = "would be " if report.dry_run else ""
    if not report.tables:
        return "no tables to maintain"
    lines = []
    for t in report.tables:
        lines.append(f"{t.table} ({t.seconds:.1f} s)")
        if t.before is not None:
            b, a = t.before, t.after
            lines.append(f"  before: {b.snapshots} snapshots, {b.data_files} data files "
                         f"({human_bytes(b.data_bytes)}), {_opt(b.files)} files on disk "
                         f"({human_bytes(b.bytes)})")
            if a is not None:
                lines.append(f"  after:  {a.snapshots} snapshots, {a.data_files} data files "
                             f"({human_bytes(a.data_bytes)}), {_opt(a.files)} files on disk "
                             f"({human_bytes(a.bytes)})")
        c = t.compaction
        if c is not None:
            written = "" if c.files_written is None else \
                f" into {c.files_written} ({human_bytes(c.bytes_written)})"
            lines.append(f"  compaction: {c.files_rewritten} files ({human_bytes(c.bytes_rewritten)}) "
                         f"in {c.partitions} partitions {would}rewritten{written}")
        e = t.expiry
        if e is not None:
            kept = "no Flink commit" if e.flink_commit is None else (
                f"kept Flink commit {e.flink_commit.snapshot_id} (checkpoint "
                f"{e.flink_commit.checkpoint_id} of job {e.flink_commit.job_id})")
            files = "" if e.files_deleted is None else \
                f", {e.files_deleted} files ({human_bytes(e.bytes_deleted)}) {would}deleted"
            lines.append(f"  expiry: {e.snapshots_expired} snapshots {would}expired (before "
                         f"{e.cutoff}, last {e.retain_last} kept){files}; {kept}")
        o = t.orphans
        if o is not None:
            if o.skipped:
                lines.append(f"  orphans: skipped: {o.skipped}")
            else:
                lines.append(f"  orphans: {o.files_deleted} files ({human_bytes(o.bytes_deleted)}) "
                             f"{would}deleted; {o.young_kept} unreferenced files younger than "
                             f"{o.older_than} kept")
        if t.error:
            lines.append(f"  FAILED: {t.error}")
    return "\n".join(lines)


def _opt(n: int | None) -> str:
    return "?" if n is None else str(n)
