"""connectors.wire: one AMQP body -> Envelope or Rejected, secrets removed, never raising."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.wire import Rejected, is_secret_key, parse, scrub, scrub_body, split_publisher
from stacktide.schema import Envelope, format_time, parse_time

RECEIVED = datetime(2024, 5, 1, 8, 30, 0, 250000, tzinfo=UTC)
BASE: dict[str, Any] = {
    "message_id": "9f4c0b0e-5a1e-4a58-9f47-6e0b7a9c2d11",
    "publisher_id": "compute.host1",
    "event_type": "compute.instance.create.end",
    "priority": "INFO",
    "payload": {"instance_id": "i-1", "tenant_id": "t-1"},
    "timestamp": "2016-01-01 12:00:00.123456",
    "_unique_id": "0c2f3d5e6a7b4c8d9e0f1a2b3c4d5e6f",
    "_context_request_id": "req-1",
    "_context_auth_token": "SECRET-CONTEXT-TOKEN",
}


def msg(**changes: Any) -> dict[str, Any]:
    out = {**BASE, **changes}
    return {k: v for k, v in out.items() if v is not ...}  # Ellipsis removes a key


def v1(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def v2(obj: Any, version: Any = "2.0") -> bytes:
    return json.dumps({"oslo.version": version, "oslo.message": json.dumps(obj)}).encode()


def run(body: bytes, routing_key: str = "notifications.info", **kw: Any) -> Envelope | Rejected:
    return parse(body, cell="cell1", exchange="nova", routing_key=routing_key,
                 received=RECEIVED, **kw)


def ok(body: bytes, **kw: Any) -> Envelope:
    result = run(body, **kw)
    assert isinstance(result, Envelope), result
    return result


def code(body: bytes, **kw: Any) -> str:
    result = run(body, **kw)
    assert isinstance(result, Rejected), result
    assert result.reason.startswith(f"{result.code}: ") and len(result.reason) > len(result.code) + 2
    return result.code


def keys_anywhere(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        return [k for k, v in obj.items() for k in (k, *keys_anywhere(v))]
    if isinstance(obj, list):
        return [k for v in obj for k in keys_anywhere(v)]
    return []


def test_both_formats_give_the_same_envelope() -> None:
    flat, enveloped = ok(v1(msg())), ok(v2(msg()))
    assert flat == enveloped
    assert (flat.cell, flat.exchange, flat.routing_key) == ("cell1", "nova", "notifications.info")
    assert (flat.event_type, flat.priority, flat.message_id) == (
        "compute.instance.create.end", "info", BASE["message_id"])
    assert (flat.service, flat.host, flat.request_id) == ("compute", "host1", "req-1")
    assert (flat.instance_id, flat.tenant_id, flat.format) == ("i-1", "t-1", "legacy")
    assert flat.generated == "2016-01-01T12:00:00.123456Z"
    assert flat.received == format_time(RECEIVED)
    assert Envelope.from_json(flat.to_json()) == flat


@pytest.mark.parametrize(("body", "expected"), [
    (b"\xff\xfe{}", "not-utf8"),
    (b"{\"a\": \"\xc3\x28\"}", "not-utf8"),
    (b"", "invalid-json"),
    (b"{not json", "invalid-json"),
    (b'{"event_type": "x", "payload": NaN}', "invalid-json"),
    (v1({"event_type": "x", "payload": "\ud800"}), "invalid-json"),
    (b"[1, 2]", "not-an-object"),
    (b'"just a string"', "not-an-object"),
    (b"null", "not-an-object"),
    (json.dumps({"oslo.version": "2.0", "oslo.message": {"a": 1}}).encode(), "bad-envelope"),
    (json.dumps({"oslo.version": "2.0", "oslo.message": "{oops"}).encode(), "bad-envelope"),
    (json.dumps({"oslo.version": "2.0", "oslo.message": "[1]"}).encode(), "bad-envelope"),
    (v2(msg(), version="3.0"), "bad-envelope"),
    (v2(msg(), version="1.0"), "bad-envelope"),
    (v2(msg(), version=2), "bad-envelope"),
    (v1(msg(event_type=...)), "missing-event-type"),
    (v1(msg(event_type="")), "missing-event-type"),
    (v2(msg(event_type=42)), "missing-event-type"),
    (v1(msg(priority="LOUD")), "unknown-priority"),
    (v1(msg(priority=3)), "unknown-priority"),
    (v1(msg(timestamp="yesterday")), "bad-timestamp"),
    (v1(msg(timestamp="")), "bad-timestamp"),
    (v1(msg(timestamp=1451649600)), "bad-timestamp"),
    (v1(msg(timestamp="1900-01-01 00:00:00")), "bad-timestamp"),
    (v2(msg(timestamp="2016-13-01 00:00:00")), "bad-timestamp"),
], ids=lambda x: x if isinstance(x, str) else None)
def test_each_rejection_reason(body: bytes, expected: str) -> None:
    assert code(body) == expected


def test_too_large_is_checked_before_decoding() -> None:
    body = v1(msg())
    assert code(body, max_bytes=len(body) - 1) == "too-large"
    assert isinstance(run(body, max_bytes=len(body)), Envelope)
    assert code(b"\xff" * 9 * 1024 * 1024) == "too-large"  # default limit is 8 MiB


@pytest.mark.parametrize("depth", [101, 600, 5000, 100_000])
def test_too_deep_nesting_is_too_large_and_the_limit_is_exact(depth: int) -> None:
    def nested(n: int) -> bytes:  # the message object is level 1, so the payload adds n - 1
        return (b'{"event_type": "x", "priority": "INFO", "payload": ' + b"[" * (n - 1)
                + b"]" * (n - 1) + b"}")

    assert code(nested(depth)) == "too-large"
    assert code(v2(json.loads(nested(101)))) == "too-large"
    assert isinstance(run(nested(100)), Envelope)
    assert ok(nested(100)).to_json()


def test_priority_comes_from_the_routing_key_when_absent() -> None:
    assert ok(v1(msg(priority=...)), routing_key="notifications.error").priority == "error"
    assert ok(v2(msg(priority=None)), routing_key="monitor.WARN").priority == "warn"
    assert code(v1(msg(priority=...)), routing_key="notifications") == "unknown-priority"


def test_priority_in_the_message_wins_and_any_case_is_taken() -> None:
    assert ok(v1(msg(priority="ERROR")), routing_key="notifications.info").priority == "error"
    assert ok(v1(msg(priority="info"))).priority == "info"
    assert ok(v1(msg(priority="Sample"))).priority == "sample"


@pytest.mark.parametrize(("stamp", "expected"), [
    ("2016-01-01 12:00:00.123456", "2016-01-01T12:00:00.123456Z"),
    ("2016-01-01 12:00:00", "2016-01-01T12:00:00.000000Z"),
    ("2016-01-01T12:00:00.5", "2016-01-01T12:00:00.500000Z"),
    ("2016-01-01T12:00:00Z", "2016-01-01T12:00:00.000000Z"),
    ("2016-01-01T12:00:00.123456+00:00", "2016-01-01T12:00:00.123456Z"),
    ("2016-01-01T14:00:00+02:00", "2016-01-01T12:00:00.000000Z"),
    ("2015-01-01T00:00:00.000000", "2015-01-01T00:00:00.000000Z"),
])
def test_timestamp_forms(stamp: str, expected: str) -> None:
    assert ok(v1(msg(timestamp=stamp))).generated == expected


def test_missing_timestamp_means_received() -> None:
    assert ok(v1(msg(timestamp=...))).generated == format_time(RECEIVED)
    assert ok(v2(msg(timestamp=None))).generated == format_time(RECEIVED)
    naive = parse(v1(msg(timestamp=...)), cell="c", exchange="nova",
                  routing_key="notifications.info", received=datetime(2024, 1, 2, 3, 4, 5))
    assert isinstance(naive, Envelope) and naive.generated == "2024-01-02T03:04:05.000000Z"
    east = datetime(2024, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    converted = parse(v1(msg()), cell="c", exchange="nova", routing_key="n.info", received=east)
    assert isinstance(converted, Envelope)
    assert parse_time(converted.received) == east


def test_message_id_fallbacks() -> None:
    assert ok(v1(msg(message_id=...))).message_id == BASE["_unique_id"]
    no_ids = v1(msg(message_id=..., _unique_id=...))
    first, again = ok(no_ids).message_id, ok(no_ids).message_id
    assert first == again and len(first) == 36  # a uuid5 of the body: redeliveries agree
    assert ok(v1(msg(message_id=..., _unique_id=..., event_type="other"))).message_id != first
    layout = {"event_type": "x", "ctxt": {}, "metadata": {"message_id": "m-1"}, "payload": {}}
    assert ok(v1(layout)).message_id == "m-1"


def test_secrets_are_removed_at_any_depth_and_in_lists() -> None:
    payload = {
        "instance_id": "i-1",
        "Admin_Password": "p1",
        "nested": {"auth_token": "t1", "keep": 1, "deeper": [{"client_secret": "s1"}, 7]},
        "args": {"context": {"auth_token": "t2", "user": "u"}},
        "list": [[{"PASSWORD": "p2"}], {"x": {"refresh_TOKEN": "t3"}}],
        "password_hint": "dropped too",
    }
    for body in (v1(msg(payload=payload)), v2(msg(payload=payload))):
        env = ok(body)
        assert not [k for k in keys_anywhere(env.payload) if is_secret_key(k)]
        text = env.to_json().decode()
        for leaked in ("p1", "t1", "s1", "t2", "p2", "t3", "SECRET-CONTEXT-TOKEN"):
            assert f'"{leaked}"' not in text
        assert env.payload["nested"] == {"keep": 1, "deeper": [{}, 7]}
        assert env.payload["args"] == {"context": {"user": "u"}}


def test_secret_keys_hidden_by_escapes_or_copied_context_names_are_removed() -> None:
    escaped = b'{"event_type": "x", "priority": "INFO", "payload": {"\\u0074oken": "t9"}}'
    assert ok(escaped).payload == {}
    copied = msg(payload={"_context_auth_token": "t8", "ok": 1})  # same name as the context key
    assert ok(v1(copied)).payload == {"ok": 1}
    kafka = msg(_context={"auth_token": "t7", "request_id": "req-k"}, payload={"a": 1},
                _context_request_id=..., _context_auth_token=...)
    assert ok(v2(kafka)).request_id == "req-k"  # the Kafka driver's nested context


def test_scrub_returns_a_cleaned_copy() -> None:
    original = {"a": [{"token": 1, "b": 2}], "secret": 3, 4: "non-str key"}
    cleaned = scrub(original)
    assert cleaned == {"a": [{"b": 2}], 4: "non-str key"}
    assert original["a"][0] == {"token": 1, "b": 2} and "secret" in original
    assert scrub("text") == "text" and scrub([{"x_token": 1}]) == [{}]


def test_scrub_body_on_both_formats_and_on_garbage() -> None:
    enveloped = v2(msg(payload={"deep": [{"db_password": "p"}], "ok": True}))
    cleaned = json.loads(scrub_body(enveloped))
    assert cleaned["oslo.version"] == "2.0"
    inner = json.loads(cleaned["oslo.message"])
    assert "_context_auth_token" not in inner and inner["payload"] == {"deep": [{}], "ok": True}
    assert b"SECRET-CONTEXT-TOKEN" not in scrub_body(v1(msg()))
    assert scrub_body(b"{not json _context_auth_token") == b"{not json _context_auth_token"
    assert scrub_body(b"\xff\xfe") == b"\xff\xfe"
    broken_inner = json.dumps({"oslo.version": "2.0", "oslo.message": "{x", "token": 1}).encode()
    assert json.loads(scrub_body(broken_inner)) == {"oslo.version": "2.0", "oslo.message": "{x"}


@pytest.mark.parametrize(("publisher", "service", "host"), [
    ("compute.host1", "compute", "host1"),
    ("compute.ip-10-147-132-184.ec2.internal", "compute", "ip-10-147-132-184.ec2.internal"),
    ("nova-compute:host1", "nova-compute", "host1"),
    ("nova-api:fake-mini.example.com", "nova-api", "fake-mini.example.com"),
    ("ceilometermiddleware", "ceilometermiddleware", None),
    ("", None, None),
    (None, None, None),
])
def test_publisher_id_split(publisher: str | None, service: str | None, host: str | None) -> None:
    assert split_publisher(publisher) == (service, host)
    env = ok(v1(msg(publisher_id=publisher)))
    assert (env.publisher_id, env.service, env.host) == (publisher or None, service, host)


def versioned(event_type: str, name: str, data: dict[str, Any]) -> bytes:
    payload = {"nova_object.name": name, "nova_object.namespace": "nova",
               "nova_object.version": "1.0", "nova_object.data": data}
    return v2(msg(event_type=event_type, publisher_id="nova-compute:c1", payload=payload))


def test_versioned_payloads() -> None:
    action = ok(versioned("instance.pause.end", "InstanceActionPayload",
                          {"uuid": "i-9", "tenant_id": "t-9", "user_id": "u-9",
                           "request_id": "req-payload"}))
    assert (action.format, action.instance_id, action.tenant_id, action.user_id) == (
        "versioned", "i-9", "t-9", "u-9")
    assert action.request_id == "req-1"  # the context's comes first
    spec = {"nova_object.name": "RequestSpecPayload", "nova_object.data": {"instance_uuid": "i-8"}}
    task = ok(versioned("compute_task.build_instances.error", "ComputeTaskPayload",
                        {"request_spec": spec, "reason": {}}))
    assert task.instance_id == "i-8"
    usage = ok(versioned("volume.usage", "VolumeUsagePayload", {"instance_uuid": "i-7"}))
    assert usage.instance_id == "i-7"
    aggregate = ok(versioned("aggregate.create.end", "AggregatePayload", {"uuid": "agg-1"}))
    assert aggregate.instance_id is None and aggregate.format == "versioned"


@pytest.mark.parametrize(("event_type", "payload", "expected"), [
    ("compute.instance.update", {"instance_id": "i-1"}, "i-1"),
    ("compute.instance.create.error", {"exception": {"kwargs": {"instance_uuid": "i-2"}}}, "i-2"),
    ("compute.exception", {"exception": {"kwargs": {"uuid": "i-3"}}}, "i-3"),
    ("terminate_instance", {"exception": {}, "args": {"instance": {"uuid": "i-4"}}}, "i-4"),
    ("scheduler.run_instance.start", {"request_spec": {"instance_uuids": ["i-5", "i-6"]}}, "i-5"),
    ("image.upload", {"id": "img-1", "owner": "p-1"}, None),
    ("port.create.end", {"port": {"id": "port-1", "device_id": "i-7"}}, None),
    ("image.exists", {"instance": {"uuid": "not-nova"}}, None),
    ("volume.attach.end", {"instance_uuid": "i-8"}, "i-8"),
])
def test_instance_id_lookup(event_type: str, payload: Any, expected: str | None) -> None:
    assert ok(v1(msg(event_type=event_type, payload=payload))).instance_id == expected


def test_tenant_user_request_ids_and_layouts() -> None:
    legacy = ok(v1(msg(payload={"owner": "p-img"}, _context_project_id="p-ctx",
                       _context_user_id="u-ctx", _context_global_request_id="greq-1")))
    assert (legacy.tenant_id, legacy.user_id) == ("p-img", "u-ctx")
    assert legacy.global_request_id == "greq-1"
    ctx_only = ok(v1(msg(payload={}, _context_tenant="t-ctx", _context_user="u-old")))
    assert (ctx_only.tenant_id, ctx_only.user_id, ctx_only.instance_id) == ("t-ctx", "u-old", None)
    listener = {"ctxt": {"request_id": "req-c", "project_id": "p-c", "auth_token": "x"},
                "metadata": {"message_id": "m-c", "timestamp": "2013-07-29 06:51:34.474815"},
                "event_type": "objectstore.http.request", "priority": "INFO",
                "publisher_id": "ceilometermiddleware", "payload": {"a": 1}}
    env = ok(v1(listener))
    assert (env.message_id, env.request_id, env.tenant_id) == ("m-c", "req-c", "p-c")
    assert env.generated == "2013-07-29T06:51:34.474815Z"


def test_string_payload_is_kept_as_a_string() -> None:
    env = ok(v1(msg(event_type="image.upload", payload="Image upload failed: token expired")))
    assert env.payload == "Image upload failed: token expired" and env.instance_id is None
    assert ok(v1(msg(payload=...))).payload is None


JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
KEYS = st.sampled_from(["event_type", "priority", "payload", "timestamp", "message_id",
                        "publisher_id", "_unique_id", "_context_request_id", "_context",
                        "ctxt", "metadata", "nova_object.data", "nova_object.name",
                        "instance_id", "instance_uuid", "uuid", "exception", "kwargs",
                        "request_spec", "instance_uuids", "auth_token", "Password",
                        "oslo.version", "oslo.message"]) | st.text(max_size=12)
JSON = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(KEYS, inner, max_size=6), max_leaves=25)
EVENT_TYPES = st.sampled_from(["compute.instance.update", "instance.update", "image.upload",
                               "terminate_instance", "scheduler.run_instance.start"])
NOTIFICATION = st.fixed_dictionaries({
    "event_type": EVENT_TYPES,
    "priority": st.sampled_from(["INFO", "error", "Warn", "bogus"]) | st.none(),
}, optional={
    "timestamp": st.sampled_from(["2016-01-01 12:00:00", "2016-01-01T12:00:00Z", "x"]) | JSON,
    **{k: JSON for k in ["payload", "message_id", "publisher_id", "_context_auth_token",
                         "_context", "ctxt", "metadata", "_unique_id"]},
})
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(body: bytes) -> None:
    result = run(body)
    assert isinstance(result, (Envelope, Rejected))
    if isinstance(result, Envelope):
        assert Envelope.from_json(result.to_json()) == result
        assert not [k for k in keys_anywhere(result.payload) if is_secret_key(str(k))]
    scrub_body(body)


@FUZZ
@given(st.binary(max_size=2000))
def test_fuzz_bytes_never_raise(body: bytes) -> None:
    check(body)


@FUZZ
@given(NOTIFICATION, st.booleans())
def test_fuzz_notifications_never_raise(obj: dict[str, Any], enveloped: bool) -> None:
    check(v2(obj) if enveloped else v1(obj))


@FUZZ
@given(JSON, st.sampled_from(["2.0", "2.1", "1.0", 2, None]))
def test_fuzz_any_json_and_envelopes_never_raise(obj: Any, version: Any) -> None:
    check(v1(obj))
    check(json.dumps({"oslo.version": version, "oslo.message": obj}).encode())
    check(json.dumps({"oslo.version": version, "oslo.message": json.dumps(obj)}).encode())
