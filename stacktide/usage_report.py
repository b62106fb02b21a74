"""``stacktide usage``: the exact usage of a tenant or an instance over a range of periods.

The keyed instance job appends a row each time a key's row changes, with a higher
``revision`` (``stacktide.schema.with_revision``); the current row of a key is the one with
the highest revision. :func:`current` is that rule for pyiceberg + pyarrow readers, the twin
of ``sql/current_*.sql`` for Flink SQL. Seconds are printed from the exact integer
microseconds, never from the float column.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from stacktide.config import Config
from stacktide.errors import StacktideError
from stacktide.schema import TABLES

if TYPE_CHECKING:
    import pyarrow as pa

COLUMNS = ("cell", "instance_id", "tenant_id", "period_start", "period_end", "flavor_id", "vcpus",
           "memory_mb", "disk_gb", "microseconds", "running_microseconds", "revision")


def current(rows: pa.Table, keys: tuple[str, ...]) -> pa.Table:
    """The row with the highest ``revision`` of each key (a key without revisions: any one)."""
    import pyarrow.compute as pc

    others = [c for c in rows.column_names if c not in keys]
    ordered = rows.sort_by([("revision", "ascending")])
    keep_nulls = pc.ScalarAggregateOptions(skip_nulls=False)  # a null of the latest row wins
    last = ordered.group_by(list(keys), use_threads=False).aggregate(
        [(c, "last", keep_nulls) for c in others])
    names = {f"{c}_last": c for c in others}
    return last.rename_columns([names.get(n, n) for n in last.column_names]).select(
        rows.column_names)


def read_current(config: Config, name: str, row_filter: Any = None) -> pa.Table:
    """The current rows of table *name* (``instances``, ``instance_usage``, ``usage_audit``)."""
    from stacktide.catalog import load_catalog

    table = load_catalog(config.iceberg).load_table(f"{config.iceberg.namespace}.{name}")
    scan = table.scan() if row_filter is None else table.scan(row_filter=row_filter)
    return current(scan.to_arrow(), TABLES[name].identifier)


def seconds(us: int) -> str:
    """Exact decimal seconds of integer microseconds: 3600000001 -> '3600.000001'."""
    sign = "-" if us < 0 else ""
    return f"{sign}{abs(us) // 1_000_000}.{abs(us) % 1_000_000:06d}"


def parse_time(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise StacktideError(f"usage: {text!r} is not an ISO-8601 date or time") from exc
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC)


def usage_rows(config: Config, *, tenant: str | None = None, instance: str | None = None,
               start: datetime | None = None, end: datetime | None = None) -> list[dict[str, Any]]:
    """Current ``instance_usage`` rows of *tenant* or *instance* whose period starts in
    [*start*, *end*), with some usage, ordered by instance, period and flavor."""
    from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual, LessThan

    terms: list[Any] = [EqualTo("tenant_id", tenant) if tenant else EqualTo("instance_id", instance)]
    if start is not None:
        terms.append(GreaterThanOrEqual("period_start", start.isoformat()))
    if end is not None:
        terms.append(LessThan("period_start", end.isoformat()))
    where = terms[0] if len(terms) == 1 else And(*terms)
    rows = read_current(config, "instance_usage", where).select(list(COLUMNS)).to_pylist()
    rows = [r for r in rows if r["microseconds"] or r["running_microseconds"]]
    return sorted(rows, key=lambda r: (r["instance_id"], r["period_start"], r["flavor_id"]))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--tenant", help="project (tenant) id")
    who.add_argument("--instance", help="instance uuid")
    parser.add_argument("--from", dest="start", default=None,
                        help="first period start, UTC ISO-8601 (inclusive)")
    parser.add_argument("--to", dest="end", default=None,
                        help="last period start, UTC ISO-8601 (exclusive)")
    parser.add_argument("--output", choices=["text", "json"], default="text")


def run(args: argparse.Namespace, config: Config) -> int:
    start = parse_time(args.start) if args.start else None
    end = parse_time(args.end) if args.end else None
    rows = usage_rows(config, tenant=args.tenant, instance=args.instance, start=start, end=end)
    total = sum(r["microseconds"] for r in rows)
    running = sum(r["running_microseconds"] for r in rows)
    vcpu = sum(r["microseconds"] * (r["vcpus"] or 0) for r in rows)
    if args.output == "json":
        out = [{**r, "period_start": r["period_start"].isoformat(),
                "period_end": r["period_end"].isoformat() if r["period_end"] else None,
                "seconds": seconds(r["microseconds"]),
                "running_seconds": seconds(r["running_microseconds"])} for r in rows]
        print(json.dumps({"rows": out, "total": {"seconds": seconds(total),
                                                 "running_seconds": seconds(running),
                                                 "vcpu_seconds": seconds(vcpu)}}, indent=1))
        return 0
    print(f"{'instance_id':<36} {'period_start (UTC)':<20} {'flavor':<8} {'vcpus':>5} "
          f"{'seconds':>15} {'running':>15} {'rev':>3}")
    for r in rows:
        print(f"{r['instance_id']:<36} {r['period_start']:%Y-%m-%d %H:%M:%S} {r['flavor_id']:<8} "
              f"{r['vcpus'] or '-':>5} {seconds(r['microseconds']):>15} "
              f"{seconds(r['running_microseconds']):>15} {r['revision']:>3}")
    print(f"{len(rows)} rows; total {seconds(total)} s existing, {seconds(running)} s running, "
          f"{seconds(vcpu)} vCPU-seconds")
    return 0
