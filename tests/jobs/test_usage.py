"""Exact usage: equal to the simulator's ground truth to the microsecond, whatever the delivery."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.lifecycle import InstanceState, Observation, load_rules, message_key, observe, to_us
from jobs.usage import (
    PERIODS,
    Book,
    UsageRow,
    advance,
    compact,
    dumps,
    event_row,
    instance_row,
    loads,
    next_due,
    step,
)
from stacktide.config import load_config
from stacktide.errors import ConfigError
from stacktide.schema import INSTANCE_EVENTS, INSTANCE_USAGE, INSTANCES
from stacktide.simulate.cloud import Params
from stacktide.simulate.delivery import Delivery
from stacktide.simulate.traffic import Traffic, generate
from tests.helpers import simulated_envelopes

RULES = load_rules()
NOW = datetime(2030, 1, 1, tzinfo=UTC)
HOUR = PERIODS["hour"]
S = 1_000_000
T0 = 1_704_067_200 * S  # 2024-01-01T00:00:00Z
Key = tuple[int, str]


def delivered(traffic: Traffic) -> list[Observation]:
    out = []
    for env in simulated_envelopes(traffic, NOW):
        if (o := observe(env, RULES)) is not None:
            out.append(o)
    return out


def truth_usage(traffic: Traffic) -> dict[tuple[str, str], dict[Key, tuple[int, int]]]:
    return {(i["cell"], i["instance_id"]): {
        (to_us(u["period_start"]) or 0, u["flavor_id"]): (
            int(Decimal(u["seconds"]) * S), int(Decimal(u["running_seconds"]) * S))
        for u in i["usage"]} for i in traffic.truth["instances"]}


def run(obs: list[Observation], period: int, watermark: int | None = None, *,
        lateness: int | None = None, bound: int = 60 * S
        ) -> tuple[dict[tuple[str, str], tuple[InstanceState, Book]], dict[Any, UsageRow]]:
    """Fold *obs* in the given order; with *watermark* None, advance once per instance after
    each event (streaming: watermark = newest time - bound, compacting past *lateness*)."""
    keep: dict[tuple[str, str], tuple[InstanceState, Book]] = {}
    rows: dict[Any, UsageRow] = {}
    newest = 0
    for o in obs:
        key = (o.cell, o.instance_id)
        state, book = keep.get(key) or (InstanceState(*key), Book())
        state, book = step(state, book, o)
        if watermark is None:
            newest = max(newest, o.at)
            book, emitted = advance(state, book, RULES, period, newest - bound)
            for r in emitted:
                old = rows.get((key, r.period_start, r.flavor_id))
                assert r.revision == (0 if old is None else old.revision + 1)
                rows[key, r.period_start, r.flavor_id] = r
            if lateness is not None:
                state, book = compact(state, book, period, newest - bound - lateness)
        keep[key] = (state, book)
    if watermark is not None:
        for key, (state, book) in list(keep.items()):
            book, emitted = advance(state, book, RULES, period, watermark)
            keep[key] = (state, book)
            rows.update({(key, r.period_start, r.flavor_id): r for r in emitted})
    return keep, rows


def by_instance(rows: dict[Any, UsageRow]) -> dict[tuple[str, str], dict[Key, tuple[int, int]]]:
    out: dict[tuple[str, str], dict[Key, tuple[int, int]]] = {}
    for (inst, ps, flavor), r in rows.items():
        if r.microseconds or r.running_microseconds:
            out.setdefault(inst, {})[ps, flavor] = (r.microseconds, r.running_microseconds)
    return out


def expected(traffic: Traffic) -> dict[tuple[str, str], dict[Key, tuple[int, int]]]:
    return {k: v for k, v in truth_usage(traffic).items() if v}


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), fmt=st.sampled_from(["legacy", "versioned", "both"]),
       period=st.sampled_from(["hour", "day"]))
def test_period_sums_equal_the_ground_truth_exactly(seed: int, fmt: str, period: str) -> None:
    traffic = generate(Params(seed=seed, instances=8, hours=48, period=period), fmt,
                       Delivery(seed, 20.0, 0.05, (1, 4), 0.05))
    p = PERIODS[period]
    _, rows = run(delivered(traffic), p, watermark=traffic.cloud.params.end)
    assert by_instance(rows) == expected(traffic)
    flavors = {u["flavor_id"]: (u["vcpus"], u["memory_mb"], u["disk_gb"])
               for i in traffic.truth["instances"] for u in i["usage"]}
    assert all((r.vcpus, r.memory_mb, r.disk_gb) == flavors[r.flavor_id] for r in rows.values())


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_streaming_with_late_and_repeated_deliveries_converges_to_the_truth(seed: int) -> None:
    traffic = generate(Params(seed=seed, instances=10, hours=36), "legacy",
                       Delivery(seed, 30.0, 0.1, (1, 5), 0.1))
    obs = delivered(traffic)
    end = traffic.cloud.params.end
    keep, rows = run(obs, HOUR, lateness=8 * HOUR)
    for key, (state, book) in keep.items():  # the last periods complete after the traffic
        book, emitted = advance(state, book, RULES, HOUR, end)
        rows.update({(key, r.period_start, r.flavor_id): r for r in emitted})
    assert by_instance(rows) == expected(traffic)  # run() checked revisions go up one by one


def test_late_deliveries_correct_rows_already_written() -> None:
    traffic = generate(Params(seed=1, instances=20, hours=36), "legacy",
                       Delivery(1, 30.0, 0.1, (1, 5), 0.1))
    _, rows = run(delivered(traffic), HOUR, lateness=8 * HOUR)
    assert any(r.revision > 0 for r in rows.values())


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), shuffle=st.randoms(use_true_random=False))
def test_any_permutation_and_duplication_give_identical_state_and_rows(
        seed: int, shuffle: random.Random) -> None:
    traffic = generate(Params(seed=seed, instances=4, hours=24), "legacy")
    obs = delivered(traffic)
    again = obs + shuffle.sample(obs, len(obs) // 3)
    shuffle.shuffle(again)
    end = traffic.cloud.params.end
    first, second = run(obs, HOUR, end), run(again, HOUR, end)
    assert first == second


def test_compaction_changes_nothing_but_size() -> None:
    traffic = generate(Params(seed=4, instances=20, hours=48), "legacy",
                       Delivery(4, 30.0, 0.05, (1, 3), 0.05))
    obs = delivered(traffic)
    full, rows_full = run(obs, HOUR)
    small, rows_small = run(obs, HOUR, lateness=6 * HOUR)
    assert by_instance(rows_full) == by_instance(rows_small)
    live = [k for k, (s, _) in small.items() if s.deleted_at is None]
    sizes = sorted(len(dumps(*small[k])) for k in live)
    assert sum(len(dumps(*full[k])) for k in live) > sum(sizes)
    assert sizes[len(sizes) // 2] < 2048  # the median live instance keeps under 2 KB


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), fmt=st.sampled_from(["legacy", "both"]))
def test_serialized_state_round_trips(seed: int, fmt: str) -> None:
    traffic = generate(Params(seed=seed, instances=3, hours=30), fmt, Delivery(seed, 10, 0.1))
    keep, _ = run(delivered(traffic), HOUR, lateness=4 * HOUR)
    for state, book in keep.values():
        assert loads(dumps(state, book)) == (state, book)


# -- hand-made histories ----------------------------------------------------------------------------

def ob(at: int, event: str = "compute.instance.update", mid: str | None = None,
       **values: Any) -> Observation:
    mid = mid or f"m-{event}-{at}"
    effect = RULES.effect(event)
    assert effect is not None
    return Observation("c1", "i1", mid, event, at, message_key(mid), effect, values)


def snap(at: int, state: str, flavor: str = "A", launched: int | None = None,
         event: str = "compute.instance.update", mid: str | None = None,
         **more: Any) -> Observation:
    return ob(at, event, mid, state=state, flavor_id=flavor, vcpus=str(len(flavor)),
              launched_at=launched, **more)


def usage_of(obs: list[Observation], watermark: int) -> dict[Key, tuple[int, int]]:
    _, rows = run(obs, HOUR, watermark)
    return by_instance(rows).get(("c1", "i1"), {})


STATES = ["building", "active", "stopped", "paused", "shelved_offloaded", "resized", "error"]


@settings(max_examples=60, deadline=None)
@given(events=st.lists(st.tuples(st.integers(0, 3 * HOUR), st.sampled_from(STATES),
                                 st.sampled_from(["A", "BB", "CCC"]),
                                 st.one_of(st.none(), st.integers(0, 3 * HOUR))),
                       min_size=1, max_size=25),
       delete=st.one_of(st.none(), st.integers(0, 4 * HOUR)), shuffle=st.randoms())
def test_any_history_any_order_same_rows_and_sums_within_existence(
        events: list[tuple[int, str, str, int | None]], delete: int | None,
        shuffle: random.Random) -> None:
    """Arbitrary histories, ties at one microsecond included: order never matters."""
    obs = [snap(T0 + at, vm, flavor, None if launched is None else T0 + launched, mid=f"m{i}")
           for i, (at, vm, flavor, launched) in enumerate(events)]
    if delete is not None:
        obs.append(ob(T0 + delete + 1, "compute.instance.delete.end", state="deleted",
                      deleted_at=T0 + delete))
    again = obs + obs[: len(obs) // 2]
    shuffle.shuffle(again)
    first, second = run(obs, HOUR, T0 + 5 * HOUR), run(again, HOUR, T0 + 5 * HOUR)
    assert first == second
    rows = first[1].values()
    assert all(0 <= r.running_microseconds <= r.microseconds <= HOUR for r in rows)
    launched = [T0 + x[3] for x in events if x[3] is not None]
    assert sum(r.microseconds for r in rows) <= max(
        0, min(T0 + 5 * HOUR, T0 + delete if delete is not None else T0 + 5 * HOUR)
        - min(launched, default=T0 + 5 * HOUR))


def test_events_exactly_on_boundaries_and_sub_second() -> None:
    launch = T0 + HOUR - 1  # 00:59:59.999999
    obs = [snap(T0 + 10 * S, "building"), snap(T0 + HOUR, "active", launched=launch),
           snap(T0 + 2 * HOUR, "stopped"),  # powered off exactly at 02:00:00.000000
           ob(T0 + 3 * HOUR + 1, "compute.instance.delete.end", state="deleted",
              deleted_at=T0 + 3 * HOUR)]  # deleted exactly at 03:00
    assert usage_of(obs, T0 + 5 * HOUR) == {
        (T0, "A"): (1, 0),  # one microsecond of existence, building
        (T0 + HOUR, "A"): (HOUR, HOUR),
        (T0 + 2 * HOUR, "A"): (HOUR, 0),
    }


def test_resize_mid_period_splits_flavors_and_revert_goes_back() -> None:
    half = T0 + HOUR // 2 + S // 2  # 00:30:00.5
    obs = [snap(T0, "building"), snap(T0 + 60 * S, "active", launched=T0 + 59 * S),
           snap(half, "active", "BB", event="compute.instance.finish_resize.start"),
           snap(half + 10 * S, "resized", "BB", launched=half + 9 * S),
           snap(T0 + HOUR + 30 * S, "active", "A", launched=T0 + HOUR + 29 * S,
                event="compute.instance.resize.revert.end")]
    got = usage_of(obs, T0 + 2 * HOUR)
    assert got[(T0, "A")] == (half - (T0 + 59 * S), half - (T0 + 60 * S))
    assert got[(T0, "BB")] == (T0 + HOUR - half,) * 2
    assert got[(T0 + HOUR, "BB")] == (30 * S, 30 * S)
    assert got[(T0 + HOUR, "A")] == (HOUR - 30 * S,) * 2
    _, rows = run(obs, HOUR, T0 + 2 * HOUR)
    assert {r.vcpus for r in rows.values() if r.flavor_id == "BB"} == {2}


def test_delete_before_the_launch_ends_bills_nothing() -> None:
    obs = [snap(T0 + S, "building"), snap(T0 + 5 * S, "building", task_state="deleting"),
           ob(T0 + 9 * S, "compute.instance.delete.end", state="deleted", deleted_at=T0 + 8 * S)]
    assert usage_of(obs, T0 + 3 * HOUR) == {}


def test_delete_delivered_before_create_end_changes_nothing() -> None:
    obs = [snap(T0 + S, "building"), snap(T0 + 20 * S, "active", launched=T0 + 19 * S),
           snap(T0 + 21 * S, "active", launched=T0 + 19 * S, event="compute.instance.create.end"),
           ob(T0 + 900 * S, "compute.instance.delete.end", state="deleted",
              deleted_at=T0 + 899 * S)]
    in_order = usage_of(obs, T0 + HOUR)
    assert in_order == {(T0, "A"): (880 * S, 879 * S)}
    assert usage_of([obs[3], obs[0], obs[2], obs[1]], T0 + HOUR) == in_order


def test_late_delete_by_hours_corrects_emitted_rows() -> None:
    obs = [snap(T0 + S, "building"), snap(T0 + 20 * S, "active", launched=T0 + 19 * S)]
    state, book = InstanceState("c1", "i1"), Book()
    for o in obs:
        state, book = step(state, book, o)
    book, first = advance(state, book, RULES, HOUR, T0 + 5 * HOUR)
    assert [(r.period_start, r.microseconds, r.revision) for r in first][-1] == (
        T0 + 4 * HOUR, HOUR, 0)
    late = ob(T0 + 2 * HOUR + 600 * S, "compute.instance.delete.end", state="deleted",
              deleted_at=T0 + 2 * HOUR + 599 * S)
    state, book = step(state, book, late)
    book, fixed = advance(state, book, RULES, HOUR, T0 + 5 * HOUR)
    assert [(r.period_start - T0, r.microseconds, r.revision, r.deleted_at is not None)
            for r in fixed] == [(2 * HOUR, 599 * S, 1, True), (3 * HOUR, 0, 1, False),
                                (4 * HOUR, 0, 1, False)]
    assert advance(state, book, RULES, HOUR, T0 + 9 * HOUR)[1] == []  # nothing after deletion
    assert next_due(state, book, HOUR) is None


def test_shelved_offloaded_time_is_not_existence() -> None:
    obs = [snap(T0, "building"), snap(T0 + 10 * S, "active", launched=T0 + 10 * S),
           snap(T0 + 600 * S, "shelved"), snap(T0 + 1200 * S, "shelved_offloaded"),
           snap(T0 + 3000 * S, "active", launched=T0 + 2999 * S)]
    assert usage_of(obs, T0 + HOUR) == {(T0, "A"): (1190 * S + 600 * S, 590 * S + 600 * S)}


def test_rows_are_emitted_when_their_period_completes() -> None:
    state, book = InstanceState("c1", "i1"), Book()
    assert next_due(state, book, HOUR) is None
    state, book = step(state, book, snap(T0 + 5 * S, "active", launched=T0 + 5 * S))
    assert next_due(state, book, HOUR) == T0 + HOUR
    book, rows = advance(state, book, RULES, HOUR, T0 + HOUR - 1)
    assert rows == [] and next_due(state, book, HOUR) == T0 + HOUR
    book, rows = advance(state, book, RULES, HOUR, T0 + HOUR)
    assert len(rows) == 1 and next_due(state, book, HOUR) == T0 + 2 * HOUR
    record = rows[0].record()
    assert record["microseconds"] == 3595 * S == record["running_microseconds"]
    assert record["seconds"] == 3595.0 and record["period_start"] == datetime(2024, 1, 1, tzinfo=UTC)
    assert list(record) == INSTANCE_USAGE.column_names()


def test_rows_fit_their_tables() -> None:
    traffic = generate(Params(seed=2, instances=3, hours=6), "legacy")
    obs = delivered(traffic)
    keep, rows = run(obs, HOUR, traffic.cloud.params.end)
    assert rows and all(list(r.record()) == INSTANCE_USAGE.column_names() for r in rows.values())
    assert all(list(instance_row(s, RULES)) == INSTANCES.column_names() for s, _ in keep.values())
    history = [h for h in map(event_row, obs) if h is not None]
    assert history and all(list(h) == INSTANCE_EVENTS.column_names() for h in history)
    for table, row in ((INSTANCES, instance_row(next(iter(keep.values()))[0], RULES)),
                       (INSTANCE_EVENTS, history[0]),
                       (INSTANCE_USAGE, next(iter(rows.values())).record())):
        assert all(row[c.name] is not None for c in table.columns if c.required), table.name
    exact = [r.record() for r in rows.values()]
    assert all(round(x["seconds"] * S) == x["microseconds"] for x in exact)


# -- the usage section of the configuration -----------------------------------------------------

def test_usage_config_defaults_and_values(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("usage: {period: day, settle_seconds: 60, audit_expected: true}\n")
    usage = load_config(path).usage
    assert (usage.period, usage.settle_seconds, usage.audit_expected) == ("day", 60.0, True)
    assert usage.period_us == PERIODS["day"]
    path.write_text("usage: {}\n")
    usage = load_config(path).usage
    assert (usage.period, usage.settle_seconds, usage.audit_expected) == ("hour", 300.0, False)


@pytest.mark.parametrize(("text", "key", "expected"), [
    ("usage: {period: week}", "usage.period", "one of hour, day"),
    ("usage: {settle_seconds: -1}", "usage.settle_seconds", "non-negative"),
    ("usage: {audit_expected: maybe}", "usage.audit_expected", "true or false"),
    ("usage: {settle: 5}", "usage.settle", "one of the known keys"),
])
def test_usage_config_errors_name_the_key(tmp_path: Path, text: str, key: str,
                                          expected: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (info.value.key, info.value.file) == (key, str(path))
    assert expected in info.value.expected
