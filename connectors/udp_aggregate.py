"""Per-window aggregation of statsd lines: count, min, max, sum and last per series.

A series is keyed by the raw bytes of a line (meter name, and type plus tags as sent), so a
known series costs a dict look-up and five list updates; its tags are checked the first time
it is seen in a window and decoded again only when the window is drained, so a window holds
raw bytes and six numbers per series (memory per series: bench/bench_udp.py). Two spellings
of one series (tags in another order) are merged when the window is drained. Malformed lines
are counted and dropped: a statsd receiver cannot refuse a datagram, and UDP is lossy by design.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from stacktide.schema import SampleRecord, format_time
from stacktide.statsd import MalformedLine, Meta, parse_meta

# Series list slots: count, min, max, sum, last, last_at (epoch seconds)
_COUNT, _MIN, _MAX, _SUM, _LAST, _AT = range(6)


@dataclass(slots=True)
class AggregateStats:
    """Totals since start (the receiver's metrics read them)."""

    datagrams: int = 0
    lines: int = 0
    malformed: int = 0
    over_limit: int = 0
    records: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime
    series: dict[tuple[bytes, bytes], list[float]]


class Aggregator:
    """One flush window of series; :meth:`drain` hands them over and starts the next."""

    def __init__(self, max_series: int = 1_000_000) -> None:
        self.max_series = max_series
        self.stats = AggregateStats()
        self._series: dict[tuple[bytes, bytes], list[float]] = {}
        self._started = datetime.now(UTC)

    def __len__(self) -> int:
        return len(self._series)

    def add_datagram(self, data: bytes, now: float) -> None:
        """Fold every line of *data* (received at epoch *now*) into the window.

        The hot path: :func:`stacktide.statsd.split_line` inlined (a call per line costs
        a tenth of the line), the line count taken once per datagram."""
        stats = self.stats
        stats.datagrams += 1
        series = self._series
        lines = data.split(b"\n")
        stats.lines += len(lines)
        for line in lines:
            name, _, rest = line.partition(b":")
            text, sep, meta = rest.partition(b"|")
            try:
                value = float(text)
            except ValueError:
                if line:
                    self._reject("not meter:value|type")
                else:
                    stats.lines -= 1  # an empty line (a trailing newline) is no line
                continue
            if not sep or not name or value - value != 0:  # no type, no name, nan or inf
                self._reject("not meter:value|type")
                continue
            key = (name, meta)
            s = series.get(key)
            if s is None:
                if not self._admit(key, line):
                    continue
                series[key] = [1, value, value, value, value, now]
                continue
            s[_COUNT] += 1
            if value < s[_MIN]:
                s[_MIN] = value
            elif value > s[_MAX]:
                s[_MAX] = value
            s[_SUM] += value
            s[_LAST] = value
            s[_AT] = now

    def _admit(self, key: tuple[bytes, bytes], line: bytes) -> bool:
        """Decode and check a new series' tags; False (counted) when the line is malformed."""
        if len(self._series) >= self.max_series:
            self.stats.over_limit += 1
            return False
        try:
            meter = key[0].decode()
            if not meter.isprintable() or any(c in meter for c in "|#,"):
                raise MalformedLine(line, "bad meter name")
            parse_meta(key[1], line)  # checked now, decoded again at the flush: a window keeps bytes only
        except UnicodeDecodeError:
            self._reject("not UTF-8")
            return False
        except MalformedLine as exc:
            self._reject(exc.reason)
            return False
        return True

    def _reject(self, reason: str) -> None:
        self.stats.malformed += 1
        self.stats.reasons[reason] = self.stats.reasons.get(reason, 0) + 1

    def drain(self, now: datetime | None = None) -> list[SampleRecord]:
        """The window's records (merged per host, resource and meter); a new window begins."""
        return self.records(self.swap(now))

    def swap(self, now: datetime | None = None) -> Window:
        """End the window: hand its series over and start an empty one (constant time)."""
        end = now or datetime.now(UTC)
        window = Window(self._started, end, self._series)
        self._started, self._series = end, {}
        return window

    def records(self, window: Window) -> list[SampleRecord]:
        """A swapped-out window as records, merged per host, resource and meter."""
        start, end, series = window.start, window.end, window.series
        merged: dict[tuple[str, str, str], tuple[Meta, str, list[float]]] = {}
        for key, s in series.items():
            meter, meta = key[0].decode(), parse_meta(key[1])
            ident = (meta.host, meta.resource_id, meter)
            have = merged.get(ident)
            if have is None:
                merged[ident] = (meta, meter, s)
                continue
            t = have[2]
            t[_COUNT] += s[_COUNT]
            t[_MIN] = min(t[_MIN], s[_MIN])
            t[_MAX] = max(t[_MAX], s[_MAX])
            t[_SUM] += s[_SUM]
            if s[_AT] >= t[_AT]:
                t[_LAST], t[_AT] = s[_LAST], s[_AT]
        out = list(_records(merged.values(), format_time(start), format_time(end)))
        self.stats.records += len(out)
        return out


def _records(items: Iterable[tuple[Meta, str, list[float]]], start: str, end: str
             ) -> Iterator[SampleRecord]:
    for meta, meter, s in items:
        yield SampleRecord(
            host=meta.host, resource_id=meta.resource_id, instance_id=meta.instance,
            device=meta.device, meter=meter, unit=meta.unit, kind=meta.kind,
            window_start=start, window_end=end,
            last_at=format_time(datetime.fromtimestamp(s[_AT], UTC)),
            count=int(s[_COUNT]), min=s[_MIN], max=s[_MAX], sum=s[_SUM], last=s[_LAST],
        )
