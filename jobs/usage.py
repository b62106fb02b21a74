"""Exact usage per instance x period x flavor, and the other rows the keyed instance job writes.

Existence runs from the first ``launched_at`` to ``deleted_at`` (payload values, not event
times) except in states ``conf/lifecycle.yaml`` marks as not existing (shelved_offloaded);
running is existence in a ``running`` state. All in integer microseconds: a period's
seconds are the exact sum of its pieces, never floats accumulated event by event.

The :class:`Book` keeps (revision, digest) of each emitted row late events can still change.
:func:`advance` emits the periods the watermark completed and the rows a late event changed
(``revision`` + 1; a row left without usage once as zeros), so an upsert by (cell, instance,
period, flavor) never counts a period twice. :func:`compact` forgets what is past lateness.
"""

from __future__ import annotations

import hashlib
import json
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import astuple, dataclass, field, replace
from typing import Any, NamedTuple

from jobs import lifecycle as lc
from jobs.lifecycle import END, FLAVOR, IMAGE, LAUNCHED, STATE, Flavor, Image, InstanceState, Sample

PERIODS = {"hour": 3_600_000_000, "day": 86_400_000_000}


def period_of(at: int, period: int) -> int:
    """Start of the UTC period holding *at* (epoch-aligned: hours and days align in UTC)."""
    return at - at % period


@dataclass(frozen=True, slots=True)
class UsageRow:
    cell: str
    instance_id: str
    tenant_id: str | None
    period_start: int
    period_end: int
    flavor_id: str
    vcpus: int | None
    memory_mb: int | None
    disk_gb: int | None
    microseconds: int
    running_microseconds: int
    launched_at: int | None
    deleted_at: int | None
    revision: int = 0

    def digest(self) -> int:
        """Identity of the row's content (everything but the revision), for the Book."""
        text = repr(replace(self, revision=0)).encode()
        return int.from_bytes(hashlib.blake2b(text, digest_size=6).digest())

    def record(self) -> dict[str, Any]:
        """The ``instance_usage`` row (CONTRACT.md §3); seconds are µs / 1e6, exact to the µs."""
        t = lc.when
        return {"cell": self.cell, "instance_id": self.instance_id, "tenant_id": self.tenant_id,
                "period_start": t(self.period_start), "period_end": t(self.period_end),
                "flavor_id": self.flavor_id, "vcpus": self.vcpus, "memory_mb": self.memory_mb,
                "disk_gb": self.disk_gb, "seconds": self.microseconds / 1e6,
                "running_seconds": self.running_microseconds / 1e6,
                "microseconds": self.microseconds, "running_microseconds": self.running_microseconds,
                "launched_at": t(self.launched_at), "deleted_at": t(self.deleted_at),
                "revision": self.revision}


class Piece(NamedTuple):
    start: int
    end: int
    flavor: Flavor | None
    running: bool
    launched: int | None


def existence(state: InstanceState) -> tuple[int, int] | None:
    """[first launched_at, deleted_at), not before the stream first saw the instance (one
    launched years before stacktide started is not back-billed); None before any launch."""
    if state.first_launched is None or state.observed_from is None:
        return None
    return (max(state.first_launched, state.observed_from),
            END if state.deleted_at is None else state.deleted_at)


def pieces(state: InstanceState, rules: lc.Rules, lo: int, hi: int) -> Iterator[Piece]:
    """Stretches of [lo, hi) the instance exists in, each with one flavor and running state:
    from each snapshot to the next (values it does not set carry over; before the first
    snapshot, the earliest known values hold)."""
    window = existence(state)
    if window is None:
        return
    lo, hi = max(lo, window[0]), min(hi, window[1])
    vm, flavor, launched = (lc.latest(state, -END, g) for g in (STATE, FLAVOR, LAUNCHED))
    starts = [-END, *(s.at for s in state.samples), END]
    for i, start in enumerate(starts[:-1]):
        if i:
            s = state.samples[i - 1]
            vm = s.state or vm
            flavor = s.flavor or flavor
            launched = launched if s.launched is None else s.launched
        a, b = max(start, lo), min(starts[i + 1], hi)
        meaning = rules.meaning(vm)
        if a < b and meaning.exists:
            yield Piece(a, b, flavor, meaning.running, launched)
        if starts[i + 1] >= hi:
            return


def usage(state: InstanceState, rules: lc.Rules, period: int, lo: int, hi: int
          ) -> dict[tuple[int, str], UsageRow]:
    """Rows (revision 0) of the periods starting in [lo, hi), by (period_start, flavor_id)."""
    rows: dict[tuple[int, str], UsageRow] = {}
    tenant = state.register("tenant_id")
    for p in pieces(state, rules, period_of(lo, period), hi if hi % period == 0 else
                    period_of(hi, period) + period):
        start = p.start
        while start < p.end:
            ps = period_of(start, period)
            end = min(p.end, ps + period)
            f = p.flavor or Flavor("")
            old = rows.get((ps, f.flavor_id))
            secs = end - start + (old.microseconds if old else 0)
            run = (end - start if p.running else 0) + (old.running_microseconds if old else 0)
            disk = None if f.root_gb is None else f.root_gb + (f.ephemeral_gb or 0)
            deleted = state.deleted_at if state.deleted_at is not None and (
                ps < state.deleted_at <= ps + period) else None
            rows[ps, f.flavor_id] = UsageRow(
                state.cell, state.instance_id, tenant, ps, ps + period, f.flavor_id, f.vcpus,
                f.memory_mb, disk, secs, run, p.launched, deleted)
            start = end
    return rows


@dataclass(frozen=True, slots=True)
class Book:
    """What was emitted: (revision, digest) per (period_start, flavor_id) not yet compacted."""

    rows: dict[tuple[int, str], tuple[int, int]] = field(default_factory=dict)
    emitted_until: int | None = None  # every period ending at or before this was emitted
    dirty_from: int | None = None  # earliest instant a folded event may have changed


def step(state: InstanceState, book: Book, obs: lc.Observation) -> tuple[InstanceState, Book]:
    """Apply *obs* and remember from when usage may have changed."""
    new = lc.apply(state, obs)
    if new is state:
        return state, book
    touched = [obs.at, *(v for k in ("launched_at", "deleted_at")
                         if isinstance(v := obs.values.get(k), int))]
    dirty = min(touched) if book.dirty_from is None else min(book.dirty_from, *touched)
    return new, replace(book, dirty_from=dirty)


def advance(state: InstanceState, book: Book, rules: lc.Rules, period: int, watermark: int
            ) -> tuple[Book, list[UsageRow]]:
    """Emit the rows of periods completed by *watermark* and those late events changed."""
    window = existence(state)
    if window is None:
        return book, []
    upto = period_of(watermark, period)
    if window[1] < END:
        upto = min(upto, period_of(window[1] - 1, period) + period)
    lo = period_of(window[0], period) if book.emitted_until is None else book.emitted_until
    if book.dirty_from is not None:
        lo = min(lo, period_of(book.dirty_from, period))
    lo = max(lo, state.horizon)
    fresh = usage(state, rules, period, lo, upto) if lo < upto else {}
    out, rows = [], dict(book.rows)
    for k in sorted({k for k in book.rows if k[0] >= lo} | set(fresh)):
        row = fresh.get(k) or UsageRow(state.cell, state.instance_id, state.register("tenant_id"),
                                       k[0], k[0] + period, k[1], None, None, None, 0, 0, None, None)
        old, digest = rows.get(k), row.digest()
        if old is None or old[1] != digest:
            row = replace(row, revision=0 if old is None else old[0] + 1)
            rows[k] = (row.revision, digest)
            out.append(row)
    until = upto if book.emitted_until is None else max(book.emitted_until, upto)
    return Book(rows, until, None), out


def compact(state: InstanceState, book: Book, period: int, horizon: int
            ) -> tuple[InstanceState, Book]:
    """Fold samples before the period-aligned *horizon* (never one not yet emitted) into one
    base sample and drop earlier rows from the Book; events before it are then refused."""
    if book.emitted_until is not None:
        horizon = min(horizon, book.emitted_until)
    horizon = period_of(horizon, period)
    if horizon <= state.horizon:
        return state, book
    cut = bisect_left(state.samples, horizon, key=lambda s: s.at)
    old = replace(state, samples=state.samples[:cut])
    base = Sample(horizon, -1, lc.latest(old, horizon, STATE), lc.latest(old, horizon, FLAVOR),
                  lc.latest(old, horizon, IMAGE), lc.latest(old, horizon, LAUNCHED))
    samples = (base, *state.samples[cut:]) if cut else state.samples
    rows = {k: v for k, v in book.rows.items() if k[0] >= horizon}
    return replace(state, samples=samples, horizon=horizon), replace(book, rows=rows)


def next_due(state: InstanceState, book: Book, period: int) -> int | None:
    """When the next period completes that :func:`advance` must emit; None if none will."""
    window = existence(state)
    if window is None:
        return None
    start = period_of(window[0], period) if book.emitted_until is None else book.emitted_until
    if window[1] < END and start >= period_of(window[1] - 1, period) + period:
        return None
    return start + period


def dumps(state: InstanceState, book: Book) -> bytes:
    """Compact JSON of the job's per-instance state: values interned, times delta-encoded, a
    sample equal to the previous one but for time and key written as [dt, key]."""
    table: dict[Any, int] = {}

    def ref(x: Any) -> int:
        return -1 if x is None else table.setdefault(x, len(table))

    samples, prev, last = [], 0, None
    for s in state.samples:
        vals = [ref(s.state), ref(s.flavor), ref(s.image), ref(s.launched)]
        samples.append([s.at - prev, s.key, *([] if vals == last else vals)])
        prev, last = s.at, vals
    regs: dict[tuple[int, int], dict[str, Any]] = {}
    for name, (at, key, value) in state.registers.items():
        regs.setdefault((at, key), {})[name] = value
    rows, ps = [], 0
    for (start, flavor), (rev, digest) in sorted(book.rows.items()):
        rows.append([(start - ps) // 1_000_000, ref(flavor), rev, digest])
        ps = start
    doc = [state.cell, state.instance_id, samples, [[*k, v] for k, v in regs.items()],
           [[x.launched, x.at, x.key, ref(x.flavor), ref(x.image)] for x in state.launches],
           [state.first_launched, state.deleted_at, state.observed_from, state.horizon],
           rows, book.emitted_until, book.dirty_from,
           [[type(x).__name__[0], *astuple(x)] if isinstance(x, (Flavor, Image)) else x
            for x in table]]
    return json.dumps(doc, separators=(",", ":")).encode()


def loads(data: bytes) -> tuple[InstanceState, Book]:
    """Inverse of :func:`dumps`."""
    cell, iid, raw, regs, launches, scalars, rows, until, dirty, entries = json.loads(data)
    table = [({"F": Flavor, "I": Image}[x[0]](*x[1:]) if isinstance(x, list) else x)
             for x in entries]

    def get(i: int) -> Any:
        return None if i < 0 else table[i]

    samples, at, vals = [], 0, [-1, -1, -1, -1]
    for d, key, *given in raw:
        at, vals = at + d, given or vals
        samples.append(Sample(at, key, *map(get, vals)))
    first, deleted, seen, horizon = scalars
    registers = {name: (at, key, value) for at, key, names in regs for name, value in names.items()}
    book_rows, ps = {}, 0
    for d, flavor, rev, digest in rows:
        ps += d * 1_000_000
        book_rows[ps, get(flavor)] = (rev, digest)
    state = InstanceState(cell, iid, tuple(samples), registers, first, deleted, seen,
                          tuple(lc.Launch(a, b, c, get(f), get(i)) for a, b, c, f, i in launches),
                          horizon)
    return state, Book(book_rows, until, dirty)


def instance_row(state: InstanceState, rules: lc.Rules) -> dict[str, Any]:
    """The ``instances`` row (CONTRACT.md §3): the newest of everything; times as datetimes."""
    vm, launched = lc.latest(state, END, STATE), lc.latest(state, END, LAUNCHED)
    f, i = lc.latest(state, END, FLAVOR) or Flavor(""), lc.latest(state, END, IMAGE) or Image(None)
    power = state.registers.get("power_state", (0, 0, None))
    vm_stamp = lc.latest(state, END, lambda s: (s.at, s.key) if s.state else None) or (0, 0)
    last = state.registers.get("last_event")
    return {"cell": state.cell, "instance_id": state.instance_id, "state": vm,
        "task_state": state.register("task_state"),
        "power_state": power[2] if power[2] and power[:2] >= vm_stamp else (
            rules.meaning(vm).power_state if vm else None),
        "tenant_id": state.register("tenant_id"), "user_id": state.register("user_id"),
        "flavor_id": f.flavor_id or None, "flavor_name": f.flavor_name, "vcpus": f.vcpus,
        "memory_mb": f.memory_mb, "root_gb": f.root_gb, "ephemeral_gb": f.ephemeral_gb,
        "image_ref": i.image_ref, "os_type": i.os_type, "host": state.register("host"),
        "launched_at": lc.when(launched), "deleted_at": lc.when(state.deleted_at),
        "last_event_type": last[2] if last else None,
        "last_event_at": lc.when(last[0] if last else None),
        "updated_at": lc.when(last[0] if last else None)}


def event_row(obs: lc.Observation) -> dict[str, Any] | None:
    """The ``instance_events`` history row of *obs*; None for audits and no-op events."""
    if obs.effect.audit or not obs.effect.sets:
        return None
    v = obs.values
    return {"message_id": obs.message_id, "cell": obs.cell, "instance_id": obs.instance_id,
            "at": lc.when(obs.at), "event_type": obs.event_type, "old_state": v.get("old_state"),
            "state": v.get("state"), "old_task_state": v.get("old_task_state"),
            "task_state": v.get("task_state"), "flavor_id": v.get("flavor_id"),
            "request_id": obs.request_id}
