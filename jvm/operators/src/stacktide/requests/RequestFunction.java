package stacktide.requests;

import java.util.Arrays;
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
import org.apache.flink.streaming.api.TimerService;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.KeyedStream;
import org.apache.flink.streaming.api.datastream.SingleOutputStreamOperator;
import org.apache.flink.streaming.api.functions.co.KeyedBroadcastProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;

import stacktide.flink.EventClock;

import stacktide.lifecycle.InstanceFunction;

/**
 * The request job's function in the JVM: {@link RequestCore} driven by Flink, with the inputs,
 * timers and outputs of {@code jobs.request_state.RequestFunction} and no Python worker.
 * Input rows are {@code Row(key, Row(text columns))} as {@code jobs.keyed_source.rows_with_key}
 * makes them; the broadcast side is the event clock. The {@code requests} and {@code errors}
 * rows go to side outputs typed as the tables, alerts to the side output {@code alerts} as
 * {@code Row(key, value)}.
 */
public final class RequestFunction extends KeyedBroadcastProcessFunction<Row, Row, Row, String> {
    private static final long serialVersionUID = 1L;
    private static final String[] WANTED = {"message_id", "cell", "event_type", "priority",
        "service", "host", "generated", "request_id", "global_request_id", "instance_id",
        "tenant_id", "payload"};

    private final String rulesJson;
    private final long outOfOrder;
    private final long lateness;
    private final long base;
    private final Map<String, RowTypeInfo> tables;
    private final String[] columns;

    private transient RequestCore core;
    private transient ValueState<RequestKeep> kept;
    private transient Map<String, OutputTag<Row>> tags;
    private transient Counter duplicates;
    private transient Counter alerted;
    private transient ObjectMapper json;
    private transient long seen;
    private transient int[] at;

    /** {@code tables}: the row type of each side output ({@code requests}, {@code errors},
     * {@code alerts}); {@code columns}: the input value's column names. Times in µs. */
    public RequestFunction(String rulesJson, long outOfOrder, long lateness, long base,
                           Map<String, TypeInformation<Row>> tables, String[] columns) {
        this.rulesJson = rulesJson;
        this.outOfOrder = outOfOrder;
        this.lateness = lateness;
        this.base = base;
        this.tables = new HashMap<>();
        tables.forEach((name, type) -> this.tables.put(name, (RowTypeInfo) type));
        this.columns = columns.clone();
    }

    /** {@code keyed} connected to the broadcast {@code clock}, processed by {@code function}. */
    public static SingleOutputStreamOperator<String> attach(KeyedStream<Row, Row> keyed,
                                                            DataStream<Row> clock,
                                                            RequestFunction function) {
        return keyed.connect(clock.broadcast(EventClock.descriptor()))
                .process(function, Types.STRING);
    }

    @Override
    public void open(OpenContext context) throws Exception {
        json = new ObjectMapper();
        core = new RequestCore(outOfOrder, lateness, base,
                new RequestRules(json.readTree(rulesJson)));
        kept = getRuntimeContext().getState(new ValueStateDescriptor<>("request",
                new RequestKeepSerializer()));
        tags = new HashMap<>();
        tables.forEach((name, type) -> tags.put(name, InstanceFunction.tag(name, type)));
        duplicates = getRuntimeContext().getMetricGroup().counter("duplicates");
        alerted = getRuntimeContext().getMetricGroup().counter("alerts");
        seen = Long.MIN_VALUE;
        at = new int[WANTED.length];
        for (int k = 0; k < WANTED.length; k++) {
            at[k] = Arrays.asList(columns).indexOf(WANTED[k]);
            if (at[k] < 0) {
                throw new IllegalArgumentException("the keyed rows carry no column " + WANTED[k]);
            }
        }
    }

    private String field(Row r, int k) {
        return (String) r.getField(at[k]);
    }

    @Override
    public void processElement(Row element, ReadOnlyContext ctx, Collector<String> out)
            throws Exception {
        Row r = (Row) element.getField(1);
        String payload = field(r, 11);
        JsonNode tree = payload == null ? null : json.readTree(payload);
        Event event = Event.observe(core.rules(), field(r, 0), field(r, 1), field(r, 2),
                field(r, 3), field(r, 4), field(r, 5), field(r, 6), field(r, 7), field(r, 8),
                field(r, 9), field(r, 10), tree);
        if (event == null) {
            return;
        }
        seen = Math.max(seen, event.at);
        RequestKeep keep = core.process(kept.value(), event,
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
    public void onTimer(long timestamp, OnTimerContext ctx, Collector<String> out)
            throws Exception {
        RequestKeep stored = kept.value();
        if (stored == null) {
            return;
        }
        RequestKeep keep = core.onTimer(stored, timestamp,
                context(ctx.timerService(),
                        EventClock.newest(ctx.getBroadcastState(EventClock.descriptor())),
                        ctx));
        if (keep == null) {
            kept.clear();
        } else {
            kept.update(keep);
        }
    }

    private RequestCore.Context context(TimerService timers, Long clock, ReadOnlyContext ctx) {
        return new RequestCore.Context() {
            @Override
            public long watermarkMs() {
                return timers.currentWatermark();
            }

            @Override
            public long newest() {
                return Math.max(Math.max(seen, RequestCore.NEVER),
                        clock == null ? RequestCore.NEVER : clock);
            }

            @Override
            public void registerTimer(long ms) {
                timers.registerEventTimeTimer(ms);
            }

            @Override
            public void emit(String table, Map<String, Object> record) {
                ctx.output(tags.get(table), InstanceFunction.row(tables.get(table), record));
            }

            @Override
            public void alert(String key, String value) {
                alerted.inc();
                ctx.output(tags.get("alerts"), Row.of(key, value));
            }

            @Override
            public void duplicate() {
                duplicates.inc();
            }
        };
    }
}
