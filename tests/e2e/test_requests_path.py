"""Request timelines, correlated errors and alerts on the real stack.

Simulated cloud traffic with failing requests of every kind the simulator knows (their
request ids and root causes are its ground truth), delivered reordered, late and twice,
plus every error sample of the corpus, go to Kafka; the jobs run; then every failing
request must be found with the right root cause, no other request may be marked failed,
every corpus error must be in ``errors`` with its exception and message, and every error
must have been alerted on ``<prefix>.alerts``. The readers are then run on these tables.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.wire import parse
from jobs.command import run_jobs
from jobs.requests import load_rules
from stacktide.config import Config
from stacktide.corpus import iter_samples
from stacktide.local.kafka import ensure_topics
from stacktide.readers.common import read
from stacktide.schema import Envelope
from stacktide.simulate.cloud import Params
from stacktide.simulate.delivery import Delivery
from stacktide.simulate.traffic import Traffic, generate
from tests.e2e.test_usage_path import envelopes, produce
from tests.helpers import isolated, read_topic

pytestmark = pytest.mark.stack

RECEIVED = datetime(2030, 1, 1, tzinfo=UTC)
RULES = load_rules()


def corpus_errors() -> list[Envelope]:
    out = []
    for sample in iter_samples():
        env = parse(sample.body, cell="corpus", exchange=sample.exchange,
                    routing_key=sample.routing_key, received=RECEIVED)
        if isinstance(env, Envelope) and RULES.is_error(env.event_type, env.priority):
            out.append(env)
    return out


@pytest.fixture(scope="module")
def landed(stack: Config) -> Iterator[tuple[Config, Traffic, list[Envelope]]]:
    """One run of the jobs over simulated traffic with failures and the corpus' errors."""
    config = isolated(stack, "requests")
    ensure_topics(config)
    traffic = generate(Params(seed=3, instances=24, hours=8), "both",
                       Delivery(3, reorder_window_s=30.0, delay_fraction=0.02,
                                delay_hours=(0.1, 0.3), duplicate_fraction=0.05),
                       failures=2)
    corpus = corpus_errors()
    produce(config, [*envelopes(traffic), *corpus])
    assert run_jobs(config, bounded=True, fresh=True)
    yield config, traffic, corpus


def test_every_failing_request_is_found_with_its_root_cause(
        landed: tuple[Config, Traffic, list[Envelope]]) -> None:
    config, traffic, _ = landed
    requests = {r["request_id"]: r for r in read(config, "requests")}
    errors = {r["message_id"]: r for r in read(config, "errors")}
    failing = traffic.truth["failing_requests"]
    kinds = {f["kind"] for f in failing}
    assert kinds == {"create_error", "no_valid_host", "compute_error", "volume_attach",
                     "port_failure"}, kinds
    for truth in failing:
        row = requests[truth["request_id"]]
        assert row["outcome"] == "error", (truth, row)
        assert row["root_cause_message_id"] == truth["root_cause_message_id"], (truth, row)
        root = errors[truth["root_cause_message_id"]]
        assert root["exception"] == truth["exception"] and root["message"], root
        for mid in truth["errors"]:
            assert errors[mid]["request_id"] == truth["request_id"]
            assert errors[mid]["root_cause_message_id"] == truth["root_cause_message_id"]
    # every simulated request has a row; none that did not fail is marked failed
    sent = {str(r.message["_context_request_id"]) for _, r in traffic.messages} - {"", "None"}
    assert sent <= set(requests)
    bad = {f["request_id"] for f in failing}
    wrong = [r for k, r in requests.items() if k in sent and k not in bad
             and r["outcome"] == "error"]
    assert not wrong, wrong[:3]
    assert sum(r["outcome"] == "ok" for k, r in requests.items() if k in sent) > 50


def test_cross_service_requests_join_through_the_global_id(
        landed: tuple[Config, Traffic, list[Envelope]]) -> None:
    config, traffic, _ = landed
    requests = {r["request_id"]: r for r in read(config, "requests")}
    for truth in traffic.truth["failing_requests"]:
        if truth["kind"] in ("volume_attach", "port_failure"):
            row = requests[truth["request_id"]]
            other = "cinder" if truth["kind"] == "volume_attach" else "network"
            assert any(s.startswith(("volume", other)) for s in row["services"]), row
            assert row["global_request_id"] == truth["request_id"]
            ops = {o["operation"]: o for o in row["operations"]}
            assert any(o["outcome"] == "error" for o in ops.values()), ops


def test_every_corpus_error_lands_with_exception_and_message(
        landed: tuple[Config, Traffic, list[Envelope]]) -> None:
    config, _, corpus = landed
    errors = {r["message_id"]: r for r in read(config, "errors")}
    assert {e.message_id for e in corpus} <= set(errors)
    for env in corpus:
        row = errors[env.message_id]
        assert row["event_type"] == env.event_type and row["cell"] == "corpus"
        if env.format == "versioned" or env.event_type == "compute.instance.create.error":
            assert row["exception"] and row["message"], row
        if "create.error" in env.event_type:
            assert row["message"] and row["code"] == "500", row


def test_every_error_is_alerted(landed: tuple[Config, Traffic, list[Envelope]]) -> None:
    config, _, _ = landed
    alerts: list[dict[str, Any]] = [json.loads(r.value) for r in read_topic(config, "alerts")]
    errors = read(config, "errors")
    assert {a["message_id"] for a in alerts} == {r["message_id"] for r in errors}
    sample = next(a for a in alerts if a["exception"] == "NoValidHost")
    assert sample["message"] and isinstance(sample["preceding"], list)
