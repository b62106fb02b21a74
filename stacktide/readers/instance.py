"""``stacktide uuid <instance>``: every notification about one instance, in time order.

stacky's ``uuid`` listed an instance's raw events with an error flag; this reads the
``notifications`` archive (all services, all cells, both formats) and marks the errors the
request job correlated (``!``), with the request each event belongs to.
"""

from __future__ import annotations

import argparse
from typing import Any

from stacktide.config import Config
from stacktide.readers.common import add_window, print_json, read, row_filter, when, window


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("instance", help="instance uuid")
    add_window(parser)


def history(config: Config, instance: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    from pyiceberg.expressions import EqualTo

    since, until = window(args)
    rows = read(config, "notifications", row_filter(
        "notifications", since, until, [EqualTo("instance_id", instance)]), args.cell)
    errors = {r["message_id"] for r in read(config, "errors", EqualTo("instance_id", instance))}
    out = [{"at": r["generated"], "cell": r["cell"], "event_type": r["event_type"],
            "priority": r["priority"], "host": r["host"], "service": r["service"],
            "request_id": r["global_request_id"] or r["request_id"],
            "message_id": r["message_id"], "error": r["message_id"] in errors}
           for r in rows]
    return sorted(out, key=lambda r: (r["at"], r["message_id"]))


def run(args: argparse.Namespace, config: Config) -> int:
    rows = history(config, args.instance, args)
    if args.output == "json":
        print_json({"instance_id": args.instance, "events": rows})
        return 0 if rows else 1
    print(f"{'#':>4} {'!':1} {'when (UTC)':<23} {'cell':<8} {'event':<40} {'host':<18} request")
    for n, r in enumerate(rows, 1):
        print(f"{n:>4} {'!' if r['error'] else ' '} {when(r['at']):<23} {r['cell']:<8} "
              f"{r['event_type']:<40} {r['host'] or '-':<18} {r['request_id'] or '-'}")
    print(f"{len(rows)} notifications about {args.instance}")
    return 0 if rows else 1
