"""The statsd codec and the aggregator against well-formed, malformed and fuzzed input."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.udp_aggregate import Aggregator
from stacktide.statsd import MalformedLine, encode_line, pack, parse_line

TAGS = {"host": "cmp1", "instance": "6695eb01-f6a4-8304-79aa-97f2502e193f"}


def test_round_trip_of_a_tagged_counter() -> None:
    line = encode_line("disk.device.read.bytes", 4096, "counter", {**TAGS, "device": "vda", "unit": "B"})
    assert line == (b"disk.device.read.bytes:4096|c|#host:cmp1,"
                    b"instance:6695eb01-f6a4-8304-79aa-97f2502e193f,device:vda,unit:B")
    parsed = parse_line(line)
    assert (parsed.meter, parsed.value, parsed.meta.kind) == ("disk.device.read.bytes", 4096.0, "counter")
    assert parsed.meta.resource_id == "6695eb01-f6a4-8304-79aa-97f2502e193f-vda"
    assert parsed.meta.unit == "B"


def test_sample_rate_and_floats_are_read() -> None:
    parsed = parse_line(b"memory.usage:12.5|g|@0.5|#host:h,instance:i")
    assert (parsed.value, parsed.meta.kind, parsed.meta.resource_id) == (12.5, "gauge", "i")


@pytest.mark.parametrize("line, reason", [
    (b"cpu", "not meter:value|type"),
    (b"cpu:|c|#host:h,instance:i", "not meter:value|type"),
    (b"cpu:abc|c|#host:h,instance:i", "not meter:value|type"),
    (b"cpu:nan|c|#host:h,instance:i", "not meter:value|type"),
    (b"cpu:1", "not meter:value|type"),
    (b"cpu:1|s|#host:h,instance:i", "unknown type"),
    (b"cpu:1|c|#host:h", "missing tag"),
    (b"cpu:1|c|#host:h,instance", "bad tag"),
    (b"cpu:1|c|x|#host:h,instance:i", "unknown field"),
    (b"cpu:1|c|#host:h,instance:\xff", "not UTF-8"),
])
def test_malformed_lines_name_their_reason(line: bytes, reason: str) -> None:
    with pytest.raises(MalformedLine) as err:
        parse_line(line)
    assert err.value.reason == reason
    agg = Aggregator()
    agg.add_datagram(line, 0.0)
    assert (agg.stats.malformed, agg.stats.reasons, len(agg)) == (1, {reason: 1}, 0)


def test_encoder_refuses_what_the_format_cannot_carry() -> None:
    bads = ({"host": "a,b", "instance": "i"}, {"host": "h", "instance": "i|x"}, {"host": "", "instance": "i"})
    for bad in bads:
        with pytest.raises(ValueError):
            encode_line("cpu", 1, "counter", bad)
    with pytest.raises(ValueError):
        encode_line("cpu", math.inf, "counter", TAGS)


def test_pack_never_exceeds_the_datagram_size_unless_a_line_alone_does() -> None:
    lines = [encode_line("cpu", i, "counter", {**TAGS, "device": f"d{i}"}) for i in range(100)]
    datagrams = list(pack(lines, 512))
    assert all(len(d) <= 512 for d in datagrams)
    assert b"\n".join(datagrams).split(b"\n") == lines
    assert list(pack([b"x" * 600, b"y"], 512)) == [b"x" * 600, b"y"]


def test_aggregator_counts_min_max_sum_last_and_merges_tag_orders() -> None:
    agg = Aggregator()
    agg.add_datagram(b"cpu:10|c|#host:h,instance:i\ncpu:30|c|#host:h,instance:i", 100.0)
    agg.add_datagram(b"cpu:20|c|#instance:i,host:h\n\nmemory.usage:5|g|#host:h,instance:i", 101.0)
    agg.add_datagram(b"cpu:5|c|#host:h2,instance:i", 102.0)
    records = {(r.host, r.meter): r for r in agg.drain()}
    cpu = records[("h", "cpu")]
    assert (cpu.count, cpu.min, cpu.max, cpu.sum, cpu.last) == (3, 10.0, 30.0, 60.0, 20.0)
    assert cpu.last_at.startswith("1970-01-01T00:01:41")
    assert records[("h", "memory.usage")].kind == "gauge"
    assert records[("h2", "cpu")].last == 5.0
    assert len(agg) == 0 and agg.drain() == []


def test_series_beyond_the_limit_are_counted_not_kept() -> None:
    agg = Aggregator(max_series=2)
    agg.add_datagram(b"\n".join(f"m{i}:1|g|#host:h,instance:i".encode() for i in range(5)), 0.0)
    agg.add_datagram(b"m0:2|g|#host:h,instance:i", 0.0)
    assert (len(agg), agg.stats.over_limit) == (2, 3)
    assert {r.meter: r.count for r in agg.drain()} == {"m0": 2, "m1": 1}


_UNPRINTABLE: Any = ("Cs", "Cc", "Zl", "Zp", "Co", "Cn", "Zs", "Cf")
_tag_text = st.text(st.characters(blacklist_characters=",|#\n:", blacklist_categories=_UNPRINTABLE),
                    min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(meter=_tag_text, value=st.floats(allow_nan=False, allow_infinity=False, width=64),
       kind=st.sampled_from(["counter", "gauge", "timer"]), host=_tag_text, instance=_tag_text)
def test_what_the_encoder_writes_the_parser_reads(meter: str, value: float, kind: str, host: str,
                                                  instance: str) -> None:
    parsed = parse_line(encode_line(meter, value, kind, {"host": host, "instance": instance}))
    assert (parsed.meter, parsed.value, parsed.meta.kind, parsed.meta.host) == (meter, value, kind, host)


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.one_of(
    st.binary(max_size=80),
    st.sampled_from([b"cpu:1|c|#host:h,instance:i", b"cpu:1e400|c|#host:h,instance:i", b":1|c",
                     b"cpu:-0|g|#host:h,instance:i", b"a:1|c|#host:h,instance:i,device:vda"]),
    st.text(max_size=60).map(str.encode)), max_size=20))
def test_no_datagram_crashes_the_aggregator(parts: list[bytes]) -> None:
    """Every line is either folded into a series or counted as malformed, whatever the bytes."""
    agg = Aggregator()
    data = b"\n".join(parts)
    agg.add_datagram(data, 0.0)
    records = agg.drain()
    lines = [p for p in data.split(b"\n") if p]
    assert agg.stats.lines == len(lines)
    assert sum(r.count for r in records) + agg.stats.malformed == len(lines)
    for r in records:
        assert r.min <= r.last <= r.max and math.isfinite(r.sum)
