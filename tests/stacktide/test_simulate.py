"""The cloud simulator: realistic, repeatable, fast, and its truth consistent with its traffic."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.wire import parse
from jobs.lifecycle import to_us
from stacktide.config import Config, load_config
from stacktide.corpus import iter_samples
from stacktide.errors import StacktideError
from stacktide.schema import CapturedMessage, Envelope
from stacktide.simulate import command
from stacktide.simulate.cloud import QUIET, Params
from stacktide.simulate.delivery import Delivery, deliver
from stacktide.simulate.traffic import generate

NOW = datetime(2030, 1, 1, tzinfo=UTC)
HOUR = 3_600_000_000
S = 1_000_000


@pytest.fixture(scope="module")
def cloud() -> object:
    return generate(Params(seed=1, instances=200, hours=72), "legacy")


def test_two_hundred_instances_over_three_days_make_a_capture() -> None:
    traffic = generate(Params(seed=2, instances=200, hours=72), "legacy",
                       Delivery(2, 30, 0.02, (1, 6), 0.02))
    lines = [r.captured().to_line() for _, r in traffic.messages]
    assert len(lines) > 8000 and all(line.endswith("}") for line in lines)


def test_same_seed_same_bytes_other_seed_other_traffic() -> None:
    def lines(seed: int) -> list[str]:
        t = generate(Params(seed=seed, instances=5, hours=6), "both", Delivery(seed, 5, 0.1))
        return [r.captured().to_line() for _, r in t.messages]

    assert lines(4) == lines(4)
    assert lines(4) != lines(5)


@pytest.mark.parametrize(("fmt", "envelope"), [("legacy", "2.0"), ("versioned", "1.0"),
                                               ("both", "2.0")])
def test_every_message_parses_as_a_nova_notification(fmt: str, envelope: str) -> None:
    traffic = generate(Params(seed=3, instances=12, hours=12, cells=("east", "west")), fmt)
    formats = Counter()
    for _, r in traffic.messages:
        m = CapturedMessage.from_line(r.captured(envelope).to_line())
        assert ("oslo.version" in m.body) == (envelope == "2.0")
        env = parse(m.body_bytes(), cell=m.cell, exchange=m.exchange, routing_key=m.routing_key,
                    received=NOW)
        assert isinstance(env, Envelope), env
        assert env.instance_id == r.instance_id and env.cell in ("east", "west")
        assert m.routing_key.startswith("versioned_" if env.format == "versioned" else "notif")
        assert env.generated.endswith("Z") and to_us(env.generated) == r.at
        assert "_context_auth_token" not in json.dumps(env.payload)
        formats[env.format] += 1
    assert set(formats) == ({"legacy", "versioned"} if fmt == "both" else {fmt})


def test_payloads_carry_every_field_the_corpus_samples_do() -> None:
    corpus: dict[str, set[str]] = {}
    for s in iter_samples(envelope="1.0"):
        msg = json.loads(s.body)
        payload = msg["payload"]
        if s.source.startswith("legacy/stacktach-notigen"):
            corpus.setdefault(msg["event_type"], set()).update(payload)
        elif s.fmt == "versioned" and s.event_type.startswith("instance."):
            corpus.setdefault(msg["event_type"], set()).update(payload["nova_object.data"])
    ours: dict[str, set[str]] = {}
    for _, r in generate(Params(seed=6, instances=80, hours=48), "both").messages:
        payload = r.message["payload"]
        ours.setdefault(r.event_type, set()).update(
            payload["nova_object.data"] if r.fmt == "versioned" else payload)
    shared = set(corpus) & set(ours)
    assert len(shared) > 50
    assert {e: sorted(corpus[e] - ours[e]) for e in shared if corpus[e] - ours[e]} == {}


def test_the_cloud_does_everything_nova_does(cloud: object) -> None:
    events = Counter(r.event_type for _, r in cloud.messages)  # type: ignore[attr-defined]
    for action in ("create.end", "create.error", "power_off.end", "power_on.end", "suspend.end",
                   "resume.end", "pause.end", "unpause.end", "shelve.end", "shelve_offload.end",
                   "unshelve.end", "finish_resize.end", "resize.confirm.end", "resize.revert.end",
                   "rebuild.end", "rescue.end", "unrescue.end", "delete.end", "exists", "update"):
        assert events[f"compute.instance.{action}"] > 0, action
    states = {(r.message["payload"]["old_state"], r.message["payload"]["state"])
              for _, r in cloud.messages if r.event_type.endswith("update")}  # type: ignore[attr-defined]
    assert {("building", "active"), ("active", "resized"), ("resized", "active"),
            ("shelved", "shelved_offloaded"), ("active", "deleted")} <= states


def test_truth_intervals_are_consistent(cloud: object) -> None:
    truth = cloud.truth  # type: ignore[attr-defined]
    assert truth["period"] == "hour" and len(truth["instances"]) == 200
    for inst in truth["instances"]:
        existence = [(to_us(i["start"]), to_us(i["end"])) for i in inst["existence"]]
        for r in inst["running"]:
            a, b = to_us(r["start"]), to_us(r["end"])
            assert any(s <= a and b <= e for s, e in existence)  # type: ignore[operator]
        total = sum(e - s for s, e in existence)  # type: ignore[operator]
        usage = [Decimal(u["seconds"]) for u in inst["usage"]]
        assert sum(usage) * S == total
        assert all(Decimal(u["running_seconds"]) <= Decimal(u["seconds"]) <= 3600
                   for u in inst["usage"])
        if inst["launched_at"] is None:
            assert inst["usage"] == [] and inst["existence"] == []


def test_nova_audit_sends_one_exists_per_period_and_operations_avoid_it(cloud: object) -> None:
    total = 0
    for inst in cloud.truth["instances"]:  # type: ignore[attr-defined]
        ends = [e["audit_period_ending"] for e in inst["exists"] if e["periodic"]]
        assert len(ends) == len(set(ends))
        total += len(ends)
    assert total > 200 * 20
    for life in cloud.cloud.lives:  # type: ignore[attr-defined]
        starts: dict[str, int] = {}
        for e in life.out:
            if e.event != "exists" or e.extra["audit_period_ending"] % HOUR:
                starts[e.request_id] = min(starts.get(e.request_id, e.at), e.at)
        assert starts and all(QUIET <= t % HOUR <= HOUR - QUIET + 2 * S for t in starts.values())


def test_delivery_reorders_delays_and_duplicates_to_order() -> None:
    times = [i * S for i in range(2000)]
    plain = deliver(list(range(2000)), times, Delivery(1))
    assert [x for _, x in plain] == list(range(2000))
    mixed = deliver(list(range(2000)), times, Delivery(1, 10.0, 0.05, (1, 2), 0.1, 60.0))
    items = [x for _, x in mixed]
    counts = Counter(items)
    assert 150 < sum(c - 1 for c in counts.values()) < 250 and max(counts.values()) == 2
    late = [x for when, x in mixed if when - times[x] > HOUR]
    assert 50 < len(set(late)) < 160
    prompt = [(when, x) for when, x in mixed if x not in set(late)]
    assert all(0 <= when - times[x] < 10 * S + 60 * S + 2 for when, x in prompt)
    assert items != sorted(items)
    with pytest.raises(ValueError, match="between 0 and 1"):
        Delivery(duplicate_fraction=2)


def args(tmp_path: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.parse_args(["--instances", "6", "--hours", "6", *extra])


@pytest.fixture
def config() -> Config:
    return load_config()


def test_command_writes_capture_and_truth(tmp_path: Path, config: Config,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out, truth = tmp_path / "sim.jsonl", tmp_path / "truth.json"
    code = command.run(args(tmp_path, "--output", str(out), "--truth", str(truth),
                            "--duplicate-fraction", "0.2", "--corrupt-exists", "2",
                            "--envelope", "1.0", "--cells", "a,b"), config)
    assert code == 0 and "messages=" in capsys.readouterr().out
    lines = [CapturedMessage.from_line(line) for line in out.read_text().splitlines()]
    doc = json.loads(truth.read_text())
    assert len(lines) > doc["messages"] and {m.cell for m in lines} <= {"a", "b"}
    assert len(doc["corrupted"]) == 2 and doc["instances"][0]["cell"] in ("a", "b")
    again = tmp_path / "again.jsonl"
    command.run(args(tmp_path, "--output", str(again), "--duplicate-fraction", "0.2",
                     "--corrupt-exists", "2", "--envelope", "1.0", "--cells", "a,b"), config)
    assert again.read_bytes() == out.read_bytes()


@pytest.mark.parametrize(("extra", "message"), [
    ((), "--output, --truth and/or --publish"),
    (("--output", "x", "--start", "2024-01-01T00:30:00Z"), "period boundary"),
    (("--output", "x", "--delay-hours", "six"), "simulate:"),
    (("--output", "x", "--delay-fraction", "3"), "between 0 and 1"),
    (("--publish", "--cells", "nowhere"), "not configured"),
])
def test_command_refuses_bad_arguments(tmp_path: Path, config: Config, extra: tuple[str, ...],
                                       message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StacktideError, match=message):
        command.run(args(tmp_path, *extra), config)
