"""The instance state machine: its rules file, what it reads from payloads, order-free folding."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.wire import parse
from jobs.lifecycle import (
    DEFAULT_RULES,
    END,
    InstanceState,
    Observation,
    apply,
    is_late,
    latest,
    load_rules,
    observe,
    to_us,
)
from jobs.usage import Book, compact, event_row, instance_row
from stacktide.corpus import NOTIGEN, iter_samples
from stacktide.errors import ConfigError
from stacktide.schema import Envelope
from stacktide.simulate.cloud import Params
from stacktide.simulate.traffic import generate
from tests.helpers import simulated_envelopes

RULES = load_rules()
NOW = datetime(2030, 1, 1, tzinfo=UTC)
HOUR = 3_600_000_000


def envelopes(fmt: str = "legacy", **params: object) -> list[Envelope]:
    return simulated_envelopes(generate(Params(**params), fmt), NOW)  # type: ignore[arg-type]


def fold(observations: list[Observation]) -> dict[tuple[str, str], InstanceState]:
    states: dict[tuple[str, str], InstanceState] = {}
    for obs in observations:
        key = (obs.cell, obs.instance_id)
        states[key] = apply(states.get(key) or InstanceState(*key), obs)
    return states


def observations(envs: list[Envelope]) -> list[Observation]:
    return [o for o in (observe(e, RULES) for e in envs) if o is not None]


# -- the rules file ------------------------------------------------------------------------------

def test_shipped_rules_map_nova_states_and_events() -> None:
    assert RULES.meaning("active").running and RULES.meaning("resized").running
    assert not RULES.meaning("stopped").running and RULES.meaning("stopped").exists
    assert not RULES.meaning("shelved_offloaded").exists
    assert not RULES.meaning("shelved_offloaded").audited
    assert RULES.meaning("no-such-state").power_state == "nostate"
    assert RULES.effect("compute.instance.exists").audit  # type: ignore[union-attr]
    assert "deleted_at" in RULES.effect("compute.instance.delete.end").sets  # type: ignore[union-attr]
    assert "deleted_at" not in RULES.effect("instance.soft_delete.end").sets  # type: ignore[union-attr]
    assert "flavor_id" in RULES.effect("compute.instance.finish_resize.end").sets  # type: ignore[union-attr]
    assert RULES.effect("compute.instance.exists.verified").sets == frozenset()  # type: ignore[union-attr]
    assert RULES.effect("scheduler.run_instance.start") is None


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lifecycle.yaml"
    path.write_text(text)
    return path


def rules_with(section: str, body: str) -> str:
    """The shipped file with one top-level section replaced by *body*."""
    shipped = DEFAULT_RULES.read_text()
    lines, out, skipping = shipped.splitlines(), [], False
    for line in lines:
        if line and not line.startswith((" ", "#")):
            skipping = line.startswith(f"{section}:")
            if skipping:
                out.append(body)
                continue
        if not skipping:
            out.append(line)
    return "\n".join(out) + "\n"


@pytest.mark.parametrize(
    ("section", "body", "key", "expected"),
    [
        ("events", "events:\n  compute.instance.update: {sets: [flavour]}",
         "events.compute.instance.update.sets", "a list of fields or groups"),
        ("events", "events:\n  compute.instance.update: {sets: [state], audit: true}",
         "events.compute.instance.update", "exactly one of sets"),
        ("events", "events:\n  compute.instance.update: {set: [state]}",
         "events.compute.instance.update.set", "one of the known keys"),
        ("events", "events:\n  compute.instance.exists: {audit: yes please}",
         "events.compute.instance.exists.audit", "true or false"),
        ("events", "events: {}", "events", "a non-empty mapping"),
        ("states", "states:\n  active: {running: 1}", "states.active.running", "true or false"),
        ("states", "states:\n  active: {billed: true}", "states.active.billed", "one of the known keys"),
        ("groups", "groups:\n  snapshot: [state, colour]", "groups.snapshot", "a list of fields"),
        ("fields", "fields:\n  legacy: {colour: [a]}", "fields.legacy.colour", "one of the known keys"),
        ("fields", "fields:\n  legacy: {state: state}", "fields.legacy.state", "a list"),
        ("fields", "fields:\n  yaml: {state: [state]}", "fields.yaml", "one of the known keys"),
    ],
)
def test_bad_entry_names_file_entry_and_expectation(tmp_path: Path, section: str, body: str,
                                                    key: str, expected: str) -> None:
    path = write(tmp_path, rules_with(section, body))
    with pytest.raises(ConfigError) as info:
        load_rules(path)
    assert (info.value.file, info.value.key) == (str(path), key)
    assert expected in info.value.expected


@pytest.mark.parametrize(("text", "key"), [("[1, 2]", "(top level)"), ("states: {a: [\n", "(file)"),
                                           ("colour: red", "colour")])
def test_unreadable_rules_are_config_errors(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_rules(write(tmp_path, text))
    assert info.value.key == key


def test_missing_rules_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="readable YAML"):
        load_rules(tmp_path / "absent.yaml")


# -- reading payloads --------------------------------------------------------------------------------

def test_times_are_exact_microseconds_in_utc() -> None:
    assert to_us("2014-03-10 21:41:04.833356") == 1394487664833356
    assert to_us("2014-03-10T21:41:04Z") == 1394487664000000
    assert to_us("2014-03-10T22:41:04.000001+01:00") == 1394487664000001
    assert to_us("") is None and to_us(None) is None and to_us("soon") is None


def test_legacy_and_versioned_snapshots_read_the_same_instance() -> None:
    legacy = observations(envelopes("legacy", instances=1, hours=6, seed=3))
    versioned = observations(envelopes("versioned", instances=1, hours=6, seed=3))
    end = next(o for o in legacy if o.event_type == "compute.instance.create.end")
    vend = next(o for o in versioned if o.event_type == "instance.create.end")
    assert end.values["state"] == vend.values["state"] == "active"
    assert end.values["flavor_id"] == vend.values["flavor_id"]
    assert end.values["instance_type_id"] is not None and "instance_type_id" not in vend.values
    assert end.values["launched_at"] // 1_000_000 == vend.values["launched_at"] // 1_000_000
    assert vend.values["launched_at"] % 1_000_000 == 0  # versioned payloads: whole seconds
    assert end.values["os_distro"].startswith("org.") and "os_distro" not in vend.values
    update = [o for o in legacy if o.event_type == "compute.instance.update"][1]
    assert update.values["old_state"] == "building" and "task_state" in update.values


def test_events_about_no_instance_or_no_rule_are_not_observed() -> None:
    env = envelopes(instances=1, hours=2)[0]
    assert observe(env, RULES) is not None
    assert observe(replace(env, instance_id=None), RULES) is None
    assert observe(replace(env, event_type="scheduler.run_instance.start"), RULES) is None
    assert observe(replace(env, payload=["not", "a", "dict"]), RULES) is None


# -- folding ---------------------------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), shuffle=st.randoms(use_true_random=False),
       dup=st.floats(0, 0.5))
def test_any_order_and_any_duplication_give_the_same_state(seed: int, shuffle: random.Random,
                                                           dup: float) -> None:
    obs = observations(envelopes("legacy", instances=3, hours=12, seed=seed))
    delivered = obs + [o for o in obs if shuffle.random() < dup]
    shuffle.shuffle(delivered)
    assert fold(delivered) == fold(obs)


def test_apply_is_idempotent_and_ignores_audits() -> None:
    obs = observations(envelopes(instances=1, hours=4, seed=7))
    state = fold(obs)
    (_key, final), = state.items()
    for o in obs:
        assert apply(final, o) == final
    audit = [o for o in obs if o.effect.audit]
    assert audit and all(apply(final, a) is final for a in audit)


def test_events_before_the_compacted_horizon_are_refused() -> None:
    obs = [o for o in observations(envelopes(instances=1, hours=8, seed=11)) if not o.effect.audit]
    state = fold(obs[:-1])[(obs[0].cell, obs[0].instance_id)]
    horizon = obs[-1].at - obs[-1].at % HOUR + HOUR
    small, _book = compact(state, Book(emitted_until=horizon), HOUR, horizon)
    early = obs[0]
    assert is_late(small, early) and apply(small, early) is small
    assert len(small.samples) < len(state.samples) and small.samples[0].key == -1
    assert latest(small, END, lambda s: s.state) == latest(state, END, lambda s: s.state)


def test_notigen_corpus_folds_through_the_state_machine() -> None:
    states: dict[tuple[str, str], InstanceState] = {}
    folded = 0
    for sample in iter_samples():
        if not sample.source.startswith(NOTIGEN):
            continue
        env = parse(sample.body, cell="c1", exchange=sample.exchange,
                    routing_key=sample.routing_key, received=NOW)
        assert isinstance(env, Envelope)
        obs = observe(env, RULES)
        if obs is None:
            assert not env.event_type.startswith("compute.instance"), env.event_type
            continue
        key = (env.cell, str(env.instance_id))
        states[key] = apply(states.get(key) or InstanceState(*key), obs)
        folded += 1
    assert folded > 250
    by_state = {instance_row(s, RULES)["state"] for s in states.values()}
    assert {"active", "deleted", "rescued", "resized", "error", "stopped"} <= by_state
    deleted = [s for s in states.values() if instance_row(s, RULES)["state"] == "deleted"]
    assert all(s.deleted_at is not None and s.first_launched is not None for s in deleted)
    resized = [instance_row(s, RULES) for s in states.values()
               if instance_row(s, RULES)["state"] == "resized"]
    assert resized[0]["flavor_id"] == "7" and resized[0]["power_state"] == "running"


def test_instance_and_history_rows() -> None:
    obs = observations(envelopes("versioned", instances=1, hours=3, seed=5))
    state = fold(obs)[(obs[0].cell, obs[0].instance_id)]
    row = instance_row(state, RULES)
    assert row["state"] == "active" and row["power_state"] == "running"  # versioned power_state
    assert row["launched_at"] is not None and row["flavor_id"] and row["tenant_id"]
    assert row["last_event_type"].startswith("instance.")
    history = [event_row(o) for o in obs]
    assert all(h is None for h, o in zip(history, obs, strict=True) if o.effect.audit)
    update = next(h for h in history if h and h["event_type"] == "instance.update")
    assert update["old_state"] == "building" and update["at"].tzinfo is not None
    assert json.dumps(update, default=str)
