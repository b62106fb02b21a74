package stacktide.bench;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

import java.time.LocalDateTime;
import java.time.ZoneOffset;

/**
 * What the keyed instance job's work per notification costs when it stays in the JVM, without
 * the job's logic: bench_state_job.py's "JVM keyed" pipeline, never part of the jobs.
 *
 * <p>It does to keyed state, timers and output what {@code jobs/instance_state.py} does, in the
 * measured proportions, so that its rate bounds what a Java port of the state machine could
 * reach on the same source: per notification, the key's state (as many bytes as the job's
 * pickled state per live instance) read, changed and written, a row out (the history row) and
 * a flush timer just past the event (a row out when it fires); per live key, an hourly period
 * timer that emits a row and registers the next, until the key's delete. Input rows are those
 * of {@code sql/keyed_rows.sql}: {@code key}, then {@code value} with {@code event_type} at
 * {@link #EVENT_TYPE} and {@code generated} at {@link #GENERATED}.
 */
public class KeyedStateProbe extends KeyedProcessFunction<String, Row, Row> {

    static final int STATE_BYTES = 1235;
    static final long HOUR_MS = 3_600_000L;
    static final int EVENT_TYPE = 2;
    static final int GENERATED = 3;
    static final TypeInformation<Row> OUT = Types.ROW(Types.STRING, Types.LONG, Types.INT);

    private transient ValueState<byte[]> keep;
    private transient ValueState<Long> period;

    @Override
    public void open(OpenContext context) {
        keep = getRuntimeContext().getState(new ValueStateDescriptor<>("keep", byte[].class));
        period = getRuntimeContext().getState(new ValueStateDescriptor<>("period", Long.class));
    }

    @Override
    public void processElement(Row row, Context ctx, Collector<Row> out) throws Exception {
        Row value = (Row) row.getField(1);
        String generated = (String) value.getField(GENERATED);
        long at = LocalDateTime.parse(generated.substring(0, 23)).toInstant(ZoneOffset.UTC).toEpochMilli();
        byte[] state = keep.value();
        state = state == null ? new byte[STATE_BYTES] : state.clone();
        state[(int) (at % STATE_BYTES)]++;
        keep.update(state);
        out.collect(Row.of(ctx.getCurrentKey(), at, state.length));
        ctx.timerService().registerEventTimeTimer(at + 1);
        if (((String) value.getField(EVENT_TYPE)).startsWith("compute.instance.delete")) {
            period.clear();
        } else if (period.value() == null) {
            long end = (at / HOUR_MS + 1) * HOUR_MS;
            period.update(end);
            ctx.timerService().registerEventTimeTimer(end);
        }
    }

    @Override
    public void onTimer(long timestamp, OnTimerContext ctx, Collector<Row> out) throws Exception {
        out.collect(Row.of(ctx.getCurrentKey(), timestamp, keep.value().length));
        Long end = period.value();
        if (end != null && end == timestamp) {
            if (ctx.timerService().currentWatermark() == Long.MAX_VALUE) {
                period.clear();  // the end of a bounded input: no more periods
            } else {
                period.update(end + HOUR_MS);
                ctx.timerService().registerEventTimeTimer(end + HOUR_MS);
            }
        }
    }

    /**
     * The floor under the probe: the same rows keyed the same way into a function that does
     * nothing, so that the source, the SQL, the conversion to {@code Row} and the keyed
     * exchange are told apart from the state, timers and rows the probe adds.
     */
    static final class Empty extends KeyedProcessFunction<String, Row, Row> {
        @Override
        public void processElement(Row row, Context ctx, Collector<Row> out) {
        }
    }

    /**
     * The probe on *rows*, keyed in the JVM by their first field, into a discarding sink; with
     * *empty*, the floor ({@link Empty}) in its place.
     */
    public static void attach(DataStream<Row> rows, boolean empty) {
        rows.keyBy((KeySelector<Row, String>) r -> (String) r.getField(0), Types.STRING)
            .process(empty ? new Empty() : new KeyedStateProbe(), OUT)
            .name(empty ? "keyed-empty" : "keyed-state-probe")
            .sinkTo(new DiscardingSink<>())
            .name("discard");
    }
}
