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
from pathlib import Path
from typing import Any

import pytest

from connectors.wire import parse
from jobs.command import run_jobs
from jobs.requests import load_rules
from stacktide.cli import main
from stacktide.config import Config
from stacktide.corpus import iter_samples
from stacktide.local.kafka import ensure_topics
from stacktide.readers.common import read
from stacktide.schema import Envelope
from stacktide.simulate.cloud import Params
from stacktide.simulate.delivery import Delivery
from stacktide.simulate.traffic import Traffic, generate
from tests.helpers import envelopes, isolated, produce, read_topic, write_config

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
    # a request is keyed by the global id where there is one (cinder's, neutron's own ids not)
    sent = {str(r.message.get("_context_global_request_id") or r.message["_context_request_id"])
            for _, r in traffic.messages} - {"", "None"}
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
        if env.format == "legacy" and "create.error" in env.event_type:  # notigen's
            assert row["message"] and row["code"] == "500", row


def test_every_error_is_alerted(landed: tuple[Config, Traffic, list[Envelope]]) -> None:
    config, _, _ = landed
    alerts: list[dict[str, Any]] = [json.loads(r.value) for r in read_topic(config, "alerts")]
    errors = read(config, "errors")
    assert {a["message_id"] for a in alerts} == {r["message_id"] for r in errors}
    sample = next(a for a in alerts if a["exception"] == "NoValidHost")
    assert sample["message"] and isinstance(sample["preceding"], list)


# -- the readers, on the tables the run above wrote --------------------------------------------

def stacktide(landed: tuple[Config, Traffic, list[Envelope]], tmp_path: Path,
              capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    config = landed[0]
    code = main(["--config", str(write_config(config, tmp_path / "stacktide.yaml")), *argv])
    return code, capsys.readouterr().out


def failing(traffic: Traffic, kind: str) -> dict[str, Any]:
    return next(f for f in traffic.truth["failing_requests"] if f["kind"] == kind)


def test_reader_request_shows_the_timeline_and_the_root_cause(
        landed: tuple[Config, Traffic, list[Envelope]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    truth = failing(landed[1], "port_failure")
    code, out = stacktide(landed, tmp_path, capsys, "request", truth["request_id"],
                          "--output", "json")
    found = json.loads(out)
    assert code == 0 and found["request"]["outcome"] == "error"
    assert {e["message_id"] for e in found["events"]} >= set(truth["errors"])
    assert [e["offset_s"] for e in found["events"]] == sorted(e["offset_s"] for e in found["events"])
    assert found["events"][0]["offset_s"] == 0.0
    assert any(e["event_type"].startswith("port.") for e in found["events"])
    root = [e for e in found["errors"] if e["message_id"] == e["root_cause_message_id"]]
    assert [e["exception"] for e in root] == ["PortBindingFailed"]
    code, text = stacktide(landed, tmp_path, capsys, "request", truth["request_id"])
    assert code == 0 and "root cause" in text and "PortBindingFailed" in text


def test_reader_uuid_lists_an_instance_history(
        landed: tuple[Config, Traffic, list[Envelope]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    traffic = landed[1]
    instance = traffic.truth["instances"][0]["instance_id"]
    sent = {r.message_id for _, r in traffic.messages if r.instance_id == instance}
    code, out = stacktide(landed, tmp_path, capsys, "uuid", instance, "--output", "json")
    events = json.loads(out)["events"]
    assert code == 0 and {e["message_id"] for e in events} == sent
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
    first = events[len(events) // 2]["at"]
    code, out = stacktide(landed, tmp_path, capsys, "uuid", instance, "--since", first,
                          "--output", "json")
    assert {e["message_id"] for e in json.loads(out)["events"]} == {
        e["message_id"] for e in events if e["at"] >= first}
    code, _ = stacktide(landed, tmp_path, capsys, "uuid", instance, "--cell", "nowhere")
    assert code == 1


def test_reader_timings_and_its_plot(
        landed: tuple[Config, Traffic, list[Envelope]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    config = landed[0]
    png = tmp_path / "timings.png"
    code, out = stacktide(landed, tmp_path, capsys, "timings", "--output", "json",
                          "--plot", str(png))
    rows = {r["operation"]: r for r in json.loads(out)}
    assert code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # recomputed from the table's operations: the reader adds nothing of its own
    durations = [o["duration_s"] for r in read(config, "requests") for o in r["operations"]
                 if o["operation"] == "compute.instance.create" and o["duration_s"] is not None]
    create = rows["compute.instance.create"]
    assert create["n"] == len(durations) and create["max_s"] == max(durations)
    assert create["min_s"] <= create["avg_s"] <= create["p97_s"] <= create["max_s"]
    code, out = stacktide(landed, tmp_path, capsys, "timings", "compute.instance.create",
                          "--cell", "cell2", "--output", "json")
    [only] = json.loads(out)
    assert only["operation"] == "compute.instance.create" and 0 < only["n"] < create["n"]


def test_reader_errors_groups_by_masked_message(
        landed: tuple[Config, Traffic, list[Envelope]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    config = landed[0]
    code, out = stacktide(landed, tmp_path, capsys, "errors", "--output", "json",
                          "--limit", "1000")
    groups = json.loads(out)
    assert code == 0 and sum(g["n"] for g in groups) == len(read(config, "errors"))
    ports = [g for g in groups if g["exception"] == "PortBindingFailed"]
    assert [g["masked_message"] for g in ports] == [
        "Binding failed for port UUID, please check neutron logs for more information."]
    assert ports[0]["n"] == 2  # one per simulated port failure, whatever their port ids
    code, out = stacktide(landed, tmp_path, capsys, "errors", "--list", "--cell", "corpus",
                          "--output", "json", "--limit", "1000")
    assert {r["cell"] for r in json.loads(out)} == {"corpus"}


def test_reader_kpi_and_its_plot(
        landed: tuple[Config, Traffic, list[Envelope]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "kpi.png"
    code, out = stacktide(landed, tmp_path, capsys, "kpi", "--output", "json", "--slow", "30",
                          "--plot", str(png))
    found = json.loads(out)
    assert code == 0 and png.stat().st_size > 1000
    ops = {r["operation"]: r for r in found["operations"]}
    create = ops["compute.instance.create"]
    assert 0 < create["success_ratio"] < 1  # the simulated create errors fail some
    assert create["p50_s"] <= create["p90_s"] <= create["p97_s"] <= create["max_s"]
    assert all(r["duration_s"] > 30 for r in found["slow_requests"])
    code, out = stacktide(landed, tmp_path, capsys, "kpi", "--by", "image", "--output", "json")
    images = json.loads(out)["operations"]
    assert any(r["image"] for r in images)
    assert sum(r["n"] for r in images if r["operation"] == "compute.instance.create") == \
        create["n"]
    code, text = stacktide(landed, tmp_path, capsys, "kpi", "--by", "hour")
    assert code == 0 and "operations by hour" in text
