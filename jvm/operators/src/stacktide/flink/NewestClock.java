package stacktide.flink;

import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.types.Row;

/**
 * A keyed job's event clock: the newest {@code generated} of its keyed rows
 * ({@code Row(key, Row(text columns))}), emitted as {@code Row(newest)} when a watermark passes
 * and the newest grew since the last one emitted. The keyed function keeps it in broadcast
 * state ({@link EventClock}), which checkpoints and savepoints hold.
 *
 * <p>Chained to the source, it costs each row one text comparison: {@code generated} is the
 * one timestamp form on the topic (fixed width, UTC), so the greatest text is the newest time.
 * It emits before it forwards the watermark, so at the end of a bounded input the last
 * newest reaches the keyed function before the final watermark fires its timers. It keeps no
 * state of its own: after a restart it emits again at the first watermark, and the broadcast
 * state only ever moves forward.
 */
public class NewestClock extends AbstractStreamOperator<Row>
        implements OneInputStreamOperator<Row, Row> {
    private static final long serialVersionUID = 1L;

    private final int generated;  // where `generated` sits in a row's value
    private transient String newest;
    private transient String emitted;

    /** {@code generated}: the index of the {@code generated} column in the rows' value. */
    public NewestClock(int generated) {
        this.generated = generated;
    }

    @Override
    public void processElement(StreamRecord<Row> element) {
        String at = (String) ((Row) element.getValue().getField(1)).getField(generated);
        if (at != null && (newest == null || at.compareTo(newest) > 0)) {
            newest = at;
        }
    }

    @Override
    public void processWatermark(Watermark mark) throws Exception {
        if (newest != null && !newest.equals(emitted)) {
            output.collect(new StreamRecord<>(Row.of(newest)));
            emitted = newest;
        }
        super.processWatermark(mark);
    }
}
