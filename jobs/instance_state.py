"""The keyed instance job: one state machine per nova instance, inside the jobs' Flink job.

Kafka -> SQL (JSON, event time from ``generated``, watermark, only the event types
``conf/lifecycle.yaml`` maps) -> DataStream keyed by (cell, instance_id) ->
:class:`InstanceFunction`, which drives the pure core (jobs/lifecycle.py, usage.py, audit.py)
-> four side outputs -> ``instances``, ``instance_events``, ``instance_usage``,
``usage_audit`` in Iceberg, appended with revisions (:func:`stacktide.schema.with_revision`).

Timers do the waiting: a period's usage is emitted when the watermark passes its end
(``usage.next_due``), an exists is verified once its settle time passed, the ``instances``
row is re-emitted when the watermark passes the event that changed it (a burst of
notifications makes one row), and a deleted instance's state is cleared once the watermark
is the allowed lateness past ``deleted_at``. Flink's state TTL is not used: it counts
processing time (it would drop a quiet live instance), and in PyFlink it switches the
Python state cache off for every state of the operator.

At the end of a bounded input the watermark jumps to +inf and every timer fires. Usage then
stops at the newest event time of the input (the event clock) minus the out-of-orderness
(where a streaming run's watermark would stop on the same data, not at the end of time), and
pending exists are decided: no more input can come in this run. Revisions only grow per key,
across runs: a run starts them above every revision already in the tables
(:func:`first_revision`).
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from jobs import lifecycle as lc
from jobs import usage
from jobs.audit import AuditResult, Mismatch, missing_exists, periodic, verify
from jobs.keyed_source import MAX_WATERMARK, MS, EventClock, ceil_ms, digest, row_type, table_row
from jobs.sqlfile import Ident, Literal, Raw, render
from stacktide.config import Config
from stacktide.schema import TABLES, Envelope, format_time

if TYPE_CHECKING:
    from pyflink.datastream import KeyedBroadcastProcessFunction
    from pyflink.table import StatementSet, StreamTableEnvironment
else:
    from pyflink.datastream import KeyedBroadcastProcessFunction

UID = "instance-state"  # operator uid: keep it, or a restart cannot find the state
UID_JVM = "instance-state-jvm"  # the same job's logic in the JVM: other state, other uid
SOURCE, GROUP_ID = "kafka_instance_notifications", "stacktide-jobs-instances"
OUTPUTS = ("instances", "instance_events", "instance_usage", "usage_audit")
REVISED = ("instances", "instance_usage", "usage_audit")
KEY = "CONCAT(COALESCE(`cell`, ''), '/', `instance_id`)"  # SQL over the query's columns
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LOG_FIRST_LATE, LOG_EVERY_LATE = 20, 1000  # late events logged one by one, then every 1000th
log = logging.getLogger(__name__)


def _instant(us: int) -> str:
    """*us* in the topic's time form, for a log line."""
    try:
        return format_time(_EPOCH + timedelta(microseconds=us))
    except OverflowError:  # the watermark before any: far outside datetime's years
        return str(us)


@dataclass(frozen=True, slots=True)
class Timing:
    """The job's clocks, in µs: usage period, watermark delay, allowed lateness, audit settle,
    and how long after an instance was last heard of its usage is held (0: never)."""

    period: int
    out_of_order: int
    lateness: int
    settle: int
    silence: int = 0
    audit_expected: bool = False  # nova runs its periodic audit: flag periods without exists


@dataclass(slots=True)
class Keep:
    """What one instance keeps in Flink state: the Python object stays in PyFlink's state
    cache between bundles and is pickled once per bundle that changed it."""

    state: lc.InstanceState
    base: int  # revisions of this key's rows start here (see first_revision)
    book: usage.Book = field(default_factory=usage.Book)
    pending: dict[str, lc.Observation] = field(default_factory=dict)  # exists, by message id
    audited: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # key: at, rev, digest
    row: tuple[int, int] = (-1, 0)  # instances row emitted: revision, digest
    dirty: bool = False  # folded events not yet in an emitted instances row
    timers: set[int] = field(default_factory=set)  # ms, registered and not yet fired
    watermark: int = -lc.END  # the newest watermark this key saw, µs: it never goes back
    heard: int = -lc.END  # the newest event time of any notification about it, exists too
    periodic: set[int] = field(default_factory=set)  # periods a periodic exists arrived for
    checked: int | None = None  # missing exists looked for in the periods before this one

    # Pickled (what Flink stores) with the state machine and the Book in usage.dumps' compact
    # form: a third of the plain pickle (bench/bench_state_job.py measures both).
    def __getstate__(self) -> tuple[Any, ...]:
        return (usage.dumps(self.state, self.book), self.base, self.pending, self.audited,
                self.row, self.dirty, self.timers, self.watermark, self.heard, self.periodic,
                self.checked)

    def __setstate__(self, packed: tuple[Any, ...]) -> None:
        data, self.base, self.pending, self.audited, self.row, self.dirty, self.timers, \
            self.watermark, self.heard, self.periodic, self.checked = packed
        self.state, self.book = usage.loads(data)


class InstanceFunction(EventClock, KeyedBroadcastProcessFunction):  # type: ignore[misc]
    """The per-instance state machine, usage windows and exists audit, driven by Flink; the
    broadcast side is the event clock (:class:`jobs.keyed_source.EventClock`)."""

    def __init__(self, timing: Timing, base: int = 0, rules_path: str | None = None) -> None:
        self.timing, self.base, self.rules_path = timing, base, rules_path

    def open(self, runtime_context: Any) -> None:
        import orjson  # apache-beam's dependency: 3-4x faster than json on payloads
        from pyflink.common import Row, Types
        from pyflink.datastream import OutputTag
        from pyflink.datastream.state import ValueStateDescriptor

        self.loads, self.Row, self.rules = orjson.loads, Row, lc.load_rules(self.rules_path)
        self.keep = runtime_context.get_state(
            ValueStateDescriptor("instance", Types.PICKLED_BYTE_ARRAY()))
        self.tags = {name: OutputTag(name, row_type(TABLES[name])) for name in OUTPUTS}
        metrics = runtime_context.get_metrics_group()
        self.late, self.duplicates = metrics.counter("late_events"), metrics.counter("duplicates")
        # Late events this subtask skipped, what the log lines count: kept here, not read
        # back from the counter, whose get_count goes through Beam's current metrics container.
        self.skipped = 0
        self.open_clock()

    def process_element(self, r: Any, ctx: Any) -> Iterator[Any]:
        env = Envelope(r[0], r[1], "", "", "", r[2], None, None, None, r[3], "", r[4], None, None,
                       None, r[5], r[6], self.loads(r[7]) if r[7] else None)
        if (obs := lc.observe(env, self.rules)) is None:
            return
        self.saw(obs.at)
        keep: Keep | None = self.keep.value()
        wm = max(ctx.timer_service().current_watermark() * MS, keep.watermark if keep else -lc.END)
        if keep is None and obs.at < wm - self.timing.lateness:
            self.skip_late(obs, wm)  # too late for an instance this job no longer (or never) tracked
            return
        if keep is not None and lc.is_late(keep.state, obs):
            self.skip_late(obs, wm)  # the state is left as it was (not even its clocks move)
            return
        keep = keep or Keep(lc.InstanceState(obs.cell, obs.instance_id), self.base)
        keep.watermark, keep.heard = wm, max(keep.heard, obs.at)
        if obs.effect.audit:
            if obs.message_id in keep.pending or obs.key in keep.audited:
                self.duplicates.inc()  # verified again: a row only if the verdict changed
            keep.pending[obs.message_id] = obs
            # Only read to flag a missing exists, and pruned only there: kept only then.
            start = periodic(obs, self.timing.period) if self.timing.audit_expected else None
            if start is not None:
                keep.periodic.add(start)
            yield from self.settle(keep, wm, arrived=obs.message_id)
        elif _seen(keep.state, obs):
            self.duplicates.inc()
        else:
            state, book = usage.step(keep.state, keep.book, obs)
            if state is not keep.state:
                if (event := usage.event_row(obs)) is not None:
                    yield self.emit("instance_events", event)
                keep.state, keep.book, keep.dirty = state, book, True
                if book.dirty_from is not None and book.emitted_until is not None and \
                        book.dirty_from < book.emitted_until:  # a late event: correct now
                    yield from self.advance(keep, wm)
        self.schedule(keep, ctx, flush_at=obs.at)
        self.keep.update(keep)

    def skip_late(self, obs: lc.Observation, watermark: int) -> None:
        """Count a late event, and log it (a bounded number of times): a skipped event is usage
        nobody is billed for, and its time against the watermark's tells an operator why."""
        self.late.inc()
        self.skipped += 1
        if self.skipped <= LOG_FIRST_LATE or self.skipped % LOG_EVERY_LATE == 0:
            log.warning("late event skipped (%d so far): %s of instance %s/%s at %s, message %s; "
                        "watermark %s", self.skipped, obs.event_type, obs.cell, obs.instance_id,
                        _instant(obs.at), obs.message_id, _instant(watermark))

    def on_timer(self, timestamp: int, ctx: Any) -> Iterator[Any]:
        keep: Keep | None = self.keep.value()
        if keep is None:
            return
        keep.timers.discard(timestamp)
        current = ctx.timer_service().current_watermark()
        final = current >= MAX_WATERMARK
        # At the end of input: the newest event time of the input (kept across restarts by the
        # event clock; an instance's own newest time may be later than its last minute's).
        keep.watermark = now = max(
            max(self.newest(ctx), keep.heard) - self.timing.out_of_order if final
            else current * MS, keep.watermark)
        deleted = final and keep.state.deleted_at is not None
        yield from self.advance(keep, lc.END - 1 if deleted else now)  # a deletion ends usage
        keep.state, keep.book = usage.compact(keep.state, keep.book, self.timing.period,
                                              now - self.timing.lateness)
        yield from self.settle(keep, lc.END if final else now)
        if self.timing.audit_expected:
            yield from self.missing(keep, now - self.timing.settle)  # even at the end: an
            # audit runs after its period, and the input may end before it did
        waiting = {o.key for o in keep.pending.values()}  # forget only decided exists
        keep.audited = {k: v for k, v in keep.audited.items()
                        if v[0] >= keep.state.horizon or k in waiting}
        if keep.dirty:
            yield from self.flush(keep)
        if self.finished(keep, now):
            self.keep.clear()
            return
        if not final:  # at +inf a timer fires at once, again and again
            self.schedule(keep, ctx, flush_at=None)
        self.keep.update(keep)

    def advance(self, keep: Keep, now: int) -> Iterator[Any]:
        """Emit usage up to *now*, or, for an instance silent longer than the silence limit,
        up to that limit: its periods after it are held until it is heard of again (then
        written in one go, exact), so a missed delete or a replay of old traffic does not
        bill an instance for years nobody saw it in."""
        if self.held(keep, now):
            now = keep.heard + self.timing.silence
        keep.book, rows = usage.advance(keep.state, keep.book, self.rules, self.timing.period, now)
        for row in rows:
            yield self.emit("instance_usage", {**row.record(), "revision": keep.base + row.revision})

    def held(self, keep: Keep, at: int) -> bool:
        """Whether usage at *at* is held: silent too long, and not known to be deleted (a
        deletion ends the existence, so every period up to it is known)."""
        return bool(self.timing.silence) and keep.state.deleted_at is None and \
            at > keep.heard + self.timing.silence

    def settle(self, keep: Keep, now: int, arrived: str | None = None) -> Iterator[Any]:
        """Verify the pending exists whose settle time passed; one that just *arrived* is
        written at once, as ``pending`` when it must wait."""
        for mid, obs in list(keep.pending.items()):
            result = verify(keep.state, obs, now=now, settle=self.timing.settle,
                            period=self.timing.period)
            if result.status != "pending":
                del keep.pending[mid]
            elif mid != arrived:
                continue
            yield from self.audit_row(keep, obs, result)

    def missing(self, keep: Keep, until: int) -> Iterator[Any]:
        """Flag the periods ending by *until* (their settle time passed) in which the instance
        existed as nova's audit reports it but no periodic exists arrived: a ``failed`` row
        named ``missing:<cell>:<instance>:<period start>``, once."""
        window, period = usage.existence(keep.state), self.timing.period
        if window is None:
            return
        start = usage.period_of(window[0], period) if keep.checked is None else keep.checked
        stop = usage.period_of(min(until, window[1] + period), period)
        if stop <= start:
            return
        for begin in missing_exists(keep.state, self.rules, keep.periodic, start, stop, period):
            state = keep.state
            name = f"missing:{state.cell}:{state.instance_id}:{_iso(begin)}"
            result = AuditResult(name,
                                 state.cell, state.instance_id, begin, begin + period, "failed",
                                 (Mismatch("exists", "a periodic exists for the period", None),))
            yield self.emit("usage_audit", {**result.record(), "revision": keep.base})
        keep.checked = stop
        keep.periodic = {p for p in keep.periodic if p >= stop}

    def audit_row(self, keep: Keep, obs: lc.Observation, result: AuditResult) -> Iterator[Any]:
        at, revision, old = keep.audited.get(obs.key, (obs.at, -1, 0))
        new = digest((result.status, result.mismatches))
        if new != old:
            keep.audited[obs.key] = (at, revision + 1, new)
            yield self.emit("usage_audit", {**result.record(), "revision": keep.base + revision + 1})

    def flush(self, keep: Keep) -> Iterator[Any]:
        row = usage.instance_row(keep.state, self.rules)
        new, keep.dirty = digest(tuple(row.values())), False
        if new != keep.row[1]:
            keep.row = (keep.row[0] + 1, new)
            yield self.emit("instances", {**row, "revision": keep.base + keep.row[0]})

    def finished(self, keep: Keep, now: int) -> bool:
        """Deleted, every period emitted, nothing pending, and past the allowed lateness."""
        deleted, window = keep.state.deleted_at, usage.existence(keep.state)
        if self.timing.audit_expected and window is not None and (keep.checked or -lc.END) < \
                usage.period_of(window[1] - 1, self.timing.period) + self.timing.period:
            return False  # a period it existed in still waits for its exists
        return (deleted is not None and not keep.pending and not keep.dirty
                and usage.next_due(keep.state, keep.book, self.timing.period) is None
                and now >= deleted + self.timing.lateness)

    def schedule(self, keep: Keep, ctx: Any, flush_at: int | None) -> None:
        """Register the timers the instance now needs, each once."""
        t = self.timing
        row_due = usage.next_due(keep.state, keep.book, t.period)
        want = {None if row_due is not None and self.held(keep, row_due) else row_due}
        want.update(max(o.at, o.values.get("audit_period_ending") or o.at) + t.settle
                    for o in keep.pending.values())
        if keep.state.deleted_at is not None:
            want.add(keep.state.deleted_at + t.lateness)
        if t.audit_expected and (window := usage.existence(keep.state)) is not None:
            first = usage.period_of(window[0], t.period) if keep.checked is None else keep.checked
            if first < window[1]:
                want.add(first + t.period + t.settle)  # the next period to look for its exists
        # Never at or before the watermark: PyFlink fires such a timer within the same advance,
        # and one registered again there would fire forever. The next advance is soon enough.
        floor = keep.watermark // MS + 1 if keep.watermark > -lc.END else -lc.END
        due = {max(ceil_ms(w), floor) for w in want if w is not None and w < lc.END}
        if keep.dirty and flush_at is not None and \
                not any(d <= max(ceil_ms(flush_at), floor) for d in due | keep.timers):
            due.add(max(ceil_ms(flush_at), floor))  # when the watermark passes this event
        for ms in due - keep.timers:
            ctx.timer_service().register_event_time_timer(ms)
            keep.timers.add(ms)

    def emit(self, name: str, record: dict[str, Any]) -> tuple[Any, Any]:
        return self.tags[name], table_row(self.Row, name, record)


def _iso(us: int) -> str:
    return (_EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _seen(state: lc.InstanceState, obs: lc.Observation) -> bool:
    """Whether *obs* (same time, same message key) is folded in already: a redelivery."""
    samples = state.samples
    i = bisect_left(samples, (obs.at, obs.key), key=lambda s: (s.at, s.key))
    return i < len(samples) and (samples[i].at, samples[i].key) == (obs.at, obs.key)


def timing_of(config: Config) -> Timing:
    """Period and settle from ``usage``; the allowed lateness is ``jobs.dedup_ttl_hours``,
    the one "how far back the jobs remember" setting."""
    return Timing(config.usage.period_us, int(config.jobs.out_of_order_s * 1e6),
                  int(config.jobs.dedup_ttl_hours * 3600e6), int(config.usage.settle_seconds * 1e6),
                  int(config.usage.max_silence_hours * 3600e6), config.usage.audit_expected)


def first_revision(config: Config) -> int:
    """One more than any revision in the tables (from the files' column bounds, no data read):
    a run that starts without state (a first run, ``--fresh``, or after a bounded run, whose
    checkpoints Flink discards when it finishes) re-derives rows that then outrank old ones."""
    from stacktide.catalog import load_catalog

    catalog, highest = load_catalog(config.iceberg), -1
    for name in REVISED:
        files = catalog.load_table(f"{config.iceberg.namespace}.{name}").inspect.files()
        for metrics in files.column("readable_metrics").to_pylist() if files.num_rows else ():
            highest = max(highest, (metrics["revision"] or {}).get("upper_bound") or 0)
    return highest + 1


def event_filter(rules: lc.Rules) -> str:
    """SQL condition on ``event_type`` passing (a superset of) what *rules* map."""
    exact = [e for e in rules.events if "*" not in e]
    terms = [f"`event_type` IN ({', '.join(Literal(e).render() for e in exact)})"] if exact else []
    terms += [f"`event_type` LIKE {Literal(e.replace('*', '%')).render()}"
              for e in rules.events if "*" in e]
    return " OR ".join(terms) or "FALSE"


def build(env: StreamTableEnvironment, statements: StatementSet, config: Config, *,
          bounded: bool, from_earliest: bool, timing: Timing | None = None,
          rules_path: str | None = None) -> None:
    """Add the keyed instance job to *statements*: Kafka -> SQL -> Python -> four tables.
    *from_earliest*: read the whole topic (there is no state to resume from)."""
    from pyflink.common import Types

    from jobs.keyed_source import append_side_outputs, declare_source, keyed_with_clock

    timing = timing or timing_of(config)
    declare_source(env, config, table=SOURCE, group_id=GROUP_ID, out_of_order_us=timing.out_of_order,
                   bounded=bounded, from_earliest=from_earliest)
    query = env.sql_query(render("instance_notifications", source=Ident(SOURCE),
                                 event_filter=Raw(event_filter(lc.load_rules(rules_path)))))
    if config.jobs.instance_operator == "jvm":
        out = _jvm(env, query, timing, first_revision(config), rules_path)
        append_side_outputs(env, statements, config, out, OUTPUTS, "instance_state", jvm=True)
        return
    keyed = keyed_with_clock(env, query, KEY, "instance_state")
    function = InstanceFunction(timing, first_revision(config), rules_path)
    out = keyed.process(function, output_type=Types.STRING()).uid(UID).name(UID)
    append_side_outputs(env, statements, config, out, OUTPUTS, "instance_state")


def _jvm(env: StreamTableEnvironment, query: Any, timing: Timing, base: int,
         rules_path: str | None) -> Any:
    """The same job with its logic in the JVM (``stacktide.lifecycle.InstanceFunction`` of
    jvm/operators): the keyed rows and the event clock as the Python function gets them."""
    import json

    from pyflink.java_gateway import get_gateway

    from jobs.keyed_source import jvm_keyed

    gateway = get_gateway()
    clocks = gateway.new_array(gateway.jvm.long, 6)
    for i, v in enumerate((timing.period, timing.out_of_order, timing.lateness, timing.settle,
                           timing.silence, int(timing.audit_expected))):
        clocks[i] = v
    rules = json.dumps(lc.rules_document(lc.load_rules(rules_path)))
    return jvm_keyed(env, query, KEY, "instance_state",
                     gateway.jvm.stacktide.lifecycle.InstanceFunction, (rules, clocks, base),
                     {name: row_type(TABLES[name]) for name in OUTPUTS}, UID_JVM)
