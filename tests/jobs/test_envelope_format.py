"""The keyed sources' Kafka format, ``envelope-json`` (jvm/operators:
``stacktide.flink.EnvelopeDeserializer``), against Flink's ``json`` format, which it replaced
there, through tests/jvm/EnvelopeCheck.java: every corpus notification as the bridge writes
it to Kafka reads into the same columns, the payload as its own bytes on the topic (the same
JSON as Flink's re-written text), whatever columns a query projects, in whatever order;
and what is not one JSON object fails, naming the format.
"""

from __future__ import annotations

import base64
import json
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyflink
import pytest

from stacktide.schema import Envelope
from tests.jobs.keyed_driver import Ask, corpus_envelopes, java_harness

RECEIVED = datetime(2030, 1, 1, tzinfo=UTC)
COLUMNS = [f.name for f in fields(Envelope)]


@pytest.fixture(scope="module")
def jvm(tmp_path_factory: pytest.TempPathFactory) -> Ask:
    lib = Path(pyflink.__file__).parent / "lib"
    return java_harness(tmp_path_factory.mktemp("envelope"), "EnvelopeCheck", [],
                        extra=sorted(lib.glob("flink-json-*.jar")))


def corpus() -> list[Envelope]:
    return corpus_envelopes(RECEIVED)


def query(message: bytes | None, columns: list[str]) -> dict[str, Any]:
    return {"message": None if message is None else base64.b64encode(message).decode(),
            "columns": columns}


def same_json(ours: str | None, flink: str | None) -> bool:
    """Equal as JSON where a column holds an object (Flink writes its tree back out)."""
    if ours is None or flink is None or ours == flink:
        return ours == flink
    try:
        return bool(json.loads(ours) == json.loads(flink))
    except ValueError:
        return False


def test_every_corpus_envelope_reads_as_it_was_written(jvm: Ask) -> None:
    items = corpus()
    messages = [env.to_json() for env in items]
    answers = jvm([query(m, COLUMNS) for m in messages])
    assert len(items) > 50
    for env, message, answer in zip(items, messages, answers, strict=True):
        ours, flink = answer["ours"], answer["flink"]
        expected = [getattr(env, c) for c in COLUMNS]
        payload = COLUMNS.index("payload")
        assert ours[:payload] == expected[:payload], env.message_id
        if env.payload is None:
            assert ours[payload] is None
        else:  # the payload's own bytes on the topic
            assert json.loads(ours[payload]) == env.payload
            assert ours[payload].encode() in message
        assert all(same_json(o, f) for o, f in zip(ours, flink, strict=True)), env.message_id


def test_a_projection_reads_its_columns_in_its_order(jvm: Ask) -> None:
    items = corpus()[:20]
    picked = ["payload", "generated", "instance_id", "message_id", "event_type"]
    answers = jvm([query(env.to_json(), picked) for env in items])
    for env, answer in zip(items, answers, strict=True):
        assert answer["ours"][1:] == [env.generated, env.instance_id, env.message_id,
                                      env.event_type]
        assert json.loads(answer["ours"][0]) == env.payload
        assert all(same_json(o, f) for o, f in zip(answer["ours"], answer["flink"], strict=True))


@pytest.mark.parametrize("message, expected", [
    # absent and null fields are null; unknown ones are skipped, nested or not
    (b'{"cell":"c1","extra":{"a":[1,{"b":2}]},"event_type":null}', ["c1", None, None]),
    # numbers and booleans as their JSON text, an array as its bytes
    (b'{"cell":5,"event_type":true,"payload":[1, 2.50,"x"]}', ["5", "true", "[1, 2.50,\"x\"]"]),
    # escapes read; non-ASCII kept; an object's bytes kept as written, whitespace and all
    (b'{"cell":"a\\"b\\u00e9","event_type":"\xc3\xa9t\xc3\xa9","payload":{ "k" : "v\\n" }}',
     ["a\"b\u00e9", "\u00e9t\u00e9", '{ "k" : "v\\n" }']),
    # the last of a repeated field wins, as in Flink's json
    (b'{"cell":"one","cell":"two"}', ["two", None, None]),
])
def test_edge_cases_read_as_flink_reads_them(jvm: Ask, message: bytes,
                                             expected: list[str | None]) -> None:
    (answer,) = jvm([query(message, ["cell", "event_type", "payload"])])
    assert answer["ours"] == expected
    assert all(same_json(o, f) for o, f in zip(answer["ours"], answer["flink"], strict=True))


@pytest.mark.parametrize("message", [
    b"", b"[]", b'"text"', b"not json", b'{"cell":"c1"', b'{"cell":"c1"} trailing',
    b'{"cell":"c1"}{"cell":"c2"}', b'{"cell":}',
])
def test_what_is_not_one_json_object_fails_naming_the_format(jvm: Ask, message: bytes) -> None:
    (answer,) = jvm([query(message, ["cell", "payload"])])
    assert "envelope-json: cannot read a notification" in answer["ours"]["error"]


def test_a_tombstone_is_no_row(jvm: Ask) -> None:
    assert jvm([query(None, ["cell"])]) == [{"ours": None}]
