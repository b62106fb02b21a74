"""``stacktide request <id>``: one request's timeline, its timed operations and its errors.

stacky's ``request`` listed the raw events of a request id across deployments; this shows
the request job's row (outcome, operations with durations), every notification of the
request from the archive (by ``request_id`` or ``global_request_id``, so neutron's and
cinder's part too) with its offset from the first, and the correlated errors with the root
cause marked.
"""

from __future__ import annotations

import argparse
from typing import Any

from stacktide.config import Config
from stacktide.errors import StacktideError
from stacktide.readers.common import add_window, print_json, read, row_filter, when, window


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("request_id", help="request id (or global request id)")
    add_window(parser)


def timeline(config: Config, request_id: str, args: argparse.Namespace) -> dict[str, Any]:
    from pyiceberg.expressions import EqualTo, Or

    since, until = window(args)
    found = read(config, "requests", EqualTo("request_id", request_id))
    if not found:
        raise StacktideError(f"request: no request {request_id!r} in the requests table")
    row = found[0]
    events = read(config, "notifications", row_filter(
        "notifications", since, until,
        [Or(EqualTo("request_id", request_id), EqualTo("global_request_id", request_id))]),
        args.cell)
    errors = read(config, "errors", EqualTo("request_id", request_id), args.cell)
    first = row["first_at"]
    return {
        "request": row,
        "events": [{"offset_s": (e["generated"] - first).total_seconds(), "at": e["generated"],
                    "cell": e["cell"], "event_type": e["event_type"], "host": e["host"],
                    "service": e["service"], "instance_id": e["instance_id"],
                    "message_id": e["message_id"]}
                   for e in sorted(events, key=lambda e: (e["generated"], e["message_id"]))],
        "errors": sorted(errors, key=lambda e: (e["at"], e["message_id"])),
    }


def run(args: argparse.Namespace, config: Config) -> int:
    found = timeline(config, args.request_id, args)
    if args.output == "json":
        print_json(found)
        return 0
    r = found["request"]
    print(f"request {r['request_id']}  outcome {r['outcome']}  {r['duration_s']:.3f} s  "
          f"{r['event_count']} events  cells {','.join(r['cells'])}  "
          f"services {','.join(r['services'])}")
    print("\noperations")
    for o in r["operations"]:
        took = "-" if o["duration_s"] is None else f"{o['duration_s']:.3f} s"
        print(f"  {o['operation']:<40} {o['outcome']:<10} {took:>12}  {o['instance_id'] or '-'}")
    print("\nevents")
    for e in found["events"]:
        print(f"  +{e['offset_s']:>9.3f} s {when(e['at'])} {e['cell']:<8} {e['event_type']:<40} "
              f"{e['host'] or '-'}")
    if found["errors"]:
        print("\nerrors")
    for e in found["errors"]:
        root = "root cause" if e["message_id"] == e["root_cause_message_id"] else "then"
        print(f"  {root:<10} {when(e['at'])} {e['event_type']}: {e['exception'] or '-'}: "
              f"{e['message'] or '-'} (code {e['code'] or '-'})")
    return 0
