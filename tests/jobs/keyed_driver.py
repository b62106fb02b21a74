"""What the differential tests of the JVM operators share: a driver that runs a keyed Python
function as Flink does, the plan of elements and watermarks they are driven by, and the Java
harness (tests/jvm/*.java) that drives the JVM's port the same way and answers in JSON lines.
bench/bench_state_job.py drives the instance job's port through the same harness.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from jobs.keyed_source import MAX_WATERMARK
from stacktide.config import REPO_ROOT, config_from_mapping
from stacktide.local.operators import _flink_jars, operator_jar
from stacktide.schema import Envelope

Ask = Callable[[list[dict[str, Any]]], list[Any]]


def java_harness(tmp: Path, main: str, args: Iterable[str], extra: Iterable[Path] = ()) -> Ask:
    """Compile tests/jvm/<main>.java against the operators' jar (and the *extra* jars); the
    returned function runs it once per call: a list of queries in (JSON lines on stdin), one
    answer per query out."""
    config = config_from_mapping({"local": {"cache_dir": str(tmp / "cache")}}, "<test>", base=tmp)
    classpath = ":".join(map(str, [tmp / "classes", operator_jar(config), *_flink_jars(),
                                   *extra]))
    subprocess.run(["javac", "--release", "11", "-nowarn", "-d", str(tmp / "classes"), "-cp",
                    classpath, str(REPO_ROOT / "tests" / "jvm" / f"{main}.java")],
                   check=True, capture_output=True, text=True)
    argv = list(args)

    def ask(queries: list[dict[str, Any]]) -> list[Any]:
        done = subprocess.run(["java", "-cp", classpath, main, *argv],
                              input="".join(json.dumps(q) + "\n" for q in queries),
                              capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        answers = [json.loads(line) for line in done.stdout.splitlines()]
        assert len(answers) == len(queries)
        return answers

    return ask


def corpus_envelopes(received: datetime) -> list[Envelope]:
    """Every corpus notification as the bridge would put it on Kafka (cell "corpus")."""
    from connectors.wire import parse
    from stacktide.corpus import iter_samples

    out = []
    for s in iter_samples():
        env = parse(s.body, cell="corpus", exchange=s.exchange, routing_key=s.routing_key,
                    received=received)
        if isinstance(env, Envelope):
            out.append(env)
    return out


def instance_wire(env: Envelope) -> dict[str, Any]:
    """The envelope's fields the keyed instance job hands its function (payload as JSON), as
    tests/jvm/LifecycleCheck.java reads them."""
    return {"cell": env.cell, "instance_id": env.instance_id, "message_id": env.message_id,
            "event_type": env.event_type, "generated": env.generated, "format": env.format,
            "request_id": env.request_id, "payload": env.payload}


class Driver:
    """Drives a keyed Python function as Flink does (the Java harnesses do the same to the
    JVM's logic): keyed state, event-time timers fired in (time, key) order as the watermark
    passes them (one per key and time), the broadcast clock's newest time, counters."""

    def __init__(self, function: Any, newest: int) -> None:
        self.function, self.given = function, newest
        self.stored: dict[str, Any] = {}
        self.timers: set[tuple[int, str]] = set()
        self.key, self.watermark = "", -(2**63)
        self.rows: list[Any] = []
        self.counts: dict[str, int] = {}
        function.emit = lambda name, record: (name, record)
        function.open(self)

    def get_state(self, _descriptor: Any) -> Driver:
        return self

    def get_metrics_group(self) -> Driver:
        return self

    def counter(self, name: str) -> Any:
        counts = self.counts
        counts.setdefault(name, 0)

        class Counter:
            def inc(self, n: int = 1) -> None:
                counts[name] += n
        return Counter()

    def value(self) -> Any:
        return self.stored.get(self.key)

    def update(self, keep: Any) -> None:
        self.stored[self.key] = keep

    def clear(self) -> None:
        self.stored.pop(self.key, None)

    def timer_service(self) -> Driver:
        return self

    def current_watermark(self) -> int:
        return self.watermark

    def register_event_time_timer(self, ms: int) -> None:
        self.timers.add((ms, self.key))

    def get_broadcast_state(self, _descriptor: Any) -> dict[str, int]:
        return {"newest": self.given}

    def element(self, key: str, row: tuple[Any, ...]) -> None:
        self.key = key
        self.rows += list(self.function.process_element(row, self))

    def advance(self, ms: int) -> None:
        self.watermark = ms
        while self.timers and (first := min(self.timers))[0] <= ms:
            self.timers.discard(first)
            self.key = first[1]
            self.rows += list(self.function.on_timer(first[0], self))


def plan(items: list[Any], time_us: Callable[[Any], int | None], every: int = 200,
         out_of_order_ms: int = 60_000) -> list[tuple[str, Any]]:
    """Elements in delivery order, the watermark (newest - out of order) every *every*
    elements, then the end of input."""
    steps: list[tuple[str, Any]] = []
    top, mark = -(2**63), -(2**63)
    for i, item in enumerate(items):
        steps.append(("e", item))
        top = max(top, (time_us(item) or 0) // 1000)
        if i % every == 0 and top - out_of_order_ms > mark:
            steps.append(("w", mark := top - out_of_order_ms))
    return [*steps, ("w", MAX_WATERMARK)]
