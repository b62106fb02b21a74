"""The JVM's request job (jvm/operators, ``stacktide.requests``) against the Python functions
it ports (jobs/requests.py, jobs/request_state.py), which stay the definition: the text it
writes (Python's ``json.dumps`` and float ``repr``), fnmatch patterns, every corpus
notification observed alike (faults included), and simulated clouds with failing requests,
reordered, late and repeated, driven through both to the same rows, alerts and kept keys.

tests/jvm/RequestCheck.java answers the queries in one JVM; each query is a JSON line.
"""

from __future__ import annotations

import fnmatch
import json
import math
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobs import requests as rq
from jobs.request_state import OUTPUTS, RequestFunction, Timing
from stacktide.corpus import iter_samples
from stacktide.schema import Envelope, time_us
from stacktide.simulate.cloud import Params
from stacktide.simulate.delivery import Delivery
from stacktide.simulate.traffic import generate
from tests.helpers import envelopes
from tests.jobs.keyed_driver import Ask, Driver, corpus_envelopes, java_harness, plan

RULES = rq.load_rules()
RECEIVED = datetime(2030, 1, 1, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def jvm(tmp_path_factory: pytest.TempPathFactory) -> Ask:
    tmp = tmp_path_factory.mktemp("jvm-requests")
    (rules := tmp / "rules.json").write_text(json.dumps(rq.rules_document(RULES)))
    return java_harness(tmp, "RequestCheck", [str(rules)])


def row(env: Envelope) -> tuple[Any, ...]:
    """*env* as sql/request_notifications.sql hands it over: text columns, the payload as JSON
    for errors only."""
    payload = json.dumps(env.payload) if RULES.is_error(env.event_type, env.priority) else None
    return (env.message_id, env.cell, env.event_type, env.priority, env.service, env.host,
            env.generated, env.request_id, env.global_request_id, env.instance_id,
            env.tenant_id, payload)


def passes(env: Envelope) -> bool:
    """The SQL's filter: a notification of a request, or an error."""
    return bool(env.request_id or env.global_request_id) or RULES.is_error(env.event_type,
                                                                           env.priority)


def key(env: Envelope) -> str:
    return rq.group_key(env.global_request_id, env.request_id) or f"message:{env.message_id}"


def test_floats_are_written_as_python_repr_writes_them(jvm: Ask) -> None:
    rng = random.Random(3)
    values = [0.0, -0.0, 1.0, 0.1, 1e-4, 1e-5, 1.5e-5, 123.456, 1e15, 1e16, 1.2345e16, 1e22,
              1e23, 5e-324, 1.7976931348623157e308, 2**53 + 0.0, 0.3, 2 / 3, -1e-7]
    values += [n / 1e6 for n in (1, 7, 999, 1_000_001, 86_399_999_999, 3_600_000_123)]
    values += [rng.uniform(-1, 1) * 10 ** rng.randint(-30, 30) for _ in range(2000)]
    values += [rng.randint(0, 10**9) / 1e6 for _ in range(2000)]
    got = jvm([{"repr": v} for v in values])
    assert got == [repr(v) for v in values]
    assert all(math.isfinite(v) for v in values)


def test_json_text_is_python_json_dumps(jvm: Any) -> None:
    """Every corpus payload, and strings with what json.dumps escapes, sorted keys."""
    values: list[Any] = [s.body for s in iter_samples()]
    values = [json.loads(v) for v in values]
    values += ["quote \" back \\ slash / tab \t nl \n cr \r bell \x07 del \x7f é ü ∑ 😀",
               {"b": 1, "a": [True, False, None, 1.5, -2, 10**20], "é": {"z": "", "y": {}}},
               [], {}, 1e-7, "", "\u2028"]
    got = jvm([{"dumps": v} for v in values])
    assert len(values) > 50
    assert got == [json.dumps(v, sort_keys=True) for v in values]


def test_fnmatch_patterns_match_as_fnmatchcase(jvm: Ask) -> None:
    patterns = ["*.error", "compute.exception", "*.exception", "a?c", "[ab]*", "[!ab]*",
                "x[a-c]y", "x[!a-c]y", "[]]", "[!]]z", "[", "a[b", "*.[e]rror", "a.b+c(d)",
                "Build of instance * was re-scheduled: *", "*[*]*", "^$", "[-a]", "[a-]"]
    names = ["compute.instance.create.error", "compute.exception", "x.exception", "abc", "a.c",
             "bcd", "cde", "xby", "xdy", "]", "]z", "[", "a[b", "a.b+c(d)", "ERROR.error",
             "Build of instance 1 was re-scheduled: no", "a*b", "^$", "-", "a", "", "x\ny"]
    queries = [(p, n) for p in patterns for n in names]
    got = jvm([{"match": [p, n]} for p, n in queries])
    want = [fnmatch.fnmatchcase(n, p) for p, n in queries]
    assert got == want and sum(want) > 20


def corpus() -> list[Envelope]:
    return corpus_envelopes(RECEIVED)


def observed(env: Envelope) -> dict[str, Any]:
    payload = json.loads(row(env)[11]) if row(env)[11] else None
    e = rq.observe(Envelope(env.message_id, env.cell, "", "", env.priority or "", env.event_type,
                            None, env.service, env.host, env.generated, "", env.request_id,
                            env.global_request_id, env.tenant_id, None, env.instance_id,
                            "legacy", payload), RULES)
    return {"message_id": e.message_id, "at": e.at, "priority": e.priority,
            "fault": None if e.fault is None else [e.fault.exception, e.fault.message,
                                                   e.fault.code]}


def test_every_corpus_notification_is_observed_alike(jvm: Ask) -> None:
    items = corpus()
    got = jvm([{"row": list(row(env))} for env in items])
    want = [observed(env) for env in items]
    assert sum(w["fault"] is not None for w in want) >= 20
    assert got == want


def test_faults_of_every_form_are_read_alike(jvm: Ask) -> None:
    """Payload shapes beyond the corpus: kwargs in both holders, codes absent, null and
    nested, a message matched by a legacy pattern, payloads that are no object."""
    payloads: list[Any] = [
        {"exception": {"kwargs": {"reason": "No valid host was found. x", "code": 500}},
         "reason": {"kwargs": {"reason": "other", "exc_type": "Foo", "value": 3}}},
        {"reason": {"kwargs": {"value": {"b": [1, 2.5], "a": None}}}, "code": None},
        {"message": "", "reason": "Exceeded max scheduling attempts 3", "exception": ""},
        {"nova_object.data": {"fault": {"nova_object.data": {"exception": "E",
                                                             "exception_message": 7}},
                              "code": 404}},
        {"nova_object.data": "not an object"}, "a string payload", [1, 2], None, 12.5,
        {"exception_message": "only this"}, {"exception": {"kwargs": []}, "message": 0},
        {"reason": {"exception": "X", "exception_message": None}, "code": "E1"},
    ]
    base = corpus()[0]
    items = [Envelope(f"m{i}", "c", "", "", "error", "compute.instance.create.error", None,
                      "compute", "h", base.generated, "", "r", None, "t", None, "i", "legacy", p)
             for i, p in enumerate(payloads)]
    got = jvm([{"row": list(row(env))} for env in items])
    assert got == [observed(env) for env in items]


def plain(record: dict[str, Any]) -> dict[str, Any]:
    return {k: (v - EPOCH) // timedelta(microseconds=1) if isinstance(v, datetime) else v
            for k, v in record.items()}


def driven(items: list[Envelope], timing: Timing, base: int, newest: int
           ) -> tuple[Driver, list[tuple[str, Any]], list[Any], list[Any]]:
    driver = Driver(RequestFunction(timing, base=base), newest)
    steps = plan(items, lambda env: time_us(env.generated))
    rows, alerts = [], []
    for kind, value in steps:
        if kind == "w":
            driver.advance(value)
        elif passes(value):
            driver.element(key(value), row(value))
    for out in driver.rows:
        if isinstance(out[0], str):
            rows.append([out[0], plain(out[1])])
        else:
            alerts.append([out[1][0], json.loads(out[1][1])])
    return driver, steps, rows, alerts


@pytest.mark.parametrize("fmt", ["legacy", "both"])
def test_the_jobs_logic_emits_the_same_rows_and_alerts(jvm: Ask, fmt: str) -> None:
    """Timelines, operations, correlated errors and their revisions, alerts, closing by the
    inactivity timeout and clearing after the lateness: the same from both, driven alike."""
    traffic = generate(Params(seed=8, instances=40, hours=10), fmt,
                       Delivery(8, reorder_window_s=120.0, delay_fraction=0.03,
                                delay_hours=(0.5, 3.0), duplicate_fraction=0.05), failures=2)
    items = envelopes(traffic)
    newest = max(time_us(e.generated) for e in items)
    timing = Timing(60_000_000, RULES.timeout_us, 3 * 3600_000_000)
    driver, steps, want, alerts = driven(items, timing, 7, newest)
    tables = Counter(name for name, _ in want)
    assert min(tables[t] for t in OUTPUTS) > 0 and driver.counts["duplicates"] > 0, (
        tables, driver.counts)
    assert any(r["revision"] > 7 for n, r in want if n == "errors")  # an error correlated again
    assert {r["outcome"] for n, r in want if n == "requests"} >= {"open", "ok", "error"}
    got, = jvm([{"drive": [["e", key(v), list(row(v))] if k == "e" and passes(v) else
                           ["w", v] for k, v in steps if k == "w" or passes(v)],
                 "out_of_order": timing.out_of_order, "lateness": timing.lateness,
                 "base": 7, "newest": newest}])
    assert got["duplicates"] == driver.counts["duplicates"]
    assert set(got["kept"]) == set(driver.stored)
    assert len(alerts) == driver.counts["alerts"] > 0
    dump = json.dumps
    assert sorted(map(dump, got["rows"])) == sorted(map(dump, want))
    assert sorted(map(dump, got["alerts"])) == sorted(map(dump, alerts))


def test_the_harness_can_tell_a_difference(jvm: Ask) -> None:
    """Rows that differ are seen as different: another first revision changes every row."""
    traffic = generate(Params(seed=4, instances=5, hours=3), "legacy", failures=1)
    items = envelopes(traffic)
    newest = max(time_us(e.generated) for e in items)
    timing = Timing(60_000_000, RULES.timeout_us, 3600_000_000)
    _, steps, want, _ = driven(items, timing, 0, newest)
    query = {"drive": [["e", key(v), list(row(v))] if k == "e" else ["w", v]
                       for k, v in steps if k == "w" or passes(v)],
             "out_of_order": timing.out_of_order, "lateness": timing.lateness, "newest": newest}
    same, other = jvm([{**query, "base": 0}, {**query, "base": 1}])
    dump = json.dumps
    assert want and sorted(map(dump, same["rows"])) == sorted(map(dump, want))
    assert sorted(map(dump, other["rows"])) != sorted(map(dump, want))
