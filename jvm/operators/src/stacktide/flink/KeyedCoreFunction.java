package stacktide.flink;

import java.io.IOException;
import java.time.Instant;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.functions.RichFlatMapFunction;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.common.typeutils.TypeSerializer;
import org.apache.flink.api.java.typeutils.RowTypeInfo;
import org.apache.flink.metrics.Counter;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.streaming.api.TimerService;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.KeyedStream;
import org.apache.flink.streaming.api.datastream.SingleOutputStreamOperator;
import org.apache.flink.streaming.api.functions.co.KeyedBroadcastProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;

/**
 * What the keyed jobs' JVM functions share with Flink, whatever their logic: the input rows
 * ({@code Row(key, Row(text columns))}, as {@code jobs.keyed_source.rows_with_key} makes them)
 * read by column name, one state object per key
 * ({@link EncodedSerializer}), the broadcast {@link EventClock}, timers, the side outputs typed
 * as the tables, and the {@code duplicates} metric. A subclass turns the columns into its
 * event and hands event and timer to its core (the logic, testable without Flink).
 *
 * @param <E> the event a row becomes
 * @param <S> the state kept per key
 */
public abstract class KeyedCoreFunction<E, S>
        extends KeyedBroadcastProcessFunction<Row, Row, Row, String> {
    private static final long serialVersionUID = 1L;

    private final String stateName;
    private final String[] wanted;  // the columns the subclass reads
    private final Map<String, RowTypeInfo> tables;
    private final String[] columns;  // of the input value: where each wanted column sits

    private transient ValueState<S> kept;
    private transient Map<String, OutputTag<Row>> tags;
    private transient Counter duplicates;
    private transient ObjectMapper json;
    private transient long seen;
    private transient int[] at;

    /** {@code tables}: the row type of each side output; {@code columns}: the input value's
     * column names; {@code wanted}: the columns {@link #observe} gets, in its order. */
    protected KeyedCoreFunction(String stateName, String[] wanted,
                                Map<String, TypeInformation<Row>> tables, String[] columns) {
        this.stateName = stateName;
        this.wanted = wanted.clone();
        this.tables = new HashMap<>();
        tables.forEach((name, type) -> this.tables.put(name, (RowTypeInfo) type));
        this.columns = columns.clone();
    }

    /** {@code keyed} connected to the broadcast {@code clock}, processed by {@code function}
     * (one call: the broadcast descriptors are varargs, awkward to pass from Python). */
    public static SingleOutputStreamOperator<String> attach(KeyedStream<Row, Row> keyed,
                                                            DataStream<Row> clock,
                                                            KeyedCoreFunction<?, ?> function) {
        return keyed.connect(clock.broadcast(EventClock.descriptor()))
                .process(function, Types.STRING);
    }

    protected abstract TypeSerializer<S> serializer();

    /** Builds the core (rules read with {@code json}): all that {@link #observe} needs, and
     * nothing of Flink's (the rows may be observed upstream, in another operator). */
    protected abstract void prepare(ObjectMapper json) throws Exception;

    /** The subclass's own metrics, once its function runs. */
    protected void setUp() {
    }

    /** The event of a row ({@code fields} in the order of {@code wanted}), null to skip it. */
    protected abstract E observe(String[] fields) throws IOException;

    /** The type of the events when they can cross from the source to the keyed operator as
     * they are ({@link #observed}); null when the rows must (the function observes them). */
    public TypeInformation<E> eventType() {
        return null;
    }

    /** {@code rows} ({@code Row(key, value)}) as {@code Row(key, event)}, a row about nothing
     * the function keeps dropped: reading each notification's payload where the source runs
     * (chained to it, in its thread) instead of in the keyed operator, the job's busiest,
     * which then gets the few fields an event holds rather than the whole payload. */
    public SingleOutputStreamOperator<Row> observed(DataStream<Row> rows) {
        TypeInformation<E> type = eventType();
        if (type == null) {
            throw new IllegalStateException(getClass().getName() + " observes its own rows");
        }
        return rows.flatMap(new Observer<>(this), new RowTypeInfo(
                new TypeInformation<?>[] {Types.STRING, type}, new String[] {"key", "event"}));
    }

    /** The JSON {@code text} parsed into a tree (null stays null), for a subclass that reads
     * more of a payload than a few paths. */
    protected JsonNode tree(String text) throws IOException {
        return text == null ? null : json.readTree(text);
    }

    /** The event's time in µs (the newest one read is this subtask's clock). */
    protected abstract long timeOf(E event);

    /** The core's answer to {@code event}: the state to store, or null to leave it as it is. */
    protected abstract S process(S stored, E event, ReadOnlyContext ctx);

    /** The core's answer to a timer: the state to store, or null to clear it. */
    protected abstract S fire(S stored, long timestamp, OnTimerContext ctx);

    @Override
    public void open(OpenContext context) throws Exception {
        kept = getRuntimeContext().getState(new ValueStateDescriptor<>(stateName, serializer()));
        tags = new HashMap<>();
        tables.forEach((name, type) -> tags.put(name, new OutputTag<>(name, type)));
        duplicates = getRuntimeContext().getMetricGroup().counter("duplicates");
        seen = Long.MIN_VALUE;
        ready();
        setUp();
    }

    /** The columns found and the core built: what observing a row needs. */
    private void ready() throws Exception {
        json = new ObjectMapper();
        at = new int[wanted.length];
        for (int k = 0; k < wanted.length; k++) {
            at[k] = Arrays.asList(columns).indexOf(wanted[k]);
            if (at[k] < 0) {
                throw new IllegalArgumentException("the keyed rows carry no column " + wanted[k]);
            }
        }
        prepare(json);
    }

    private E observeRow(Row r) throws IOException {
        String[] fields = new String[at.length];
        for (int k = 0; k < at.length; k++) {
            fields[k] = (String) r.getField(at[k]);
        }
        return observe(fields);
    }

    /** A row's value is either the row of its columns, or its event observed upstream
     * ({@link #observed}). */
    @Override
    @SuppressWarnings("unchecked")
    public void processElement(Row element, ReadOnlyContext ctx, Collector<String> out)
            throws Exception {
        Object value = element.getField(1);
        E event = value instanceof Row ? observeRow((Row) value) : (E) value;
        if (event == null) {
            return;
        }
        seen = Math.max(seen, timeOf(event));
        S next = process(kept.value(), event, ctx);
        if (next != null) {
            kept.update(next);
        }
    }

    @Override
    public void processBroadcastElement(Row value, Context ctx, Collector<String> out)
            throws Exception {
        EventClock.advance(ctx.getBroadcastState(EventClock.descriptor()), value);
    }

    @Override
    public void onTimer(long timestamp, OnTimerContext ctx, Collector<String> out)
            throws Exception {
        S stored = kept.value();
        if (stored == null) {
            return;
        }
        S next = fire(stored, timestamp, ctx);
        if (next == null) {
            kept.clear();
        } else {
            kept.update(next);
        }
    }

    /** {@link #observed}'s operator: the function's own {@link #observe}, run upstream. */
    private static final class Observer<E> extends RichFlatMapFunction<Row, Row> {
        private static final long serialVersionUID = 1L;
        private final KeyedCoreFunction<E, ?> function;

        Observer(KeyedCoreFunction<E, ?> function) {
            this.function = function;
        }

        @Override
        public void open(OpenContext context) throws Exception {
            function.ready();
        }

        @Override
        public void flatMap(Row row, Collector<Row> out) throws Exception {
            E event = function.observeRow((Row) row.getField(1));
            if (event != null) {
                out.collect(Row.of(row.getField(0), event));
            }
        }
    }

    /** What a core's context asks of Flink, the same for every core: a subclass's context
     * extends it with what its core alone asks. */
    protected abstract class Driven {
        private final ReadOnlyContext ctx;
        private final TimerService timers;

        protected Driven(ReadOnlyContext ctx) {
            this.ctx = ctx;
            this.timers = ctx.timerService();
        }

        public long watermarkMs() {
            return timers.currentWatermark();
        }

        /** The newest event time of the input (µs): read by this subtask, or from before a
         * restart (the broadcast clock); {@code Long.MIN_VALUE} before any. */
        public long newest() {
            Long clock;
            try {  // read when asked (at the end of a bounded input), not for every element
                clock = EventClock.newest(ctx.getBroadcastState(EventClock.descriptor()));
            } catch (Exception e) {
                throw new IllegalStateException("the event clock's broadcast state", e);
            }
            return Math.max(seen, clock == null ? Long.MIN_VALUE : clock);
        }

        public void registerTimer(long ms) {
            timers.registerEventTimeTimer(ms);
        }

        public void emit(String table, Map<String, Object> record) {
            ctx.output(tags.get(table), row(tables.get(table), record));
        }

        /** A row of side output {@code name} as it is. */
        protected void output(String name, Row row) {
            ctx.output(tags.get(name), row);
        }

        public void duplicate() {
            duplicates.inc();
        }
    }

    /** A record as a row of its table: times (µs) as instants, numbers in the column's type. */
    public static Row row(RowTypeInfo type, Map<String, Object> record) {
        String[] names = type.getFieldNames();
        Row row = new Row(names.length);
        for (int k = 0; k < names.length; k++) {
            Object v = record.get(names[k]);
            TypeInformation<?> t = type.getTypeAt(k);
            if (v == null) {
                row.setField(k, null);
            } else if (t.equals(Types.INSTANT)) {
                long us = (Long) v;
                row.setField(k, Instant.ofEpochSecond(Math.floorDiv(us, 1_000_000L),
                        Math.floorMod(us, 1_000_000L) * 1000));
            } else if (t.equals(Types.INT)) {
                row.setField(k, ((Number) v).intValue());
            } else if (t.equals(Types.LONG)) {
                row.setField(k, ((Number) v).longValue());
            } else if (t.equals(Types.DOUBLE)) {
                row.setField(k, ((Number) v).doubleValue());
            } else {
                row.setField(k, v);
            }
        }
        return row;
    }
}
