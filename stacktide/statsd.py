"""The statsd line codec shared by the host agent (writer) and the UDP receiver (reader).

A line is ``<meter>:<value>|<type>[|@<rate>][|#<tag>:<value>,…]`` (statsd with DogStatsD
tags), several lines per datagram separated by ``\\n``, so any statsd client can send too.
The tags that place a sample are ``host`` (required), ``instance`` (required: the
resource), ``device`` (a disk or interface, optional) and ``unit`` (optional).

The receiver's hot path needs only :func:`split_line`: it aggregates on the raw bytes
after the value (type and tags, as sent) and decodes them with :func:`parse_meta` once per
new series, so a line costs two ``partition`` calls and one ``float``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

KINDS: dict[bytes, str] = {b"c": "counter", b"g": "gauge", b"ms": "timer", b"h": "histogram",
                           b"d": "distribution"}
"""statsd types taken, and the ``kind`` a sample record names them by. The agent sends libvirt's
cumulative counters raw as ``c``; the job derives rates from a counter's ``last``."""

_CODES = {v: k.decode() for k, v in KINDS.items()}
_FORBIDDEN = frozenset(",|#\n:")
REQUIRED_TAGS = ("host", "instance")


class MalformedLine(ValueError):
    """A line that is not ``meter:value|type[|#tags]`` with a host and an instance tag."""

    def __init__(self, line: bytes, reason: str, detail: str = "") -> None:
        self.line, self.reason = line, reason  # reason: one of a few fixed words, for counting
        super().__init__(f"{reason}{' ' + detail if detail else ''}: {line[:200]!r}")


@dataclass(frozen=True, slots=True)
class Meta:
    """What a line's bytes after the value say: kind and tags (the series identity)."""

    kind: str
    tags: dict[str, str]

    @property
    def host(self) -> str:
        return self.tags["host"]

    @property
    def instance(self) -> str:
        return self.tags["instance"]

    @property
    def device(self) -> str | None:
        return self.tags.get("device")

    @property
    def unit(self) -> str | None:
        return self.tags.get("unit")

    @property
    def resource_id(self) -> str:
        """Ceilometer's per-device resource id: ``<instance>-<device>``; else the instance."""
        device = self.device
        return f"{self.instance}-{device}" if device else self.instance


@dataclass(frozen=True, slots=True)
class Line:
    meter: str
    value: float
    meta: Meta


def _check_text(what: str, text: str) -> str:
    if not text or _FORBIDDEN.intersection(text) or not text.isprintable():
        raise ValueError(f"{what} {text!r}: must be non-empty, printable, without , | # : or newline")
    return text


def encode_line(meter: str, value: float, kind: str, tags: dict[str, str]) -> bytes:
    """One line; the value in its shortest exact form (integers without a fraction).

    Raises ValueError for a value that is not finite or names/tags the format cannot carry,
    so a bad sample stops at the sender instead of becoming a malformed line downstream.
    """
    if not math.isfinite(value):
        raise ValueError(f"{meter}: value {value!r} is not finite")
    text = str(int(value)) if float(value).is_integer() and abs(value) < 2**63 else repr(float(value))
    body = ",".join(f"{_check_text('tag', k)}:{_check_text('tag value', v)}" for k, v in tags.items())
    return f"{_check_text('meter', meter)}:{text}|{_CODES[kind]}|#{body}".encode()


def pack(lines: Iterable[bytes], max_bytes: int) -> Iterator[bytes]:
    """Join lines into datagrams of at most *max_bytes* (a longer line goes alone)."""
    batch: list[bytes] = []
    size = 0
    for line in lines:
        extra = len(line) + (1 if batch else 0)
        if batch and size + extra > max_bytes:
            yield b"\n".join(batch)
            batch, size, extra = [], 0, len(line)
        batch.append(line)
        size += extra
    if batch:
        yield b"\n".join(batch)


def split_line(line: bytes) -> tuple[bytes, float, bytes]:
    """``cpu:12|c|#…`` -> (b"cpu", 12.0, b"c|#…"); raises ValueError when there is no value."""
    name, _, rest = line.partition(b":")
    value, sep, meta = rest.partition(b"|")
    number = float(value)
    if not sep or not name or number != number or number in (math.inf, -math.inf):
        raise ValueError(line)
    return name, number, meta


def parse_meta(meta: bytes, line: bytes = b"") -> Meta:
    """Decode the type and tags after a value; raises :class:`MalformedLine` with the reason."""
    try:
        text = meta.decode()
    except UnicodeDecodeError:
        raise MalformedLine(line, "not UTF-8") from None
    fields = text.split("|")
    kind = KINDS.get(fields[0].encode())
    if kind is None:
        raise MalformedLine(line, "unknown type", repr(fields[0]))
    tags: dict[str, str] = {}
    for field in fields[1:]:
        if field.startswith("@"):
            continue  # a sample rate: every line the agent sends is a whole sample
        if not field.startswith("#"):
            raise MalformedLine(line, "unknown field", repr(field))
        for tag in field[1:].split(","):
            key, sep, value = tag.partition(":")
            if not sep or not key or not value or not value.isprintable():
                raise MalformedLine(line, "bad tag", repr(tag))
            tags[key] = value
    missing = [t for t in REQUIRED_TAGS if t not in tags]
    if missing:
        raise MalformedLine(line, "missing tag", " and ".join(missing))
    return Meta(kind, tags)


def parse_line(line: bytes) -> Line:
    """The whole decode of one line (tests, tools); the receiver splits and decodes lazily."""
    try:
        name, value, meta = split_line(line)
        meter = name.decode()
    except (ValueError, UnicodeDecodeError):
        raise MalformedLine(line, "not meter:value|type") from None
    if not meter.isprintable():
        raise MalformedLine(line, "meter not printable")
    return Line(meter, value, parse_meta(meta, line))
