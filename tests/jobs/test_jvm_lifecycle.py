"""The JVM's instance state machine and exact usage (jvm/operators, ``stacktide.lifecycle``)
against the Python functions they port, which stay the definition: every corpus sample
observed alike, and simulated clouds (both formats, reordered, late and repeated deliveries)
folded to the same state and the same usage rows, in delivery order and shuffled.

tests/jvm/LifecycleCheck.java answers the queries in one JVM; each query is a JSON line.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jobs import lifecycle as lc
from jobs import usage
from jobs.instance_state import OUTPUTS, InstanceFunction, Timing
from stacktide.corpus import iter_samples
from stacktide.schema import Envelope
from stacktide.simulate.cloud import Params
from stacktide.simulate.delivery import Delivery
from stacktide.simulate.traffic import generate
from tests.helpers import envelopes
from tests.jobs.keyed_driver import Ask, Driver, java_harness, plan
from tests.jobs.keyed_driver import instance_wire as wire

RULES = lc.load_rules()
RECEIVED = datetime(2030, 1, 1, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOUR = usage.PERIODS["hour"]


@pytest.fixture(scope="module")
def jvm(tmp_path_factory: pytest.TempPathFactory) -> Ask:
    """Ask the JVM: a list of queries in, one answer per query out."""
    tmp = tmp_path_factory.mktemp("jvm-lifecycle")
    (rules := tmp / "rules.json").write_text(json.dumps(lc.rules_document(RULES)))
    return java_harness(tmp, "LifecycleCheck", [str(rules)])


def observation(o: lc.Observation | None) -> dict[str, Any] | None:
    if o is None:
        return None
    return {"instance_id": o.instance_id, "message_id": o.message_id, "event_type": o.event_type,
            "at": o.at, "key": o.key, "sets": sorted(o.effect.sets), "audit": o.effect.audit,
            "values": dict(o.values), "request_id": o.request_id}


def _s(x: Any) -> str:
    return "null" if x is None else str(x)


def _flavor(f: lc.Flavor | None) -> str:
    return "None" if f is None else "|".join(map(_s, (f.flavor_id, f.flavor_name, f.vcpus,
                                                        f.memory_mb, f.root_gb, f.ephemeral_gb,
                                                        f.instance_type_id)))


def _image(i: lc.Image | None) -> str:
    return "None" if i is None else "|".join(map(_s, (i.image_ref, i.os_type, i.os_architecture,
                                                        i.os_distro, i.os_version)))


def folded(items: list[Envelope], period: int, lo: int, hi: int) -> dict[str, Any]:
    """What LifecycleCheck's fold answers, computed by the Python functions."""
    states: dict[str, lc.InstanceState] = {}
    for env in items:
        if (o := lc.observe(env, RULES)) is not None:
            states[o.instance_id] = lc.apply(
                states.get(o.instance_id) or lc.InstanceState(o.cell, o.instance_id), o)
    out = {}
    for iid, s in states.items():
        rows = usage.usage(s, RULES, period, lo, hi)
        out[iid] = {
            "samples": [[x.at, x.key, _s(x.state), _flavor(x.flavor), _image(x.image),
                         _s(x.launched)] for x in s.samples],
            "registers": {k: [at, key, _s(v)] for k, (at, key, v) in s.registers.items()},
            "launches": [[x.launched, x.at, x.key, _flavor(x.flavor), _image(x.image)]
                         for x in s.launches],
            "scalars": [s.first_launched, s.deleted_at, s.observed_from],
            "usage": [[r.period_start, r.period_end, r.flavor_id, r.vcpus, r.memory_mb,
                       r.disk_gb, r.microseconds, r.running_microseconds, r.launched_at,
                       r.deleted_at] for _, r in sorted(rows.items())],
        }
    return out


def test_every_corpus_sample_is_observed_alike(jvm: Any) -> None:
    items = [env for envelope in ("1.0", "2.0") for s in iter_samples(envelope=envelope)
             if isinstance(env := _parse(s.body, s.exchange, s.routing_key), Envelope)]
    answers = jvm([{"envelope": wire(env)} for env in items])
    # ... and as the keyed operator receives them, through the serializer from the source
    received = jvm([{"envelope": wire(env), "wire": True} for env in items])
    want = [observation(lc.observe(env, RULES)) for env in items]
    assert sum(w is not None for w in want) > 300  # the corpus' nova samples
    for env, got, there, expected in zip(items, answers, received, want, strict=True):
        assert got == expected, env.message_id
        assert there == expected, env.message_id


@pytest.mark.parametrize("fmt", ["legacy", "versioned"])
def test_a_simulated_cloud_folds_to_the_same_state_and_usage(jvm: Any, fmt: str) -> None:
    traffic = generate(Params(seed=11, instances=40, hours=30), fmt,
                       Delivery(5, reorder_window_s=120.0, delay_fraction=0.03,
                                delay_hours=(1.0, 6.0), duplicate_fraction=0.05))
    items = envelopes(traffic)
    times = [t for env in items if (t := lc.to_us(env.generated)) is not None]
    lo, hi = min(times) - 2 * HOUR, max(times) + 2 * HOUR
    shuffled = random.Random(7).sample(items, len(items))
    want = folded(items, HOUR, lo, hi)
    assert want == folded(shuffled, HOUR, lo, hi)  # the definition commutes
    assert sum(bool(w["usage"]) for w in want.values()) >= 30
    for order in (items, shuffled):
        got, = jvm([{"fold": [wire(e) for e in order], "period": HOUR, "lo": lo, "hi": hi}])
        assert got.keys() == want.keys()
        for iid, expected in want.items():
            assert got[iid] == expected, iid


# Payload texts the JVM reads in one streaming pass (stacktide.lifecycle.PayloadLeaves): each
# with what the parsed payload gives Python. Keys repeated (the last counts, also when the
# first held the path deeper), values of every JSON kind on a path, empties before a later
# path's value, a versioned payload's data object missing, not an object, or repeated.
LEGACY_TEXTS = [
    '{"state": "active", "old_state": "building", "state": "stopped"}',
    '{"image_meta": {"os_distro": "x"}, "image_meta": "flat", "os_type": 7, "state": true}',
    '{"image_meta": {"org.openstack__1__architecture": "", "architecture": "arm"},'
    ' "architecture": "x86_64", "launched_at": 1234, "deleted_at": "", "terminated_at": null}',
    '{"vcpus": 1.5, "memory_mb": -0, "root_gb": [1], "ephemeral_gb": {"a": 1}, "tenant_id": false,'
    ' "instance_type_id": 123456789012345678901234567890, "audit_period_beginning": "2014-10-14"}',
    '{"state": "active", "x": {"state": "deep", "y": [{"state": 1}]}, "launched_at": "\\u0032"}',
    '{"launched_at": "2014-10-14 10:06:41.006133", "state": "\\u00e9t\\u00e9", "": {"": 1}}',
    '{}', '[]', '"text"', '7', 'null',
]
VERSIONED_TEXTS = [
    '{"nova_object.data": {"state": "active", "flavor": {"nova_object.data": {"vcpus": 2}}}}',
    '{"state": "outside", "nova_object.data": null}',
    '{"state": "outside", "nova_object.data": "text"}',
    '{"state": "outside"}',
    '{"nova_object.data": {"state": "first"}, "nova_object.data": {"task_state": "second"}}',
    '{"nova_object.data": {"state_update": {"nova_object.data": {"old_state": "building"}},'
    ' "state_update": {"other": 1}, "tenant_id": "t"}}',
    '{"nova_object.data": {"audit_period": {"nova_object.data": {"audit_period_ending":'
    ' "2014-10-14T11:00:00Z"}}, "launched_at": "not a time", "host": ""}}',
]


def test_payload_texts_are_read_as_the_parsed_payload(jvm: Any) -> None:
    samples = [env for s in iter_samples(envelope="2.0")
               if isinstance(env := _parse(s.body, s.exchange, s.routing_key), Envelope)
               and env.instance_id and RULES.effect(env.event_type) is not None]
    legacy = next(e for e in samples if e.format == "legacy" and e.event_type.endswith("exists"))
    update = next(e for e in samples if e.format == "legacy" and e.event_type.endswith("update"))
    versioned = next(e for e in samples if e.format == "versioned")
    cases = [(base, text) for base in (legacy, update) for text in LEGACY_TEXTS]
    cases += [(versioned, text) for text in VERSIONED_TEXTS]
    answers = jvm([{"envelope": {**wire(env), "payload_text": text}} for env, text in cases])
    for (env, text), got in zip(cases, answers, strict=True):
        expected = observation(lc.observe(replace(env, payload=json.loads(text)), RULES))
        assert got == expected, (env.event_type, text)
    assert sum(a is not None and bool(a["values"]) for a in answers) >= 15


def test_times_and_message_keys_are_read_alike(jvm: Any) -> None:
    texts = ["2014-10-14 10:06:41.006133", "2014-10-14T10:06:41Z", "2014-10-14T10:06:41.1Z",
             "2014-10-14T10:06:41.1234567", "2014-10-14", "2014-10-14T10", "2014-10-14T10:06",
             "2014-10-14T10:06:41+02:00", "2014-10-14T10:06:41-0130", "20141014T100641",
             "2014-10-14x10:06:41", "2014-10-14T10:06:41.123+00:00:30", "2014-10-14T24:00:00",
             "2014-02-30T00:00:00", "1969-12-31T23:59:59.999999", "", "x", "2014-10-14T10:06:41,5",
             "2014-10-14T10:06:41.", "2014-10-14T10:06:4"]
    keys = ["", "a", "req-1", "é" * 70, "x" * 128, "x" * 129, "y" * 300]
    answers = jvm([{"time": t} for t in texts] + [{"key": k} for k in keys])
    assert answers == [lc.to_us(t) for t in texts] + [lc.message_key(k) for k in keys]


def _parse(body: bytes, exchange: str, routing_key: str) -> Any:
    from connectors.wire import parse

    return parse(body, cell="corpus", exchange=exchange, routing_key=routing_key,
                 received=RECEIVED)


def test_the_harness_can_tell_a_difference(jvm: Any, tmp_path: Path) -> None:
    """A fold that differs is seen as different: a changed period changes every usage row."""
    traffic = generate(Params(seed=2, instances=3, hours=6), "legacy")
    items = envelopes(traffic)
    times = [t for env in items if (t := lc.to_us(env.generated)) is not None]
    lo, hi = min(times), max(times) + HOUR
    got, = jvm([{"fold": [wire(e) for e in items], "period": HOUR, "lo": lo, "hi": hi}])
    assert got == folded(items, HOUR, lo, hi)
    assert got != folded(items, usage.PERIODS["day"], lo, hi)


def element(driver: Driver, env: Envelope) -> None:
    """*env* to the instance function as the keyed job hands it over."""
    driver.element(f"{env.cell}/{env.instance_id}", (
        env.message_id, env.cell, env.event_type, env.generated, env.request_id,
        env.instance_id, env.format, json.dumps(env.payload) if env.payload is not None
        else None))


def plain(record: dict[str, Any]) -> dict[str, Any]:
    return {k: (v - EPOCH) // timedelta(microseconds=1) if isinstance(v, datetime) else v
            for k, v in record.items()}


@pytest.mark.parametrize(("fmt", "audit_expected"), [("legacy", True), ("versioned", False)])
def test_the_jobs_logic_emits_the_same_rows(jvm: Any, fmt: str, audit_expected: bool) -> None:
    """The whole keyed logic (state machine, usage book, audit, timers, revisions, clearing
    deleted instances) driven alike: the same rows, the same late and repeated counts."""
    traffic = generate(Params(seed=5, instances=30, hours=30), fmt,
                       Delivery(9, reorder_window_s=120.0, delay_fraction=0.03,
                                delay_hours=(1.0, 30.0), duplicate_fraction=0.05), corrupt=2)
    items = envelopes(traffic)
    newest = max(lc.to_us(e.generated) or 0 for e in items)
    timing = Timing(HOUR, 60_000_000, 3 * 3600_000_000, 2 * 3600_000_000, 20 * 3600_000_000,
                    audit_expected)
    driver = Driver(InstanceFunction(timing, base=7), newest)
    steps = plan(items, lambda env: lc.to_us(env.generated))
    for kind, value in steps:
        element(driver, value) if kind == "e" else driver.advance(value)
    want = [[name, plain(record)] for name, record in driver.rows]
    tables = Counter(name for name, _ in want)
    assert min(tables[t] for t in OUTPUTS) > 0 and driver.counts["late_events"] > 0, (
        tables, driver.counts)
    assert any(r["status"] == "failed" for n, r in want if n == "usage_audit")
    got, = jvm([{"drive": [[k, wire(v) if k == "e" else v] for k, v in steps],
                 "timing": [timing.period, timing.out_of_order, timing.lateness, timing.settle,
                            timing.silence, timing.audit_expected],
                 "base": 7, "newest": newest}])
    assert got["late"] == driver.counts["late_events"]
    assert got["duplicates"] == driver.counts["duplicates"]
    assert set(got["kept"]) == set(driver.stored)
    periodic = {k: len(keep.periodic) for k, keep in driver.stored.items()}
    assert got["periodic"] == periodic
    # Kept only to flag a missing exists: without nova's audit the state keeps none of them.
    assert any(periodic.values()) if audit_expected else not any(periodic.values())
    key = json.dumps
    assert sorted(map(key, got["rows"])) == sorted(map(key, want))
