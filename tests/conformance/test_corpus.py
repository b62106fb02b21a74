"""Every notification of the shared corpus, in both oslo wire formats, through the parser.

The samples come from stacktide.corpus (the corpus read in place, as senders would publish
it); each one must come out of connectors.wire.parse as an Envelope that says what the
source says, with no secret left in it. Test ids name the corpus file.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.wire import Rejected, is_secret_key, parse
from stacktide.corpus import CorpusError, Sample, corpus_root, count_files, iter_samples
from stacktide.schema import Envelope, format_time, parse_time

RECEIVED = datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)
ISO_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
FOLDERS = {"nova-versioned": 140, "legacy/stacktach-notigen": 301, "legacy/ceilometer": 66,
           "legacy/yagi": 4}
SAMPLES = {envelope: list(iter_samples(envelope=envelope)) for envelope in ("2.0", "1.0")}
CASES = [pytest.param(s, id=f"{s.source}@{s.envelope}") for ss in SAMPLES.values() for s in ss]


def folder(source: str) -> str:
    parts = source.split("/")
    return parts[0] if parts[0] == "nova-versioned" else "/".join(parts[:2])


def wire_message(sample: Sample) -> dict[str, Any]:
    """The notification dict inside the body, unwrapped from the 2.0 envelope if need be."""
    obj = json.loads(sample.body)
    if sample.envelope == "2.0":
        assert set(obj) == {"oslo.version", "oslo.message"} and obj["oslo.version"] == "2.0"
        assert isinstance(obj["oslo.message"], str)
        obj = json.loads(obj["oslo.message"])
    else:
        assert "oslo.message" not in obj
    assert isinstance(obj, dict)
    return obj


def all_keys(obj: Any) -> list[Any]:
    if isinstance(obj, dict):
        return [*obj, *(k for v in obj.values() for k in all_keys(v))]
    if isinstance(obj, list):
        return [k for v in obj for k in all_keys(v)]
    return []


def strings_under(obj: Any, key: str) -> list[str]:
    """Every non-empty string value held by *key* anywhere in *obj*."""
    if isinstance(obj, dict):
        own = [obj[key]] if isinstance(obj.get(key), str) and obj[key] else []
        return own + [s for v in obj.values() for s in strings_under(v, key)]
    if isinstance(obj, list):
        return [s for v in obj for s in strings_under(v, key)]
    return []


def test_the_corpus_holds_the_documented_number_of_notifications() -> None:
    counts = count_files()
    per_folder: Counter[str] = Counter()
    for rel, n in counts.items():
        per_folder[folder(rel)] += n
    assert per_folder == FOLDERS
    notigen = {rel: n for rel, n in counts.items() if folder(rel) == "legacy/stacktach-notigen"}
    assert len(notigen) == 21


def test_the_counts_agree_with_the_manifests() -> None:
    root, counts = corpus_root(), count_files()
    for name in ("legacy/stacktach-notigen", "legacy/ceilometer", "legacy/yagi"):
        manifest = json.loads((root / name / "MANIFEST.json").read_text(encoding="utf-8"))
        listed = {f"{name}/{e['file']}": e.get("notifications", 1) for e in manifest}
        assert listed == {rel: n for rel, n in counts.items() if folder(rel) == name}, name


@pytest.mark.parametrize("envelope", ["2.0", "1.0"])
def test_every_notification_of_every_file_is_a_sample(envelope: str) -> None:
    samples, counts = SAMPLES[envelope], count_files()
    assert len(samples) == sum(counts.values()) == sum(FOLDERS.values())
    assert Counter(s.source.split("#")[0] for s in samples) == counts
    assert len({s.source for s in samples}) == len(samples)
    assert len({s.message_id for s in samples}) == len(samples)
    assert {s.envelope for s in samples} == {envelope}


@pytest.mark.parametrize("sample", CASES)
def test_sample_parses_to_what_the_source_says(sample: Sample) -> None:
    result = parse(sample.body, cell="cell1", exchange=sample.exchange,
                   routing_key=sample.routing_key, received=RECEIVED)
    assert isinstance(result, Envelope), f"{sample.source}: {result}"
    sent = wire_message(sample)

    assert (result.event_type, result.priority) == (sample.event_type, sample.priority)
    assert result.event_type == sent["event_type"]
    assert result.priority == str(sent.get("priority") or "info").lower()
    assert result.routing_key.endswith(f".{result.priority}")
    assert (result.cell, result.exchange, result.routing_key) == (
        "cell1", sample.exchange, sample.routing_key)
    assert result.message_id and result.message_id == sample.message_id == sent["message_id"]

    assert ISO_UTC.fullmatch(result.generated) and ISO_UTC.fullmatch(result.received)
    assert format_time(parse_time(result.generated)) == result.generated
    stamp = sent.get("timestamp")
    if stamp is None:
        assert result.generated == format_time(RECEIVED)
    else:
        sent_at = datetime.fromisoformat(stamp)
        sent_at = sent_at.replace(tzinfo=UTC) if sent_at.tzinfo is None else sent_at
        assert parse_time(result.generated) == sent_at

    expected_format = "versioned" if sample.source.startswith("nova-versioned/") else "legacy"
    assert result.format == sample.fmt == expected_format
    assert result.instance_id == sample.instance_id
    payload = sent.get("payload")
    if sample.event_type.startswith("instance.") and result.format == "versioned":
        assert result.instance_id == payload["nova_object.data"]["uuid"]
    elif isinstance(payload, dict) and isinstance(payload.get("instance_id"), str):
        assert result.instance_id == payload["instance_id"]
    if folder(sample.source) == "legacy/stacktach-notigen":
        assert result.instance_id is not None and result.request_id is not None

    assert not [k for k in all_keys(result.payload) if isinstance(k, str) and is_secret_key(k)]
    text = result.to_json().decode()
    for token in strings_under(sent, "_context_auth_token") + strings_under(sent, "auth_token"):
        assert token not in text, f"{sample.source}: an auth token reached the envelope"
    assert Envelope.from_json(result.to_json()) == result


def test_mixed_alternates_formats_deterministically() -> None:
    first, second = list(iter_samples(envelope="mixed")), list(iter_samples(envelope="mixed"))
    assert first == second
    assert Counter(s.envelope for s in first) == {"2.0": 256, "1.0": 255}
    assert [s.source for s in first] == [s.source for s in SAMPLES["2.0"]]
    other_seed = list(iter_samples(envelope="mixed", seed=1))
    assert [s.event_type for s in other_seed] == [s.event_type for s in first]
    assert sum(a.body != b.body for a, b in zip(first, other_seed, strict=True)) >= 441


def test_placeholders_and_refs_are_all_resolved() -> None:
    for s in SAMPLES["1.0"]:
        assert b"[[[[" not in s.body and b'"$ref"' not in s.body, s.source
        if s.fmt == "versioned":
            payload = wire_message(s)["payload"]
            assert {"nova_object.name", "nova_object.data"} <= set(payload), s.source


def test_repairs_are_recorded_and_needed() -> None:
    repaired = {s.source: s.repairs for s in SAMPLES["2.0"] if s.repairs}
    retimed = sorted(src for src, notes in repaired.items() if any("timestamp" in n for n in notes))
    assert [Path(src).name.split("__")[0] for src in retimed] == [
        "floatingip.update.start", "network.create.end", "port.create.end", "subnet.create.end"]
    as_found = {s.source: s for s in iter_samples(envelope="2.0", as_found=True)}
    for source in retimed:
        raw = as_found[source]
        result = parse(raw.body, cell="c", exchange=raw.exchange, routing_key=raw.routing_key,
                       received=RECEIVED)
        assert isinstance(result, Rejected) and result.code == "bad-timestamp", source
    seen: set[str] = set()
    for source, raw in as_found.items():  # in iteration order: the first use keeps its id
        again = raw.message_id in seen
        seen.add(raw.message_id)
        assert again == any(n.startswith("message_id") for n in repaired.get(source, ())), source
    assert len(seen) < len(as_found)  # the fixtures do reuse ids


def test_corpus_root_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    real = corpus_root()
    monkeypatch.setenv("STACKTIDE_CORPUS", str(real))
    assert corpus_root() == real
    monkeypatch.setenv("STACKTIDE_CORPUS", str(tmp_path))
    with pytest.raises(CorpusError, match="STACKTIDE_CORPUS"):
        corpus_root()
    with pytest.raises(ValueError, match="envelope"):
        next(iter_samples(real, envelope="3.0"))
