"""What the keyed instance job's Python function costs by itself, without Flink.

Drives :class:`jobs.instance_state.InstanceFunction` over simulated nova traffic (the traffic
of ``bench_state_job.py``) through a stand-in for what PyFlink gives it: keyed state with a
cache that pickles each changed key once per bundle of 1,000 elements (as PyFlink's state
cache does), event-time timers fired in order as a watermark (newest time - 60 s) advances
every 200 elements, and the end of input. Set against ``bench_state_job.py``'s Python CPU per
notification, the difference is what PyFlink's runtime adds around the function (Beam coders,
gRPC, state requests, timer and side-output transport, the key-by map).

Prints notifications/s and µs per notification, median of ``--repeat`` runs; ``--profile``
prints the functions that take the time. Asserts nothing.

    .venv/bin/python bench/bench_state_function.py [--instances 600] [--hours 24] [--repeat 3]
"""

from __future__ import annotations

import argparse
import cProfile
import heapq
import json
import pickle
import pstats
import statistics
import time
from datetime import UTC, datetime
from typing import Any

from bench_state_job import traffic  # bench/ is on the path of a script run from it

from jobs.instance_state import InstanceFunction, Timing
from jobs.keyed_source import MAX_WATERMARK
from jobs.usage import PERIODS

BUNDLE, WATERMARK_EVERY, OUT_OF_ORDER_MS = 1000, 200, 60_000


class Stand:
    """Keyed state, timers and watermark for one function, as PyFlink drives it."""

    def __init__(self, function: InstanceFunction, newest_us: int) -> None:
        self.function, self.newest_us = function, newest_us
        self.stored: dict[str, bytes] = {}
        self.cache: dict[str, Any] = {}
        self.dirty: set[str] = set()
        self.timers: list[tuple[int, str]] = []
        self.key, self.watermark, self.outputs, self.elements = "", -(2**63), 0, 0
        self.registered = self.fired = 0
        function.open(self)

    # the runtime context, the state and the contexts the function sees
    def get_state(self, _descriptor: Any) -> Stand:
        return self

    def get_metrics_group(self) -> Stand:
        return self

    def counter(self, _name: str) -> Stand:
        return self

    def inc(self, _n: int = 1) -> None:
        pass

    def value(self) -> Any:
        if self.key not in self.cache and self.key in self.stored:
            self.cache[self.key] = pickle.loads(self.stored[self.key])  # noqa: S301 (its own)
        return self.cache.get(self.key)

    def update(self, keep: Any) -> None:
        self.cache[self.key] = keep
        self.dirty.add(self.key)

    def clear(self) -> None:
        self.cache.pop(self.key, None)
        self.stored.pop(self.key, None)
        self.dirty.discard(self.key)

    def timer_service(self) -> Stand:
        return self

    def current_watermark(self) -> int:
        return self.watermark

    def register_event_time_timer(self, ms: int) -> None:
        heapq.heappush(self.timers, (ms, self.key))
        self.registered += 1

    def get_broadcast_state(self, _descriptor: Any) -> dict[str, int]:
        return {"newest": self.newest_us}

    # the driving
    def element(self, row: tuple[Any, ...]) -> None:
        self.key = f"{row[1]}/{row[5]}"
        self.outputs += sum(1 for _ in self.function.process_element(row, self))
        self.elements += 1
        if self.elements % BUNDLE == 0:
            self.finish_bundle()

    def advance(self, watermark: int) -> None:
        self.watermark = watermark
        while self.timers and self.timers[0][0] <= watermark:
            ms, self.key = heapq.heappop(self.timers)
            self.fired += 1
            self.outputs += sum(1 for _ in self.function.on_timer(ms, self))

    def finish_bundle(self) -> None:
        for key in self.dirty:
            if key in self.cache:
                self.stored[key] = pickle.dumps(self.cache[key])
        self.dirty.clear()
        self.cache.clear()


def rows(instances: int, hours: int) -> list[tuple[tuple[Any, ...], int]]:
    """(the row the job's SQL hands Python, event time in ms), in delivery order."""
    out = []
    for e in traffic(instances, hours):
        at = datetime.fromisoformat(e.generated).astimezone(UTC)
        out.append(((e.message_id, e.cell, e.event_type, e.generated, e.request_id, e.instance_id,
                     e.format, json.dumps(e.payload) if e.payload is not None else None),
                    int(at.timestamp() * 1000)))
    return out


def run(items: list[tuple[tuple[Any, ...], int]], period: str = "hour") -> tuple[float, Stand]:
    newest = max(ms for _, ms in items) * 1000 + 999
    timing = Timing(PERIODS[period], OUT_OF_ORDER_MS * 1000, 24 * 3600_000_000,
                    4 * 3600_000_000, 168 * 3600_000_000)
    stand = Stand(InstanceFunction(timing), newest)
    started, top = time.process_time(), -(2**63)
    for i, (row, ms) in enumerate(items):
        stand.element(row)
        top = max(top, ms)
        if i % WATERMARK_EVERY == 0 and top - OUT_OF_ORDER_MS > stand.watermark:
            stand.advance(top - OUT_OF_ORDER_MS)
    stand.advance(MAX_WATERMARK)
    stand.finish_bundle()
    return time.process_time() - started, stand  # CPU: a loaded machine stretches wall time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=600)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--period", choices=sorted(PERIODS), default="hour",
                        help="the usage period: one timer per instance per period")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    items = rows(args.instances, args.hours)
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(run, items, args.period)
        pstats.Stats(profile).sort_stats("cumulative").print_stats(25)
    seconds = []
    for _ in range(args.repeat):
        s, stand = run(items, args.period)
        seconds.append(s)
    median = statistics.median(seconds)
    # What crosses between the JVM and Python in the job, besides the notifications: each
    # row out, each timer registered and each timer fired is one more element on the wire.
    print(f"per notification: {stand.outputs / len(items):.2f} rows out, "
          f"{stand.registered / len(items):.2f} timers registered, "
          f"{stand.fired / len(items):.2f} fired")
    print(f"{len(items):,} notifications, usage per {args.period}, {stand.outputs:,} rows out; "
          f"median of {args.repeat}: "
          f"{median:.2f} CPU s = {len(items) / median:,.0f} notifications/s, "
          f"{median / len(items) * 1e6:,.0f} µs per notification")


if __name__ == "__main__":
    main()
