"""``jobs.instance_operator: jvm``: the keyed instance job with its logic in the JVM
(jvm/operators' ``stacktide.lifecycle``) writes what the Python function writes.

One simulated cloud (reordered, late and repeated deliveries, two corrupted exists) goes to
two topics, and bounded runs of the jobs, one per operator, write two namespaces: usage equals
the simulator's truth to the microsecond in both, and every current row of ``instances``,
``instance_usage`` and ``usage_audit`` and every ``instance_events`` row is the same.
"""

from __future__ import annotations

import dataclasses

import pytest

from jobs.command import run_jobs
from stacktide.config import Config
from stacktide.local.kafka import ensure_topics
from stacktide.simulate.cloud import Params
from stacktide.simulate.delivery import Delivery
from stacktide.simulate.traffic import generate
from tests.helpers import current_rows, difference, envelopes, isolated, produce, truth_usage

pytestmark = pytest.mark.stack


def test_the_jvm_operator_writes_what_the_python_function_writes(stack: Config) -> None:
    traffic = generate(Params(seed=21, instances=30, hours=12), "legacy",
                       Delivery(21, reorder_window_s=60.0, delay_fraction=0.03,
                                delay_hours=(0.5, 1.5), duplicate_fraction=0.05), corrupt=2)
    items = envelopes(traffic)
    landed = {}
    for operator in ("python", "jvm"):
        config = isolated(stack, f"op{operator}")
        config = dataclasses.replace(config, jobs=dataclasses.replace(
            config.jobs, instance_operator=operator))
        ensure_topics(config)
        produce(config, items)
        assert run_jobs(config, bounded=True, fresh=True)
        landed[operator] = current_rows(config)
    expected = truth_usage(traffic)
    assert len({k[1] for k in expected}) >= 25
    python, jvm = landed["python"], landed["jvm"]
    assert python["usage"] == expected
    assert any('"field"' in str(row) for row in python["usage_audit"])  # the corrupted exists
    for name in ("usage", "instances", "usage_audit", "instance_events", "archive"):
        assert jvm[name] == python[name], (name, difference(jvm[name], python[name]))
