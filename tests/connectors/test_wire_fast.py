"""connectors.wire's fast paths say exactly what the reference paths say.

parse decodes with orjson and falls back to json; ids are read by specialised code
written from the LOOKUPS table; oslo timestamps are sliced. Each shortcut is held equal
to the general code it replaces, on the corpus and on generated input.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors import wire
from connectors.wire import LOOKUPS, Rejected, parse
from stacktide.corpus import iter_samples
from stacktide.schema import Envelope, format_time

RECEIVED = datetime(2024, 5, 1, 8, 30, 0, 250000, tzinfo=UTC)
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run(body: bytes) -> Envelope | Rejected:
    return parse(body, cell="c", exchange="nova", routing_key="notifications.info", received=RECEIVED)


def exact(body: bytes) -> Envelope | Rejected:
    """The json path alone, as parse takes it when orjson is not trusted with a body."""
    try:
        msg, text = wire._decode_exact(body)
        return wire._normalize(body, msg, text, False, "c", "nova", "notifications.info",
                               format_time(RECEIVED))
    except wire._Reject as exc:
        return Rejected(str(exc))
    except RecursionError:
        return Rejected(f"too-large: nested deeper than {wire.MAX_DEPTH} levels")


def v1(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def v2(obj: Any) -> bytes:
    return json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(obj)}).encode()


CORPUS = [s.body for envelope in ("1.0", "2.0") for s in iter_samples(envelope=envelope)]


def test_corpus_fast_path_equals_json_path_and_json_encoding() -> None:
    for body in CORPUS:
        fast = run(body)
        assert isinstance(fast, Envelope)
        assert fast == exact(body)
        obj = {name: getattr(fast, name) for name in Envelope.__dataclass_fields__}
        reference = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
        assert fast.to_json() == reference  # byte for byte


def test_integers_beyond_64_bits_stay_exact_and_huge_floats_are_refused() -> None:
    for big in (2**64, 2**70, -(2**63) - 1, 10**30):
        for body in (v1({"event_type": "x", "payload": {"n": [big]}}),
                     v2({"event_type": "x", "payload": {"deep": {"n": big}}})):
            env = run(body)
            assert isinstance(env, Envelope)
            assert str(big).encode() in env.to_json()
            assert Envelope.from_json(env.to_json()) == env
    float_like = run(v1({"event_type": "x", "payload": {"f": 1e19}}))  # a real float: kept
    assert isinstance(float_like, Envelope) and float_like.payload == {"f": 1e19}
    refused = run(b'{"event_type": "x", "payload": {"n": 1e400}}')  # json would say Infinity
    assert isinstance(refused, Rejected) and refused.reason.startswith("invalid-json: number")


def test_rejections_on_the_fast_path_keep_json_reasons() -> None:
    for body in (b'{"event_type": "x", "payload": "\\ud800"}',
                 b'{"event_type": "x", "timestamp": 123456789012345678901234}',
                 v2({"event_type": "x", "priority": "LOUD"}),
                 b'{"event_type": "x", "payload": [' + b"[" * 120 + b"]" * 120 + b"]}"):
        result = run(body)
        assert isinstance(result, Rejected) and result == exact(body)
    assert run(b'{"event_type": "x", "timestamp": 123456789012345678901234}') == Rejected(
        "bad-timestamp: timestamp is int")


def test_secret_keys_that_only_lower_case_finds_are_removed() -> None:
    kelvin = "to\u212aen"  # KELVIN SIGN: lower-cases to an ASCII k
    body = json.dumps({"event_type": "x", "payload": {kelvin: 1, "keep": {"ok": 2}}},
                      ensure_ascii=False).encode()
    for b in (body, json.dumps({"event_type": "x", "payload": {kelvin: 1}}).encode()):
        env = run(b)
        assert isinstance(env, Envelope) and kelvin not in env.payload


def test_received_may_come_formatted() -> None:
    body = v1({"event_type": "x"})
    text = parse(body, cell="c", exchange="e", routing_key="n.info", received="2024-05-01T08:30:00.250000Z")
    assert text == parse(body, cell="c", exchange="e", routing_key="n.info", received=RECEIVED)


KEYS = st.sampled_from(["tenant_id", "project_id", "owner", "user_id", "user", "tenant",
                        "request_id", "global_request_id", "instance_id", "instance_uuid", "uuid"])
VALUES: st.SearchStrategy[Any] = st.none() | st.sampled_from(["", "a-1", "b-2"]) | st.integers() | st.just({})
FLAT = st.dictionaries(KEYS, VALUES, max_size=6)


@SETTINGS
@given(FLAT, FLAT, FLAT, FLAT, FLAT, st.booleans(), st.booleans())
def test_specialised_ids_equal_the_lookup_table(payload: dict[str, Any], data: dict[str, Any],
                                                flat: dict[str, Any], ctxt: dict[str, Any],
                                                nested: dict[str, Any], versioned: bool,
                                                nest: bool) -> None:
    msg: dict[str, Any] = {f"_context_{k}": v for k, v in flat.items()}
    if nest:
        msg["ctxt"], msg["_context"] = ctxt, nested
    body = {**payload, "nova_object.data": data} if versioned else payload
    ctx: dict[str, Any] = {}  # the merged context, as the table reads it
    for key in ("_context", "ctxt"):
        if isinstance(msg.get(key), dict):
            ctx.update(msg[key])
    ctx.update(flat)
    roots = {"ctx": ctx, "payload": body, "meta": None,
             "data": data if versioned else None}
    expected = tuple(wire._first(roots, LOOKUPS[name]) for name in
                     ("tenant_id", "user_id", "request_id", "global_request_id", "instance_id"))
    assert wire._ids(msg, body, body.get("nova_object.data")) == expected


STAMPS = st.datetimes(min_value=datetime(1960, 1, 1), max_value=datetime(2200, 1, 1))


@SETTINGS
@given(STAMPS, st.booleans(), st.sampled_from(["", "x", " ", "Z"]))
def test_sliced_timestamps_equal_the_general_path(t: datetime, fraction: bool, junk: str) -> None:
    for text in (str(t.replace(microsecond=0)) if not fraction else str(t + timedelta(microseconds=1)),
                 f"{t:%Y-%m-%d %H:%M:%S}{junk}", f"{t:%Y-%m-%d %H:%M:%S}.{t:%f}"[:25] + junk):
        try:
            expected: str | None = wire._timestamp_general(text)
        except wire._Reject as exc:
            expected = str(exc)
        try:
            got: str | None = wire._timestamp(text)
        except wire._Reject as exc:
            got = str(exc)
        assert got == expected


@pytest.mark.parametrize("text", ["2016-02-30 00:00:00", "2016-01-01 24:00:00",
                                  "2016-01-01 23:59:60", "1969-12-31 23:59:59.999999",
                                  "2016-01-01 12:00:00.12345a",
                                  "2016-01-01 12:00:00.\u0661\u0662\u0663\u0664\u0665\u0666",
                                  "\uff12016-01-01 12:00:00"])
def test_sliced_timestamps_refuse_what_the_general_path_refuses(text: str) -> None:
    with pytest.raises(wire._Reject) as general:
        wire._timestamp_general(text)
    with pytest.raises(wire._Reject) as sliced:
        wire._timestamp(text)
    assert str(sliced.value) == str(general.value)


JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
JSON = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8) | KEYS, inner, max_size=5), max_leaves=20)
MESSAGES = st.fixed_dictionaries({"event_type": st.sampled_from(["compute.instance.update", "x"])},
                                 optional={"payload": JSON, "priority": JSON, "timestamp": JSON,
                                           "_context_auth_token": JSON, "ctxt": JSON,
                                           "metadata": JSON, "message_id": JSON})


@SETTINGS
@given(MESSAGES, st.booleans(), st.booleans())
def test_fast_path_equals_json_path_on_generated_messages(obj: dict[str, Any], enveloped: bool,
                                                          ascii_only: bool) -> None:
    inner = json.dumps(obj, ensure_ascii=ascii_only)
    body = (json.dumps({"oslo.version": "2.0", "oslo.message": inner}, ensure_ascii=ascii_only)
            if enveloped else inner).encode("utf-8", "surrogatepass")
    assert run(body) == exact(body)
