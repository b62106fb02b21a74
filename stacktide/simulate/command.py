"""``stacktide simulate``: seeded nova traffic to a capture file or live, plus its ground truth.

The capture (``--output``, CONTRACT.md §2) replays with ``stacktide replay``; ``--publish``
sends the messages straight to the configured cells' RabbitMQ in delivery order. The truth
file (``--truth``) holds each instance's existence and running intervals per flavor, its
launched_at/deleted_at, its exact usage per period and flavor, its exists (and which were
corrupted on purpose, with the field an auditor must report). The same arguments always
produce the same bytes.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

from stacktide.config import Config
from stacktide.errors import StacktideError
from stacktide.simulate.cloud import PERIODS, Params
from stacktide.simulate.delivery import Delivery
from stacktide.simulate.nova import FORMATS
from stacktide.simulate.traffic import generate

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--seed", type=int, default=0, help="the same seed gives the same traffic")
    add("--instances", type=int, default=200, help="instances to simulate")
    add("--hours", type=int, default=72, help="length of the simulated span")
    add("--start", default="2024-01-01T00:00:00Z", help="UTC start, on a period boundary")
    add("--cells", default="", help="comma-separated cell names (default: the configured cells)")
    add("--tenants", type=int, default=12, help="tenants owning the instances")
    add("--period", choices=sorted(PERIODS), default="",
        help="nova's audit period (default: usage.period of the configuration)")
    add("--no-audit", action="store_true", help="no periodic compute.instance.exists")
    add("--format", choices=FORMATS, default="legacy", help="nova notification_format")
    add("--envelope", choices=["2.0", "1.0"], default="2.0", help="oslo message envelope")
    add("--reorder-window", type=float, default=0.0, help="seconds within which messages swap")
    add("--delay-fraction", type=float, default=0.0, help="share of messages delivered late")
    add("--delay-hours", default="1,6", help="late by a uniform delay in LOW,HIGH hours")
    add("--duplicate-fraction", type=float, default=0.0, help="share delivered twice")
    add("--corrupt-exists", type=int, default=0, help="periodic exists to corrupt on purpose")
    add("--failures", type=int, default=0,
        help="failing requests of each kind (NoValidHost, compute, cinder, neutron) to add")
    add("--output", type=Path, default=None, help="capture file (.jsonl) to write")
    add("--truth", type=Path, default=None, help="ground-truth JSON file to write")
    add("--publish", action="store_true", help="publish to the configured cells' RabbitMQ")
    add("--speed", type=float, default=0.0, help="messages per second when publishing; 0 = max")


def params_from(args: argparse.Namespace, config: Config) -> tuple[Params, Delivery]:
    cells = tuple(c for c in args.cells.split(",") if c) or tuple(c.name for c in config.cells)
    try:
        start = datetime.fromisoformat(args.start.replace("Z", "+00:00"))
        low, high = (float(x) for x in args.delay_hours.split(","))
    except ValueError as exc:
        raise StacktideError(f"simulate: {exc}") from None
    start_us = round((start.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()
                     * 1_000_000)
    period = args.period or config.usage.period
    if start_us % PERIODS[period] or args.instances < 0 or args.hours <= 0 or not cells:
        raise StacktideError("simulate: --start must be on a period boundary, --instances >= 0, "
                             "--hours > 0 and at least one cell")
    params = Params(seed=args.seed, instances=args.instances, start=start_us, hours=args.hours,
                    cells=cells, tenants=max(1, args.tenants), period=period,
                    audit=not args.no_audit)
    try:
        delivery = Delivery(args.seed, args.reorder_window, args.delay_fraction, (low, high),
                            args.duplicate_fraction)
    except ValueError as exc:
        raise StacktideError(f"simulate: {exc}") from None
    return params, delivery


def run(args: argparse.Namespace, config: Config) -> int:
    if not (args.output or args.truth or args.publish):
        raise StacktideError("simulate: say where to: --output, --truth and/or --publish")
    params, delivery = params_from(args, config)
    started = time.monotonic()
    traffic = generate(params, args.format, delivery, args.corrupt_exists,
                       max(0, args.failures))
    captured = [r.captured(args.envelope) for _, r in traffic.messages]
    if args.output:
        with args.output.open("w", encoding="utf-8") as f:
            f.writelines(m.to_line() + "\n" for m in captured)
    if args.truth:
        args.truth.write_text(json.dumps(traffic.truth, indent=1) + "\n", encoding="utf-8")
    published = 0
    if args.publish:
        from connectors.replay import publish

        known = {c.name for c in config.cells}
        missing = sorted({m.cell for m in captured} - known)
        if missing:
            raise StacktideError(f"simulate: cells {', '.join(missing)} are not configured")
        for cell in sorted({m.cell for m in captured}):
            published += publish(config, (m for m in captured if m.cell == cell), cell, args.speed)
    print(f"instances={params.instances} messages={len(captured)} published={published} "
          f"seconds={time.monotonic() - started:.2f}")
    return 0
