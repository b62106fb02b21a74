"""``jobs.instance_operator: jvm`` and ``jobs.request_operator: jvm``: the keyed jobs with
their logic in the JVM (jvm/operators' ``stacktide.lifecycle`` and ``stacktide.requests``)
write what the Python functions write.

One simulated cloud (reordered, late and repeated deliveries, two corrupted exists, failing
requests of every kind) goes to two topics, and bounded runs of the jobs, one with the Python
functions and one with the JVM's, write two namespaces: usage equals the simulator's truth to
the microsecond in both; every current row of ``instances``, ``instance_usage``,
``usage_audit``, ``requests`` and ``errors`` and every ``instance_events`` row is the same; both
alert every error once.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import pytest

from jobs.command import run_jobs
from stacktide.config import Config
from stacktide.local.kafka import ensure_topics
from stacktide.simulate.cloud import Params
from stacktide.simulate.delivery import Delivery
from stacktide.simulate.traffic import generate
from tests.helpers import (
    current_rows,
    difference,
    envelopes,
    isolated,
    produce,
    read_topic,
    truth_usage,
)

pytestmark = pytest.mark.stack


def test_the_jvm_operators_write_what_the_python_functions_write(stack: Config) -> None:
    traffic = generate(Params(seed=21, instances=30, hours=12), "legacy",
                       Delivery(21, reorder_window_s=60.0, delay_fraction=0.03,
                                delay_hours=(0.5, 1.5), duplicate_fraction=0.05), corrupt=2,
                       failures=1)
    items = envelopes(traffic)
    landed, alerted = {}, {}
    for operator in ("python", "jvm"):
        config = isolated(stack, f"op{operator}")
        config = dataclasses.replace(config, jobs=dataclasses.replace(
            config.jobs, instance_operator=operator, request_operator=operator))
        ensure_topics(config)
        produce(config, items)
        assert run_jobs(config, bounded=True, fresh=True)
        landed[operator] = current_rows(config)
        alerts = [json.loads(r.value) for r in read_topic(config, "alerts")]
        alerted[operator] = Counter((a["message_id"], a["exception"], a["message"])
                                    for a in alerts)
    expected = truth_usage(traffic)
    assert len({k[1] for k in expected}) >= 25
    python, jvm = landed["python"], landed["jvm"]
    assert python["usage"] == expected
    assert any('"field"' in str(row) for row in python["usage_audit"])  # the corrupted exists
    outcomes = Counter(dict(r)["outcome"] for r in python["requests"])
    assert outcomes["error"] >= 4 and outcomes["ok"] > 100, outcomes
    for name in ("usage", "instances", "usage_audit", "instance_events", "requests", "errors",
                 "archive"):
        assert jvm[name] == python[name], (name, difference(jvm[name], python[name]))
    assert set(alerted["python"].values()) == {1}
    assert alerted["jvm"] == alerted["python"]
    assert len(alerted["python"]) == len(python["errors"])
