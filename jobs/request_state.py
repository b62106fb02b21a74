"""The request job: one timeline per request, inside the jobs' Flink job.

Kafka -> SQL (notifications with a request id, and every error; event time from
``generated``) -> DataStream keyed in the JVM by ``KEY`` (:func:`jobs.requests.group_key` in
SQL) -> :class:`RequestFunction`,
which drives the pure core (jobs/requests.py) -> side outputs -> ``requests`` and ``errors``
in Iceberg, appended with revisions, and ``<prefix>.alerts`` on Kafka.

An error is written and alerted the moment it arrives, correlated with what its request
holds so far; when more of the request arrives (an error can come before the events that
led to it), its row is written again with a higher revision, not alerted again. A request's
row waits for the watermark: it is written when the watermark passes its newest event (a
burst of notifications makes one row) and again when its inactivity timeout passes, which
closes it (``open`` -> ``ok``/``error``). Its state is kept for the allowed lateness after
that (``jobs.dedup_ttl_hours``), so a late event still corrects the row, then cleared.

At the end of a bounded input the watermark jumps to +inf; the job then takes the newest
event time of its input (the event clock) minus the out-of-orderness as "now", as the
instance job does: a request
that a streaming run would still hold open stays open.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from jobs import requests as rq
from jobs.keyed_source import (
    MAX_WATERMARK,
    MS,
    EventClock,
    ceil_ms,
    digest,
    row_type,
    table_row,
)
from jobs.sqlfile import Ident, Literal, Raw, render
from stacktide.config import Config
from stacktide.schema import TABLES, Envelope

if TYPE_CHECKING:
    from pyflink.datastream import KeyedBroadcastProcessFunction
    from pyflink.table import StatementSet, StreamTableEnvironment
else:
    from pyflink.datastream import KeyedBroadcastProcessFunction

UID = "request-state"  # operator uid: keep it, or a restart cannot find the state
UID_JVM = "request-state-jvm"  # the same job's logic in the JVM: other state, other uid
SOURCE, GROUP_ID = "kafka_request_notifications", "stacktide-jobs-requests"
OUTPUTS = ("requests", "errors")
# The request a notification belongs to (requests.group_key), else the notification alone.
KEY = ("COALESCE(NULLIF(`global_request_id`, ''), NULLIF(`request_id`, ''), "
       "CONCAT('message:', `message_id`))")
ALERTS = "alerts"


@dataclass(frozen=True, slots=True)
class Timing:
    """In µs: watermark delay, inactivity timeout, allowed lateness."""

    out_of_order: int
    timeout: int
    lateness: int


@dataclass(slots=True)
class Keep:
    """What one request keeps in Flink state."""

    timeline: rq.Timeline
    base: int
    row: tuple[int, int] = (-1, 0)  # requests row emitted: revision, digest
    errors: dict[str, tuple[int, int]] = field(default_factory=dict)  # message id: rev, digest
    dirty: bool = False
    closed: bool = False  # the row written last was closed by the inactivity timeout
    timers: set[int] = field(default_factory=set)


class RequestFunction(EventClock, KeyedBroadcastProcessFunction):  # type: ignore[misc]
    """Folds a request's notifications; writes its row, its errors and their alerts. The
    broadcast side is the event clock (:class:`jobs.keyed_source.EventClock`)."""

    def __init__(self, timing: Timing, base: int = 0, rules_path: str | None = None) -> None:
        self.timing, self.base, self.rules_path = timing, base, rules_path

    def open(self, runtime_context: Any) -> None:
        from pyflink.common import Row, Types
        from pyflink.datastream import OutputTag
        from pyflink.datastream.state import ValueStateDescriptor

        self.Row, self.rules = Row, rq.load_rules(self.rules_path)
        self.keep = runtime_context.get_state(
            ValueStateDescriptor("request", Types.PICKLED_BYTE_ARRAY()))
        self.tags = {name: OutputTag(name, row_type(TABLES[name])) for name in OUTPUTS}
        self.tags[ALERTS] = OutputTag(ALERTS, alert_type())
        metrics = runtime_context.get_metrics_group()
        self.duplicates, self.alerted = metrics.counter("duplicates"), metrics.counter("alerts")
        self.open_clock()

    def process_element(self, r: Any, ctx: Any) -> Iterator[Any]:
        payload = orjson.loads(r[11]) if r[11] else None
        env = Envelope(r[0], r[1], "", "", r[3] or "", r[2], None, r[4], r[5], r[6], "", r[7],
                       r[8], r[10], None, r[9], "legacy", payload)
        event = rq.observe(env, self.rules)
        self.saw(event.at)
        key = rq.group_key(event.global_request_id, event.request_id) or f"message:{r[0]}"
        keep: Keep | None = self.keep.value()
        keep = keep or Keep(rq.Timeline(key), self.base)
        if not keep.timeline.add(event):
            self.duplicates.inc()
            return
        keep.dirty, keep.closed = True, False
        if event.fault is not None:
            row = rq.error_row(keep.timeline, event, self.rules)
            self.alerted.inc()
            yield self.tags[ALERTS], self.Row(key, orjson.dumps(rq.alert(row)).decode())
        if any(e.order > event.order for e in keep.timeline.errors()) or event.fault:
            yield from self.errors(keep)  # an error's past or root cause changed
        self.schedule(keep, ctx, flush_at=event.at)
        self.keep.update(keep)

    def on_timer(self, timestamp: int, ctx: Any) -> Iterator[Any]:
        keep: Keep | None = self.keep.value()
        if keep is None:
            return
        keep.timers.discard(timestamp)
        current = ctx.timer_service().current_watermark()
        final = current >= MAX_WATERMARK
        now = max(self.newest(ctx), keep.timeline.last_at) - self.timing.out_of_order if final \
            else current * MS
        closed = now >= keep.timeline.last_at + self.timing.timeout
        yield from self.flush(keep, closed)
        if not final and now >= keep.timeline.last_at + self.timing.timeout + self.timing.lateness:
            self.keep.clear()
            return
        if not final:  # at +inf a timer fires at once, again and again
            self.schedule(keep, ctx, flush_at=None)
        self.keep.update(keep)

    def flush(self, keep: Keep, closed: bool) -> Iterator[Any]:
        keep.dirty, keep.closed = False, closed
        row = rq.request_row(keep.timeline, self.rules, closed)
        if row is None:
            return
        new = digest(tuple(row.values()))
        if new != keep.row[1]:
            keep.row = (keep.row[0] + 1, new)
            yield self.emit("requests", {**row, "revision": keep.base + keep.row[0]})

    def errors(self, keep: Keep) -> Iterator[Any]:
        for row in rq.error_rows(keep.timeline, self.rules):
            revision, old = keep.errors.get(row["message_id"], (-1, 0))
            new = digest(tuple(row.values()))
            if new != old:
                keep.errors[row["message_id"]] = (revision + 1, new)
                yield self.emit("errors", {**row, "revision": keep.base + revision + 1})

    def schedule(self, keep: Keep, ctx: Any, flush_at: int | None) -> None:
        """One timer at a time per request, at the earliest thing it waits for: the watermark
        passing a change (flush), the inactivity timeout (close), the allowed lateness
        (clear). A close timer that fires early (the request grew since) sets the next one.
        A timer per event would fire by thousands at the end of a bounded input, each a
        round trip to the JVM for the state."""
        last = keep.timeline.last_at
        want = [last + self.timing.timeout + self.timing.lateness]
        if not keep.closed:
            want.append(last + self.timing.timeout)
        if keep.dirty and flush_at is not None:
            want.append(flush_at)
        due = ceil_ms(min(want))
        if not any(t <= due for t in keep.timers):
            ctx.timer_service().register_event_time_timer(due)
            keep.timers.add(due)

    def emit(self, name: str, record: dict[str, Any]) -> tuple[Any, Any]:
        return self.tags[name], table_row(self.Row, name, record)


def bundle_time(stream_env: Any, ms: int) -> None:
    """Let Python operators hold input at most *ms* before processing it, unless the Flink
    settings say otherwise: at Flink's default (1 s) an alert could wait that long."""
    from pyflink.common import Configuration
    from pyflink.util.java_utils import get_j_env_configuration

    key = "python.fn-execution.bundle.time"
    if get_j_env_configuration(stream_env._j_stream_execution_environment).containsKey(key):
        return
    conf = Configuration()
    conf.set_string(key, str(ms))
    stream_env.configure(conf)


def alert_type() -> Any:
    from pyflink.common import Types

    return Types.ROW_NAMED(["key", "value"], [Types.STRING(), Types.STRING()])


def timing_of(config: Config, rules: rq.Rules) -> Timing:
    return Timing(int(config.jobs.out_of_order_s * 1e6), rules.timeout_us,
                  int(config.jobs.dedup_ttl_hours * 3600e6))


def first_revision(config: Config) -> int:
    """One more than any revision in ``requests`` and ``errors`` (see
    :func:`jobs.instance_state.first_revision`: a run without state outranks old rows)."""
    from stacktide.catalog import load_catalog

    catalog, highest = load_catalog(config.iceberg), -1
    for name in OUTPUTS:
        files = catalog.load_table(f"{config.iceberg.namespace}.{name}").inspect.files()
        for metrics in files.column("readable_metrics").to_pylist() if files.num_rows else ():
            highest = max(highest, (metrics["revision"] or {}).get("upper_bound") or 0)
    return highest + 1


def error_filter(rules: rq.Rules) -> str:
    """SQL condition: the notification is an error by *rules*."""
    priorities = ", ".join(Literal(p).render() for p in sorted(rules.error_priorities))
    terms = [f"LOWER(`priority`) IN ({priorities})"] if priorities else []
    terms += [f"`event_type` LIKE {Literal(p.replace('*', '%')).render()}"
              if "*" in p else f"`event_type` = {Literal(p).render()}"
              for p in rules.error_event_types]
    return "(" + (" OR ".join(terms) or "FALSE") + ")"


def build(env: StreamTableEnvironment, statements: StatementSet, config: Config, *,
          bounded: bool, from_earliest: bool, rules_path: str | None = None) -> None:
    """Add the request job to *statements*: Kafka -> SQL -> Python -> two tables + alerts."""
    from pyflink.common import Types
    from pyflink.datastream import DataStream, OutputTag

    from jobs.keyed_source import append_side_outputs, declare_source, keyed_with_clock

    rules = rq.load_rules(rules_path)
    timing = timing_of(config, rules)
    declare_source(env, config, table=SOURCE, group_id=GROUP_ID, out_of_order_us=timing.out_of_order,
                   bounded=bounded, from_earliest=from_earliest)
    query = env.sql_query(render("request_notifications", source=Ident(SOURCE),
                                 error_filter=Raw(error_filter(rules))))
    if config.jobs.request_operator == "jvm":
        out = _jvm(env, query, rules, timing, first_revision(config))
        append_side_outputs(env, statements, config, out, OUTPUTS, "request_state", jvm=True)
        alerts = DataStream(out._j_data_stream.getSideOutput(
            OutputTag(ALERTS, alert_type()).get_java_output_tag()))
    else:
        keyed = keyed_with_clock(env, query, KEY, "request_state")
        if not bounded:  # a bounded run replays: throughput matters there, not an alert's delay
            bundle_time(keyed.non_broadcast_stream.get_execution_environment(),
                        rules.python_bundle_ms)
        function = RequestFunction(timing, first_revision(config), rules_path)
        out = keyed.process(function, output_type=Types.STRING()).uid(UID).name(UID)
        append_side_outputs(env, statements, config, out, OUTPUTS, "request_state")
        alerts = out.get_side_output(OutputTag(ALERTS, alert_type()))
    env.create_temporary_view("request_state_alerts", env.from_data_stream(alerts))
    env.execute_sql(render(
        "kafka_alerts", table=Ident("kafka_alerts"), topic=Literal(config.kafka.topic(ALERTS)),
        bootstrap_servers=Literal(config.kafka.bootstrap_servers)))
    statements.add_insert_sql("INSERT INTO `kafka_alerts` SELECT `key`, `value` "
                              "FROM `request_state_alerts`")


def _jvm(env: StreamTableEnvironment, query: Any, rules: rq.Rules, timing: Timing,
         base: int) -> Any:
    """The same job with its logic in the JVM (``stacktide.requests.RequestFunction`` of
    jvm/operators): the keyed rows and the event clock as the Python function gets them."""
    import json

    from pyflink.java_gateway import get_gateway

    from jobs.keyed_source import jvm_keyed

    outputs = {name: row_type(TABLES[name]) for name in OUTPUTS}
    return jvm_keyed(env, query, KEY, "request_state",
                     get_gateway().jvm.stacktide.requests.RequestFunction,
                     (json.dumps(rq.rules_document(rules)), timing.out_of_order,
                      timing.lateness, base), {**outputs, ALERTS: alert_type()}, UID_JVM)
