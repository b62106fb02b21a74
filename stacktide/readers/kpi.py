"""``stacktide kpi``: the KPI queries of ``sql/`` over the tables, in the window.

``sql/kpi_operations.sql``: success ratio and p50/p90/p97/max duration of each operation,
overall and per cell, host, image and hour (``--by``); ``sql/kpi_errors.sql``: errors by
masked message; ``sql/kpi_slow_requests.sql``: requests slower than ``--slow`` seconds.
``--plot`` draws the distribution of request durations per hour (stacky's ``kpi`` was
end-to-end request durations).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from datetime import datetime
from typing import Any

from stacktide.config import Config
from stacktide.readers.common import add_window, print_json, read_arrow, row_filter, run_sql, when, window

DIMENSIONS = ("operation", "cell", "host", "image", "hour")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_window(parser, plot=True)
    parser.add_argument("--by", choices=DIMENSIONS, default="operation",
                        help="operation KPIs per this dimension")
    parser.add_argument("--slow", type=float, default=600.0,
                        help="requests longer than this many seconds are listed")


def kpis(config: Config, args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    since, until = window(args)
    requests = read_arrow(config, "requests", row_filter("requests", since, until), args.cell)
    errors = read_arrow(config, "errors", row_filter("errors", since, until), args.cell)
    instances = read_arrow(config, "instances")
    operations = [r for r in run_sql("kpi_operations", {"requests": requests,
                                                        "instances": instances})
                  if r["dimension"] == args.by and (args.cell is None or r["cell"] in (None, args.cell))]
    return {
        "operations": operations,
        "errors": run_sql("kpi_errors", {"errors": errors}),
        "slow_requests": run_sql("kpi_slow_requests", {"requests": requests},
                                 threshold_s=args.slow),
    }


def num(value: float | None) -> str:
    """A duration column: an operation seen only as an error has no duration."""
    return f"{'-':>9}" if value is None else f"{value:>9.3f}"


def run(args: argparse.Namespace, config: Config) -> int:
    found = kpis(config, args)
    if args.plot:
        from stacktide.readers.plot import hourly

        since, until = window(args)
        per_hour: dict[datetime, list[float]] = defaultdict(list)
        for r in read_arrow(config, "requests", row_filter("requests", since, until),
                            args.cell).select(["first_at", "duration_s"]).to_pylist():
            per_hour[r["first_at"].replace(minute=0, second=0, microsecond=0)].append(
                r["duration_s"])
        hourly(args.plot, per_hour, "request durations (first to last notification) per hour",
               "seconds")
    if args.output == "json":
        print_json(found)
        return 0
    key = args.by
    print(f"operations by {key}")
    column = "" if key == "operation" else key
    print(f"  {'operation':<36} {column:<20} {'n':>5} {'ok %':>6} {'p50 s':>9} {'p90 s':>9} "
          f"{'p97 s':>9} {'max s':>9}")
    for r in found["operations"]:
        label = when(r["hour"]) if key == "hour" else str(r[key] if key != "operation" else "")
        print(f"  {r['operation']:<36} {label[:20]:<20} {r['n']:>5} "
              f"{100 * r['success_ratio']:>6.1f} {num(r['p50_s'])} {num(r['p90_s'])} "
              f"{num(r['p97_s'])} {num(r['max_s'])}")
    print("errors by masked message")
    for g in found["errors"]:
        print(f"  {g['n']:>5}  {g['exception'] or '-'}: {g['masked_message']}")
    print(f"requests slower than {args.slow:g} s: {len(found['slow_requests'])}")
    for r in found["slow_requests"][:20]:
        print(f"  {r['request_id']:<44} {r['duration_s']:>10.1f} s {r['outcome']}")
    return 0
