"""``stacktide timings``: N, min, max, average and p97 of each operation's duration.

StackTach paired ``.start``/``.end`` into timings and its ``summary`` printed N, min, max and
average per operation; the request job pairs them the same way (per instance; a repeated
start restarts) and stores them in ``requests.operations``. Only ended operations count; the
window applies to when an operation started.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from datetime import datetime
from typing import Any

from stacktide.config import Config
from stacktide.readers.common import add_window, parse_time, percentile, print_json, read, row_filter, window


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("operation", nargs="?", default=None,
                        help="one operation (e.g. compute.instance.create), default all")
    add_window(parser, plot=True)


def durations(config: Config, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every ended operation in the window: operation, cell, host, start, duration_s."""
    since, until = window(args)
    # a request that started a little before the window may hold operations inside it
    rows = read(config, "requests", row_filter("requests", None, until))
    out = []
    for r in rows:
        for o in r["operations"]:
            if o["duration_s"] is None or o["start"] is None:
                continue
            start = parse_time(o["start"], "start")
            assert start is not None
            if (args.operation and o["operation"] != args.operation) or \
                    (args.cell and o.get("cell") != args.cell) or \
                    (since and start < since) or (until and start >= until):
                continue
            out.append({**o, "start": start, "request_id": r["request_id"]})
    return out


def summary(ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by: dict[str, list[float]] = defaultdict(list)
    for o in ops:
        by[o["operation"]].append(o["duration_s"])
    return [{"operation": name, "n": len(v), "min_s": min(v), "max_s": max(v),
             "avg_s": sum(v) / len(v), "p97_s": percentile(v, 0.97)}
            for name, v in sorted(by.items())]


def run(args: argparse.Namespace, config: Config) -> int:
    ops = durations(config, args)
    rows = summary(ops)
    if args.plot:
        from stacktide.readers.plot import hourly

        per_hour: dict[datetime, list[float]] = defaultdict(list)
        for o in ops:
            per_hour[o["start"].replace(minute=0, second=0, microsecond=0)].append(o["duration_s"])
        hourly(args.plot, per_hour, f"{args.operation or 'all operations'}: duration per hour",
               "seconds")
    if args.output == "json":
        print_json(rows)
        return 0
    print(f"{'operation':<42} {'N':>6} {'min s':>10} {'max s':>10} {'avg s':>10} {'p97 s':>10}")
    for r in rows:
        print(f"{r['operation']:<42} {r['n']:>6} {r['min_s']:>10.3f} {r['max_s']:>10.3f} "
              f"{r['avg_s']:>10.3f} {r['p97_s']:>10.3f}")
    return 0
