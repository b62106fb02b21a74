"""Request timelines and correlated errors: rules file, fault extraction, order-free folding."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.wire import parse
from jobs.requests import (
    Event,
    Fault,
    Timeline,
    error_rows,
    fault_of,
    group_key,
    load_rules,
    observe,
    operations,
    request_row,
)
from stacktide.corpus import iter_samples
from stacktide.errors import ConfigError
from stacktide.schema import Envelope

RULES = load_rules()
S = 1_000_000
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def ev(n: int, at_s: float, event_type: str, *, instance: str | None = "i1",
       service: str = "compute", priority: str = "info", fault: Fault | None = None,
       request: str | None = "req-1", global_request: str | None = None) -> Event:
    if fault is None and RULES.is_error(event_type, priority):
        fault = Fault("X", "boom", None)
    return Event(f"m{n:03d}", int(at_s * S), "cell1", event_type, priority, service,
                 f"host{n % 3}", request, global_request, instance, "t1", fault)


# A create that fails in compute after scheduling, with neutron (another request id,
# the caller's as global id) allocating a port meanwhile.
FAILED_CREATE = [
    ev(0, 0.0, "compute.instance.update", service="api"),
    ev(1, 0.5, "scheduler.select_destinations.start", instance=None, service="scheduler"),
    ev(2, 0.9, "scheduler.select_destinations.end", instance=None, service="scheduler"),
    ev(3, 1.2, "compute.instance.create.start"),
    ev(4, 1.5, "port.create.start", instance=None, service="network", request="req-n",
       global_request="req-1"),
    ev(5, 1.7, "port.create.end", instance=None, service="network", request="req-n",
       global_request="req-1"),
    ev(6, 4.0, "compute.instance.create.error", priority="error",
       fault=Fault("BuildAbortException", "Build of instance i1 aborted", "500")),
    ev(7, 4.2, "compute.instance.update"),
]


def timeline(events: list[Event]) -> Timeline:
    t = Timeline("req-1")
    for e in events:
        t.add(e)
    return t


def test_rules_file_is_checked(tmp_path: Path) -> None:
    assert RULES.timeout_us == 900 * S and RULES.is_error("instance.create.error", "info")
    assert RULES.is_error("scheduler.run_instance", "ERROR")
    assert not RULES.is_error("compute.instance.create.end", "info")
    bad = tmp_path / "requests.yaml"
    bad.write_text("inactivity_timeout_s: 0\n")
    with pytest.raises(ConfigError, match="inactivity_timeout_s: expected a positive"):
        load_rules(bad)
    bad.write_text("error_priority: [error]\n")
    with pytest.raises(ConfigError, match=r"requests.yaml: error_priority: expected one of"):
        load_rules(bad)


def test_group_key_joins_services_through_the_global_id() -> None:
    assert group_key("req-1", "req-n") == "req-1"
    assert group_key(None, "req-n") == "req-n"
    assert group_key("", "") is None


def test_a_failed_create_pairs_operations_and_names_its_root_cause() -> None:
    t = timeline(FAILED_CREATE)
    row = request_row(t, RULES, closed=False)
    assert row is not None
    assert row["outcome"] == "error" and row["root_cause_message_id"] == "m006"
    assert row["event_count"] == 8 and row["error_count"] == 1
    assert json.loads(row["services"]) == ["api", "compute", "network", "scheduler"]
    ops = {o["operation"]: o for o in json.loads(row["operations"])}
    assert ops["compute.instance.create"]["outcome"] == "error"
    assert ops["compute.instance.create"]["duration_s"] == pytest.approx(2.8)
    assert ops["scheduler.select_destinations"]["duration_s"] == pytest.approx(0.4)
    assert ops["port.create"]["outcome"] == "ok"
    [err] = error_rows(t, RULES)
    assert (err["exception"], err["message"], err["code"]) == (
        "BuildAbortException", "Build of instance i1 aborted", "500")
    assert [p["message_id"] for p in json.loads(err["preceding"])] == [
        "m000", "m001", "m002", "m003", "m004", "m005"]
    assert err["request_id"] == "req-1" and err["root_cause_message_id"] == "m006"


def test_open_until_the_operations_end_then_ok() -> None:
    ok = [ev(0, 0, "compute.instance.update", service="api"),
          ev(1, 1, "compute.instance.reboot.start")]
    assert request_row(timeline(ok), RULES, closed=False)["outcome"] == "open"  # type: ignore[index]
    done = timeline([*ok, ev(2, 5, "compute.instance.reboot.end")])
    assert request_row(done, RULES, closed=False)["outcome"] == "ok"  # type: ignore[index]
    # closed by the inactivity timeout with an operation never ended: not a failure
    row = request_row(timeline(ok), RULES, closed=True)
    assert row is not None and row["outcome"] == "ok"
    assert json.loads(row["operations"])[0]["outcome"] == "unfinished"


def test_a_repeated_start_restarts_the_operation_and_instances_pair_apart() -> None:
    ops = operations([ev(0, 0, "compute.instance.resize.start"),
                      ev(1, 3, "compute.instance.resize.start"),
                      ev(2, 4, "compute.instance.resize.end"),
                      ev(3, 1, "compute.instance.create.start", instance="i2"),
                      ev(4, 2, "compute.instance.create.start", instance="i3"),
                      ev(5, 9, "compute.instance.create.end", instance="i2")], RULES, False)
    got = {(o.operation, o.instance_id): (o.start, o.end, o.outcome) for o in ops}
    assert got == {("compute.instance.resize", "i1"): (3 * S, 4 * S, "ok"),
                   ("compute.instance.create", "i2"): (1 * S, 9 * S, "ok"),
                   ("compute.instance.create", "i3"): (2 * S, None, "open")}


def test_an_error_arriving_first_is_correlated_when_the_rest_arrives() -> None:
    early = timeline([FAILED_CREATE[6]])
    [alone] = error_rows(early, RULES)
    assert json.loads(alone["preceding"]) == []
    for e in FAILED_CREATE:
        early.add(e)
    [later] = error_rows(early, RULES)
    assert len(json.loads(later["preceding"])) == 6


def test_the_first_error_is_the_root_cause_of_every_later_one() -> None:
    events = [*FAILED_CREATE,
              ev(8, 5.0, "compute_task.build_instances.error", priority="error",
                 service="conductor", fault=Fault("NoValidHost", "No valid host", None))]
    rows = error_rows(timeline(events), RULES)
    assert {r["message_id"]: r["root_cause_message_id"] for r in rows} == {
        "m006": "m006", "m008": "m006"}


@settings(max_examples=200, deadline=None)
@given(st.permutations(FAILED_CREATE), st.lists(st.integers(0, len(FAILED_CREATE) - 1),
                                                  max_size=4), st.booleans())
def test_rows_do_not_depend_on_arrival_order_or_redelivery(
        order: list[Event], again: list[int], closed: bool) -> None:
    t = timeline(order)
    for i in again:
        assert not t.add(order[i])
    reference = timeline(FAILED_CREATE)
    assert request_row(t, RULES, closed) == request_row(reference, RULES, closed)
    assert error_rows(t, RULES) == error_rows(reference, RULES)


def corpus_errors() -> list[Envelope]:
    out = []
    for sample in iter_samples():
        env = parse(sample.body, cell="cell1", exchange=sample.exchange,
                    routing_key=sample.routing_key, received=NOW)
        if isinstance(env, Envelope) and RULES.is_error(env.event_type, env.priority):
            out.append(env)
    return out


def test_every_corpus_error_gives_its_exception_and_message() -> None:
    errors = corpus_errors()
    versioned = [e for e in errors if e.format == "versioned"]
    assert len(versioned) >= 12
    for env in versioned:
        fault = observe(env, RULES).fault
        assert fault is not None and fault.exception and fault.message, (env.event_type, fault)
    creates = [e for e in errors if e.format == "legacy" and "create.error" in e.event_type]
    assert creates
    for env in creates:
        fault = fault_of(env.payload, RULES)
        assert fault.message and fault.code == "500", fault
        if env.event_type == "compute.instance.create.error":
            assert fault.exception == "RescheduledException"


def test_legacy_scheduler_failure_is_no_valid_host() -> None:
    payload = {"reason": {"kwargs": {"reason": "Exceeded max scheduling attempts 3 for "
                                     "instance 1b2c", "code": 500}}, "method": "run_instance"}
    assert fault_of(payload, RULES) == Fault(
        "NoValidHost", "Exceeded max scheduling attempts 3 for instance 1b2c", "500")


def test_the_simulated_failures_fold_to_their_ground_truth() -> None:
    """Every failing request the simulator knows is an error with its root cause; every other
    simulated request is not, whatever the delivery order and repetition."""
    from stacktide.simulate.cloud import Params
    from stacktide.simulate.delivery import Delivery
    from stacktide.simulate.traffic import generate

    traffic = generate(Params(seed=9, instances=40, hours=6), "both",
                       Delivery(9, reorder_window_s=60.0, duplicate_fraction=0.1), failures=1)
    timelines: dict[str, Timeline] = {}
    for _, r in traffic.messages:
        m = r.captured()
        env = parse(m.body_bytes(), cell=m.cell, exchange=m.exchange,
                    routing_key=m.routing_key, received=NOW)
        assert isinstance(env, Envelope)
        key = group_key(env.global_request_id, env.request_id) or env.message_id
        timelines.setdefault(key, Timeline(key)).add(observe(env, RULES))
    failing = {f["request_id"]: f for f in traffic.truth["failing_requests"]}
    assert {f["kind"] for f in failing.values()} >= {
        "no_valid_host", "compute_error", "volume_attach", "port_failure"}
    for key, t in timelines.items():
        row = request_row(t, RULES, closed=True)
        assert row is not None
        if key in failing:
            assert row["outcome"] == "error"
            assert row["root_cause_message_id"] == failing[key]["root_cause_message_id"]
            root = next(e for e in error_rows(t, RULES)
                        if e["message_id"] == row["root_cause_message_id"])
            assert root["exception"] == failing[key]["exception"]
        else:
            assert row["outcome"] == "ok", row
