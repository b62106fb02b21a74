package stacktide.lifecycle;

import java.time.Instant;
import java.util.HashMap;
import java.util.Map;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.typeutils.RowTypeInfo;
import org.apache.flink.metrics.Counter;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.KeyedStream;
import org.apache.flink.streaming.api.datastream.SingleOutputStreamOperator;
import org.apache.flink.streaming.api.functions.co.KeyedBroadcastProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;

import stacktide.flink.EventClock;

/**
 * The keyed instance job's function in the JVM: {@link InstanceCore} driven by Flink, the same
 * inputs, state, timers and side outputs as {@code jobs.instance_state.InstanceFunction}
 * without a Python worker. Input rows are {@code Row(key, Row(text columns))} as
 * {@code jobs.keyed_source.rows_with_key} makes them; the broadcast side is the event clock
 * (the newest {@code generated} per minute). Rows go to one side output per table, typed as
 * the tables ({@code row_type} in Python hands the types over).
 */
public final class InstanceFunction extends KeyedBroadcastProcessFunction<Row, Row, Row, String> {
    private static final long serialVersionUID = 1L;

    private final String rulesJson;
    private final long[] timing;  // period, out of order, lateness, settle, silence, audit (0/1)
    private final long base;
    private final Map<String, RowTypeInfo> tables;
    private final String[] columns;  // of the input value: where each field sits

    private transient InstanceCore core;
    private transient ValueState<Keep> kept;
    private transient Map<String, OutputTag<Row>> tags;
    private transient Counter late;
    private transient Counter duplicates;
    private transient ObjectMapper json;
    private transient long seen;
    private transient int[] at;

    public InstanceFunction(String rulesJson, long[] timing, long base,
                            Map<String, TypeInformation<Row>> tables, String[] columns) {
        this.rulesJson = rulesJson;
        this.timing = timing.clone();
        this.base = base;
        this.tables = new HashMap<>();
        tables.forEach((name, type) -> this.tables.put(name, (RowTypeInfo) type));
        this.columns = columns.clone();
    }

    /** {@code keyed} connected to the broadcast {@code clock}, processed by {@code function}
     * (one call: the broadcast descriptors are varargs, awkward to pass from Python). */
    public static SingleOutputStreamOperator<String> attach(KeyedStream<Row, Row> keyed,
                                                            DataStream<Row> clock,
                                                            InstanceFunction function) {
        return keyed.connect(clock.broadcast(EventClock.descriptor()))
                .process(function, Types.STRING);
    }

    /** The side output of table {@code name}. */
    public static OutputTag<Row> tag(String name, TypeInformation<Row> type) {
        return new OutputTag<>(name, type);
    }

    @Override
    public void open(OpenContext context) throws Exception {
        json = new ObjectMapper();
        core = new InstanceCore(new InstanceCore.Timing(timing[0], timing[1], timing[2], timing[3],
                timing[4], timing[5] != 0), base, new Rules(json.readTree(rulesJson)));
        kept = getRuntimeContext().getState(new ValueStateDescriptor<>("instance",
                new KeepSerializer()));
        tags = new HashMap<>();
        tables.forEach((name, type) -> tags.put(name, tag(name, type)));
        late = getRuntimeContext().getMetricGroup().counter("late_events");
        duplicates = getRuntimeContext().getMetricGroup().counter("duplicates");
        seen = Long.MIN_VALUE;
        at = new int[8];
        String[] wanted = {"message_id", "cell", "event_type", "generated", "request_id",
            "instance_id", "format", "payload"};
        for (int k = 0; k < wanted.length; k++) {
            at[k] = java.util.Arrays.asList(columns).indexOf(wanted[k]);
            if (at[k] < 0) {
                throw new IllegalArgumentException("the keyed rows carry no column " + wanted[k]);
            }
        }
    }

    @Override
    public void processElement(Row element, ReadOnlyContext ctx, Collector<String> out)
            throws Exception {
        Row r = (Row) element.getField(1);
        String payload = (String) r.getField(at[7]);
        JsonNode tree = payload == null ? null : json.readTree(payload);
        Observation obs = Observation.observe(core.rules(), (String) r.getField(at[1]),
                (String) r.getField(at[5]), (String) r.getField(at[0]), (String) r.getField(at[2]),
                (String) r.getField(at[3]), (String) r.getField(at[6]), (String) r.getField(at[4]),
                tree);
        if (obs == null) {
            return;
        }
        seen = Math.max(seen, obs.at);
        Keep keep = core.process(kept.value(), obs,
                context(ctx.timerService(),
                        EventClock.newest(ctx.getBroadcastState(EventClock.descriptor())),
                        ctx));
        if (keep != null) {
            kept.update(keep);
        }
    }

    @Override
    public void processBroadcastElement(Row value, Context ctx, Collector<String> out)
            throws Exception {
        EventClock.advance(ctx.getBroadcastState(EventClock.descriptor()), value);
    }

    @Override
    public void onTimer(long timestamp, OnTimerContext ctx, Collector<String> out) throws Exception {
        Keep stored = kept.value();
        if (stored == null) {
            return;
        }
        Keep keep = core.onTimer(stored, timestamp,
                context(ctx.timerService(),
                        EventClock.newest(ctx.getBroadcastState(EventClock.descriptor())),
                        ctx));
        if (keep == null) {
            kept.clear();
        } else {
            kept.update(keep);
        }
    }

    private InstanceCore.Context context(org.apache.flink.streaming.api.TimerService timers,
                                         Long clock, ReadOnlyContext ctx) {
        return new InstanceCore.Context() {
            @Override
            public long watermarkMs() {
                return timers.currentWatermark();
            }

            @Override
            public long newest() {
                return Math.max(seen, clock == null ? Long.MIN_VALUE : clock);
            }

            @Override
            public void registerTimer(long ms) {
                timers.registerEventTimeTimer(ms);
            }

            @Override
            public void emit(String table, Map<String, Object> record) {
                ctx.output(tags.get(table), row(tables.get(table), record));
            }

            @Override
            public void late() {
                late.inc();
            }

            @Override
            public void duplicate() {
                duplicates.inc();
            }
        };
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
