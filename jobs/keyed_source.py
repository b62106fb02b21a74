"""What the Python keyed jobs share at their edges: the notifications topic as a source with
event time, the rows of their side outputs (typed as the tables, times as instants) appended
to Iceberg tables, and their clocks (Flink's milliseconds, the job's microseconds).

Each keyed job (instance state, request timelines) declares the topic under its own name and
consumer group, so each keeps its own offsets and its own watermark, then hands Python only
the rows its SQL filter passes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from jobs.sqlfile import Ident, Literal, Raw, render
from stacktide.config import Config
from stacktide.schema import ENVELOPE_COLUMNS, TABLES, TableDef, flink_type, time_us

if TYPE_CHECKING:
    from pyflink.table import StatementSet, StreamTableEnvironment, Table

MAX_WATERMARK = 2**63 - 1  # Long.MAX_VALUE ms: the end of a bounded input
MS = 1000
NEVER = -(2**62)  # µs: before any event time
_EPOCH, _MICRO = datetime(1970, 1, 1, tzinfo=UTC), timedelta(microseconds=1)


def instant(us: int) -> Any:
    from pyflink.common.time import Instant

    return Instant(us // 1_000_000, us % 1_000_000 * 1000)


def digest(values: Any) -> int:
    """Stable across processes (``hash`` of a str is not): kept per emitted row."""
    return int.from_bytes(hashlib.blake2b(repr(values).encode(), digest_size=6).digest())


def ceil_ms(us: int) -> int:
    return -(-us // MS)


def row_type(table: TableDef) -> Any:
    from pyflink.common import Types

    kinds = {"string": Types.STRING(), "timestamptz": Types.INSTANT(), "long": Types.LONG(),
             "int": Types.INT(), "double": Types.DOUBLE(), "boolean": Types.BOOLEAN()}
    return Types.ROW_NAMED(table.column_names(), [kinds[c.type] for c in table.columns])


def table_row(row: Any, name: str, record: dict[str, Any]) -> Any:
    """*record* as a ``Row`` of table *name*: its columns in the table's order, datetimes as
    the instants ``row_type`` declares."""
    return row(*(instant((v - _EPOCH) // _MICRO) if isinstance(v, datetime) else v
                 for v in (record[c] for c in TABLES[name].column_names())))




# The keyed sources' Kafka format (sql/kafka_instance_notifications.sql): the envelope in one
# pass, the payload handed on as its text on the topic (jvm/operators,
# stacktide.flink.EnvelopeFormatFactory). Flink's "json" reads the same columns alike, the
# payload re-written from a parsed tree, at about half the source's rate.
SOURCE_FORMAT = "envelope-json"
# A JVM keyed function's outputs (the rows it emits to its Iceberg tables) run in threads of
# their own rather than chained to it: the keyed function is the jobs' busiest operator, and the
# conversion and Parquet writing of its rows then use the other core. (Flink drops a keyed
# broadcast function's disableChaining on the way to the stream graph; jobs.environment.
# stream_graph puts it back.)
CHAIN_OUTPUTS = False
CLOCK_KEY = "newest"


def clock_descriptor() -> Any:
    """The broadcast state of a keyed job's event clock (see :func:`keyed_with_clock`)."""
    from pyflink.common import Types
    from pyflink.datastream.state import MapStateDescriptor

    return MapStateDescriptor("event-clock", Types.STRING(), Types.LONG())


class EventClock:
    """The broadcast side of a keyed job: the newest event time of its input, in µs.

    A field of the function does in an undisturbed run, but a run resumed from a checkpoint
    or savepoint taken after the last event was read would start it over (and end every key
    at its own newest event): broadcast state is checkpointed with the keyed state. The
    function keeps both: the clock's last minute may reach it after the end of input.
    """

    clock: Any
    seen: int  # the newest event time this subtask read since it started

    def open_clock(self) -> None:
        self.clock, self.seen = clock_descriptor(), NEVER

    def saw(self, at: int) -> None:
        self.seen = max(self.seen, at)

    def process_broadcast_element(self, value: Any, ctx: Any) -> Iterator[Any]:
        state, at = ctx.get_broadcast_state(self.clock), time_us(value[0])
        if at > (state.get(CLOCK_KEY) or NEVER):
            state.put(CLOCK_KEY, at)
        yield from ()

    def newest(self, ctx: Any) -> int:
        """The newest event time of the input: what this subtask read itself (exact in a run
        that read everything), or what the broadcast state holds (from before a restart)."""
        return max(self.seen, ctx.get_broadcast_state(self.clock).get(CLOCK_KEY) or NEVER)


def rows_with_key(env: StreamTableEnvironment, query: Table, key: str,
                  name: str) -> tuple[Any, Any]:
    """The rows of *query* as a stream of ``Row(key, value)`` (sql/keyed_rows.sql), and the
    type of ``value``: the key is the SQL expression *key*, the value the tuple of *query*'s
    columns as text."""
    from pyflink.common import Types

    columns = query.get_schema().get_field_names()
    env.create_temporary_view(rows := f"{name}_rows", query)
    value = Types.ROW_NAMED(columns, [Types.STRING()] * len(columns))
    return env.to_append_stream(env.sql_query(render(
        "keyed_rows", key=Raw(key), source=Ident(rows),
        columns=Raw(", ".join(Ident(c).render() for c in columns)))),
        Types.ROW_NAMED(["key", "value"], [Types.STRING(), value])), value


def keyed_with_clock(env: StreamTableEnvironment, query: Table, key: str, name: str) -> Any:
    """The rows of *query* (text columns, ``generated`` among them) keyed by the SQL expression
    *key*, connected to their event clock (:func:`event_clock`) broadcast: what an
    :class:`EventClock` function processes, each row as the tuple of *query*'s columns.

    The key is computed in SQL and the stream keyed in the JVM. PyFlink's ``key_by`` puts a
    Python operator (a map adding the key) between the source and the function: every row
    crossed into Python one more time, and on a loaded machine rows of a partition reached the
    function after a source watermark hours past them (the operator's input watermark showed
    it), so whole instances were dropped as late; that map is the one hop between the source
    and the function that buffers rows. The clock is computed in the JVM on the same stream,
    so the topic is read once."""
    from pyflink.datastream import KeyedStream

    stream, value = rows_with_key(env, query, key, name)
    keyed = KeyedStream(java_keyed(stream), value, stream)
    return keyed.connect(event_clock(stream, value, name).broadcast(clock_descriptor()))


def java_keyed(stream: Any) -> Any:
    """The Java ``KeyedStream`` of ``Row(key, value)`` rows (:func:`rows_with_key`), by key:
    *stream* is a PyFlink ``DataStream`` or a Java one."""
    from pyflink.common import Types
    from pyflink.datastream import DataStream
    from pyflink.java_gateway import get_gateway

    j_stream = stream._j_data_stream if isinstance(stream, DataStream) else stream
    return j_stream.keyBy(get_gateway().jvm.KeyByKeySelector(),
                          Types.ROW([Types.STRING()]).get_java_type_info())


def jvm_keyed(env: StreamTableEnvironment, query: Table, key: str, name: str, function: Any,
              leading: tuple[Any, ...], outputs: dict[str, Any], uid: str) -> Any:
    """The rows of *query* keyed by *key* (as :func:`keyed_with_clock` keys them, with their
    event clock) through a keyed function of jvm/operators (a ``stacktide.flink.
    KeyedCoreFunction``): *function* is its Java class, built from *leading* arguments, the row
    types of its side *outputs* and the value's column names. A function whose events have a
    type of their own (``eventType``) reads them from the rows before the keyed exchange, in
    an operator chained to the source (uid ``<uid>-observe``, stateless)."""
    from pyflink.datastream import DataStream
    from pyflink.java_gateway import get_gateway

    gateway = get_gateway()
    stream, value = rows_with_key(env, query, key, name)
    tables = gateway.jvm.java.util.HashMap()
    for output, type_ in outputs.items():
        tables.put(output, type_.get_java_type_info())
    names = value.get_field_names()
    columns = gateway.new_array(gateway.jvm.String, len(names))
    for i, column in enumerate(names):
        columns[i] = column
    j_function = function(*leading, tables, columns)
    rows = stream._j_data_stream
    if j_function.eventType() is not None:  # its events cross from the source as they are
        rows = j_function.observed(rows).uid(f"{uid}-observe").name(f"{uid}-observe")
    j_out = gateway.jvm.stacktide.flink.KeyedCoreFunction.attach(
        java_keyed(rows), event_clock(stream, value, name)._j_data_stream,
        j_function).uid(uid).name(uid)
    return DataStream(j_out if CHAIN_OUTPUTS else j_out.disableChaining())


def event_clock(stream: Any, value: Any, name: str) -> Any:
    """The event clock of the keyed rows *stream* (``Row(key, value)``, *value* the type of its
    values): the newest
    `generated` of its values, emitted as ``Row(newest)`` when a watermark passes and it grew
    (jvm/operators: ``stacktide.flink.NewestClock``, chained to the source; uid
    ``<name>-clock``). It keeps no state: the keyed function's broadcast state holds the clock."""
    from pyflink.common import Types
    from pyflink.datastream import DataStream
    from pyflink.java_gateway import get_gateway

    jvm = get_gateway().jvm
    generated = list(value.get_field_names()).index("generated")
    return DataStream(stream._j_data_stream.transform(
        f"{name}-clock", Types.ROW_NAMED([CLOCK_KEY], [Types.STRING()]).get_java_type_info(),
        jvm.stacktide.flink.NewestClock(generated)).uid(f"{name}-clock"))


def declare_source(env: StreamTableEnvironment, config: Config, *, table: str, group_id: str,
                   out_of_order_us: int, bounded: bool, from_earliest: bool) -> None:
    """The topic as temporary table *table* (sql/kafka_instance_notifications.sql): times as
    text (Python reads the µs), watermark on ``generated``; no partition ever idle in a bounded
    run. *from_earliest*: the whole topic (there is no state to resume from)."""
    columns = ",\n  ".join(f"`{c.name}` {flink_type(replace(c, type='string'))}"
                           for c in ENVELOPE_COLUMNS)
    env.execute_sql(render(
        "kafka_instance_notifications", table=Ident(table), columns=Raw(columns),
        format=Literal(SOURCE_FORMAT),
        out_of_order_s=Literal(str(max(0, round(out_of_order_us / 1e6)))),
        idle_timeout=Literal("0 ms" if bounded else f"{int(config.jobs.idle_timeout_s * 1000)} ms"),
        topic=Literal(config.kafka.topic("notifications")), group_id=Literal(group_id),
        bootstrap_servers=Literal(config.kafka.bootstrap_servers),
        startup_mode=Literal("earliest-offset" if from_earliest else "group-offsets"),
        bounded_mode=Literal("latest-offset" if bounded else "unbounded")))


def append_side_outputs(env: StreamTableEnvironment, statements: StatementSet, config: Config,
                        out: Any, names: tuple[str, ...], prefix: str, *, jvm: bool = False) -> None:
    """Insert each side output *names* of *out* into the Iceberg table of that name. *jvm*:
    *out* is a Java operator's, whose side outputs are rows already (PyFlink's
    ``get_side_output`` adds a Python map decoding a Python operator's)."""
    from pyflink.datastream import DataStream, OutputTag

    for name in names:
        table, view = TABLES[name], f"{prefix}_{name}"
        tag = OutputTag(name, row_type(table))
        stream = DataStream(out._j_data_stream.getSideOutput(tag.get_java_output_tag())) if jvm \
            else out.get_side_output(tag)
        env.create_temporary_view(view, env.from_data_stream(stream))
        statements.add_insert_sql(render(
            "append_rows", source=Ident(view),
            target=Ident(f"{config.iceberg.catalog_name}.{config.iceberg.namespace}.{name}"),
            columns=Raw(", ".join(
                f"CAST(`{c.name}` AS {flink_type(c).removesuffix(' NOT NULL')}) AS `{c.name}`"
                if c.type == "timestamptz" else f"`{c.name}`" for c in table.columns))))
