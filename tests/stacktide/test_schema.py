"""The one schema: envelope JSON, timestamps, capture lines, table definitions."""

from __future__ import annotations

from datetime import UTC, datetime

from stacktide.schema import (
    ENVELOPE_COLUMNS,
    NOTIFICATIONS,
    CapturedMessage,
    Envelope,
    flink_type,
    format_time,
    parse_time,
)


def make(**over: object) -> Envelope:
    base: dict[str, object] = dict(
        message_id="m1", cell="c1", exchange="nova", routing_key="notifications.info",
        priority="info", event_type="compute.instance.create.end", publisher_id="compute.h1",
        service="compute", host="h1", generated="2016-01-01T12:00:00.000001Z",
        received="2016-01-01T12:00:01.000000Z", request_id="req-1", global_request_id=None,
        tenant_id="t", user_id="u", instance_id="i-1", format="legacy", payload={"é": [1, None]},
    )
    base.update(over)
    return Envelope(**base)  # type: ignore[arg-type]


def test_envelope_json_round_trip_and_key() -> None:
    env = make()
    assert Envelope.from_json(env.to_json()) == env
    assert env.kafka_key() == b"i-1"
    assert make(instance_id=None).kafka_key() == b"m1"


def test_time_form_is_utc_with_microseconds() -> None:
    naive = datetime(2016, 1, 1, 12, 0, 0)
    assert format_time(naive) == "2016-01-01T12:00:00.000000Z"
    assert parse_time("2016-01-01T12:00:00Z") == naive.replace(tzinfo=UTC)


def test_columns_follow_the_envelope_and_table_is_partitioned_by_day_and_cell() -> None:
    assert [c.name for c in ENVELOPE_COLUMNS] == list(Envelope.__dataclass_fields__)
    assert flink_type(next(c for c in ENVELOPE_COLUMNS if c.name == "generated")) == (
        "TIMESTAMP_LTZ(6) NOT NULL")
    assert [(p.column, p.transform) for p in NOTIFICATIONS.partitions] == [
        ("generated", "day"), ("cell", "identity")]


def test_capture_line_keeps_non_utf8_bytes() -> None:
    body = b'{"a": 1}\xff\xfe'
    msg = CapturedMessage.from_wire("c1", "nova", "notifications.info", body)
    again = CapturedMessage.from_line(msg.to_line())
    assert again.body_bytes() == body
    assert again == msg
