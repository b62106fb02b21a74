"""nova's exists, verified against the stream: clean ones verify, each corrupted field fails."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from jobs.audit import AuditResult, expected_exists, missing_exists, periodic, verify
from jobs.lifecycle import InstanceState, Observation, apply, load_rules, message_key, observe
from stacktide.schema import USAGE_AUDIT
from stacktide.simulate.cloud import Params
from stacktide.simulate.delivery import Delivery
from stacktide.simulate.traffic import CORRUPTIBLE, Traffic, generate
from tests.helpers import simulated_envelopes

RULES = load_rules()
NOW = datetime(2030, 1, 1, tzinfo=UTC)
HOUR = 3_600_000_000
LATER = 2**60  # long after everything settled


def split(traffic: Traffic) -> tuple[dict[tuple[str, str], InstanceState], list[Observation]]:
    """The folded states and the exists observations of *traffic*."""
    states: dict[tuple[str, str], InstanceState] = {}
    exists = []
    for env in simulated_envelopes(traffic, NOW):
        obs = observe(env, RULES)
        if obs is None:
            continue
        if obs.effect.audit:
            exists.append(obs)
        else:
            key = (obs.cell, obs.instance_id)
            states[key] = apply(states.get(key) or InstanceState(*key), obs)
    return states, exists


def check(states: dict[tuple[str, str], InstanceState], e: Observation) -> AuditResult:
    return verify(states.get((e.cell, e.instance_id)), e, now=LATER, settle=0, period=HOUR)


@pytest.mark.parametrize("fmt", ["legacy", "versioned", "both"])
def test_every_clean_exists_verifies_and_each_corruption_fails_on_its_field(fmt: str) -> None:
    traffic = generate(Params(seed=21, instances=40, hours=24), fmt,
                       Delivery(21, 30.0, 0.05, (1, 4), 0.05), corrupt=2 * len(CORRUPTIBLE))
    states, exists = split(traffic)
    corrupted = {c["message_id"]: c["field"] for c in traffic.truth["corrupted"]}
    assert len(set(corrupted.values())) >= 6
    for e in exists:
        result = check(states, e)
        fields = [m.field for m in result.mismatches]
        if e.message_id in corrupted:
            assert (result.status, fields) == ("failed", [corrupted[e.message_id]]), result
        else:
            assert (result.status, fields) == ("verified", []), result
    seen = {e.message_id for e in exists}
    assert set(corrupted) <= seen and any(not periodic(e, HOUR) for e in exists)


def test_a_mismatch_names_what_the_stream_saw_and_what_nova_claims() -> None:
    traffic = generate(Params(seed=3, instances=6, hours=12), "legacy", corrupt=1)
    states, exists = split(traffic)
    (bad,) = [e for e in exists if e.message_id == traffic.truth["corrupted"][0]["message_id"]]
    (mismatch,) = check(states, bad).mismatches
    assert mismatch.field == "launched_at"
    assert mismatch.expected is not None and mismatch.actual is not None
    assert mismatch.actual[:19] != mismatch.expected[:19]  # different seconds
    record = check(states, bad).record()
    assert json.loads(record["mismatches"]) == [{"field": "launched_at",
                                                "expected": mismatch.expected,
                                                "actual": mismatch.actual}]
    assert record["audit_period_ending"].tzinfo is not None
    assert list(record) == USAGE_AUDIT.column_names()


def test_pending_until_settled_then_decided() -> None:
    traffic = generate(Params(seed=5, instances=3, hours=6), "legacy")
    states, exists = split(traffic)
    e = exists[0]
    ending = e.values["audit_period_ending"]
    settle = 300_000_000
    state = states[(e.cell, e.instance_id)]
    early = verify(state, e, now=max(e.at, ending) + settle - 1, settle=settle, period=HOUR)
    assert (early.status, early.mismatches) == ("pending", ())
    assert verify(state, e, now=max(e.at, ending) + settle, settle=settle,
                  period=HOUR).status == "verified"


def test_exists_for_an_instance_the_stream_never_saw_fails() -> None:
    traffic = generate(Params(seed=5, instances=2, hours=6), "legacy")
    _, exists = split(traffic)
    result = verify(None, exists[0], now=LATER, settle=0, period=HOUR)
    assert result.status == "failed"
    assert [(m.field, m.expected) for m in result.mismatches] == [("launched_at", None)]


def test_deleted_at_is_checked_both_ways() -> None:
    traffic = generate(Params(seed=8, instances=30, hours=24), "legacy")
    states, exists = split(traffic)
    deleted = next(e for e in exists if e.values.get("deleted_at") is not None)
    state = states[(deleted.cell, deleted.instance_id)]
    assert check(states, deleted).status == "verified"
    undeleted = replace(deleted, values={**deleted.values, "deleted_at": None})
    assert [m.field for m in check(states, undeleted).mismatches] == ["deleted_at"]
    alive = next(e for e in exists if states[(e.cell, e.instance_id)].deleted_at is None)
    claims_deleted = replace(alive, values={**alive.values, "deleted_at": alive.at})
    assert [m.field for m in check(states, claims_deleted).mismatches] == ["deleted_at"]
    assert state.deleted_at is not None


def test_audit_period_bounds_are_checked() -> None:
    traffic = generate(Params(seed=9, instances=3, hours=6), "legacy")
    states, exists = split(traffic)
    e = next(x for x in exists if periodic(x, HOUR) is not None)
    v = e.values
    shifted = replace(e, values={**v, "audit_period_beginning": v["audit_period_beginning"] + 1})
    assert [m.field for m in check(states, shifted).mismatches] == ["audit_period_beginning"]
    future = replace(e, values={**v, "audit_period_ending": e.at + HOUR,
                                "audit_period_beginning": e.at + HOUR - HOUR})
    assert "audit_period_ending" in [m.field for m in check(states, future).mismatches]
    empty = replace(e, values={**v, "audit_period_ending": None})
    assert check(states, empty).status == "failed"


def test_missing_periodic_exists_are_flagged_and_offloaded_instances_are_not() -> None:
    traffic = generate(Params(seed=13, instances=40, hours=24), "legacy")
    states, exists = split(traffic)
    seen: dict[tuple[str, str], set[int]] = defaultdict(set)
    for e in exists:
        if (start := periodic(e, HOUR)) is not None:
            seen[(e.cell, e.instance_id)].add(start)
    p = traffic.cloud.params
    for key, state in states.items():
        assert missing_exists(state, RULES, seen[key], p.start, p.end, HOUR) == []
    key, periods = next((k, s) for k, s in seen.items() if len(s) > 3)
    dropped = sorted(periods)[1]
    assert missing_exists(states[key], RULES, periods - {dropped}, p.start, p.end, HOUR) == [
        dropped]


def test_nova_audits_no_instance_that_ends_the_period_offloaded() -> None:
    t0 = 1_704_067_200_000_000
    state = InstanceState("c1", "i1")
    for at, vm in ((t0 + 1, "building"), (t0 + 10, "active"), (t0 + HOUR + 10, "shelved"),
                   (t0 + 2 * HOUR - 10, "shelved_offloaded")):
        mid = f"m{at}"
        effect = RULES.effect("compute.instance.update")
        assert effect is not None
        state = apply(state, Observation("c1", "i1", mid, "compute.instance.update", at,
                                         message_key(mid), effect,
                                         {"state": vm, "flavor_id": "1", "launched_at": t0 + 5}))
    assert expected_exists(state, RULES, t0, HOUR)  # active at the end of the first hour
    assert not expected_exists(state, RULES, t0 + HOUR, HOUR)  # offloaded at the end
    assert not expected_exists(state, RULES, t0 + 2 * HOUR, HOUR)  # no usage at all
    assert missing_exists(state, RULES, [], t0, t0 + 3 * HOUR, HOUR) == [t0]
