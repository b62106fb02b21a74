package stacktide.flink;

import org.apache.flink.api.common.state.BroadcastState;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.state.ReadOnlyBroadcastState;
import org.apache.flink.api.common.typeinfo.BasicTypeInfo;
import org.apache.flink.types.Row;

import stacktide.lifecycle.NovaTime;

/**
 * The broadcast side of the keyed jobs' JVM functions: the newest event time of their input
 * (µs), kept in broadcast state so that a run resumed from a checkpoint or savepoint still
 * knows it (the same state as {@code jobs.keyed_source.EventClock}'s).
 */
public final class EventClock {
    private static final String KEY = "newest";

    private EventClock() {}

    public static MapStateDescriptor<String, Long> descriptor() {
        return new MapStateDescriptor<>("event-clock", BasicTypeInfo.STRING_TYPE_INFO,
                BasicTypeInfo.LONG_TYPE_INFO);
    }

    /** A clock row ({@code generated} text first) moves the clock forward, never back. */
    public static void advance(BroadcastState<String, Long> state, Row value) throws Exception {
        Long time = NovaTime.micros((String) value.getField(0));
        Long old = state.get(KEY);
        if (time != null && (old == null || time > old)) {
            state.put(KEY, time);
        }
    }

    /** The newest event time broadcast so far, null before any. */
    public static Long newest(ReadOnlyBroadcastState<String, Long> state) throws Exception {
        return state.get(KEY);
    }
}
