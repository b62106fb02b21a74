"""``stacktide errors``: recent errors, grouped by masked message.

StackTach's error report grouped messages after masking request ids, UUIDs, host addresses
and long numbers; ``sql/kpi_errors.sql`` does the same over the ``errors`` table, and this
runs it over the window. ``--list`` prints the errors themselves, newest first, with their
request and root cause.
"""

from __future__ import annotations

import argparse

from stacktide.config import Config
from stacktide.readers.common import (
    add_window,
    print_json,
    read,
    read_arrow,
    row_filter,
    run_sql,
    when,
    window,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_window(parser)
    parser.add_argument("--list", action="store_true", help="the errors, not their groups")
    parser.add_argument("--limit", type=int, default=50, help="at most this many lines")


def run(args: argparse.Namespace, config: Config) -> int:
    since, until = window(args)
    where = row_filter("errors", since, until)
    if args.list:
        rows = sorted(read(config, "errors", where, args.cell),
                      key=lambda r: (r["at"], r["message_id"]), reverse=True)[: args.limit]
        if args.output == "json":
            print_json(rows)
            return 0
        for r in rows:
            root = "root" if r["root_cause_message_id"] == r["message_id"] else "then"
            print(f"{when(r['at'])} {r['cell'] or '-':<8} {r['event_type']:<38} {root} "
                  f"{r['exception'] or '-'}: {r['message'] or '-'} [{r['request_id'] or '-'}]")
        return 0
    groups = run_sql("kpi_errors", {"errors": read_arrow(config, "errors", where, args.cell)})
    groups = groups[: args.limit]
    if args.output == "json":
        print_json(groups)
        return 0
    print(f"{'n':>5} {'requests':>8} {'last (UTC)':<23} {'exception':<28} masked message")
    for g in groups:
        print(f"{g['n']:>5} {g['requests']:>8} {when(g['last_at']):<23} "
              f"{(g['exception'] or '-')[:28]:<28} {g['masked_message']}")
    return 0
