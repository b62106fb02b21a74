package stacktide.requests;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.Map;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;

import stacktide.lifecycle.Book;

/**
 * The request job's logic ({@code jobs.request_state.RequestFunction}) without Flink: what an
 * element and a timer do to one request's {@link RequestKeep}, and the rows, alerts and timers
 * that follow. {@code RequestFunction} drives it in Flink, the tests' harness without.
 */
public final class RequestCore {
    public static final long MAX_WATERMARK = Long.MAX_VALUE;
    public static final long NEVER = -(1L << 62);

    /** What the core asks of its driver. */
    public interface Context {
        long watermarkMs();

        /** The newest event time of the input (µs): read here, or from before a restart. */
        long newest();

        void registerTimer(long ms);

        void emit(String table, Map<String, Object> record);

        void alert(String key, String json);

        void duplicate();
    }

    private final long outOfOrder;
    private final long lateness;
    private final long base;
    private final RequestRules rules;
    private final ObjectMapper json = new ObjectMapper();

    /** Times in µs: watermark delay, allowed lateness after the inactivity timeout. */
    public RequestCore(long outOfOrder, long lateness, long base, RequestRules rules) {
        this.outOfOrder = outOfOrder;
        this.lateness = lateness;
        this.base = base;
        this.rules = rules;
    }

    public RequestRules rules() {
        return rules;
    }

    /** {@code event} arrives for the request whose state is {@code keep} (null: none yet);
     * returns the state to store, or null when it is unchanged (a redelivery). */
    public RequestKeep process(RequestKeep keep, Event event, Context ctx) {
        String key = Event.groupKey(event.globalRequestId, event.requestId);
        key = key == null ? "message:" + event.messageId : key;
        keep = keep == null ? new RequestKeep(new Timeline(key), base) : keep;
        if (!keep.timeline.add(event)) {
            ctx.duplicate();
            return null;
        }
        keep.dirty = true;
        keep.closed = false;
        boolean changed = event.fault != null;
        for (Event e : keep.timeline.events) {
            changed |= e.fault != null && e.after(event);
        }
        if (changed) {
            errors(keep, event.fault != null ? event : null, key, ctx);  // new, or a past changed
        }
        schedule(keep, ctx, event.at);
        return keep;
    }

    /** The timer at {@code timestamp} (ms) fires; returns the state to store, null to clear. */
    public RequestKeep onTimer(RequestKeep keep, long timestamp, Context ctx) {
        keep.timers.remove(timestamp);
        long current = ctx.watermarkMs();
        boolean end = current >= MAX_WATERMARK;
        long last = keep.timeline.lastAt();
        long now = end ? Math.max(ctx.newest(), last) - outOfOrder : current * 1000;
        boolean closed = now >= last + rules.timeoutUs;
        flush(keep, closed, ctx);
        if (!end && now >= last + rules.timeoutUs + lateness) {
            return null;
        }
        if (!end) {  // at +inf a timer fires at once, again and again
            schedule(keep, ctx, null);
        }
        return keep;
    }

    private void flush(RequestKeep keep, boolean closed, Context ctx) {
        keep.dirty = false;
        keep.closed = closed;
        Map<String, Object> row = RequestRecords.request(keep.timeline, rules, closed);
        if (row == null) {
            return;
        }
        long digest = Book.digest(row.toString());
        if (keep.rowRevision < 0 || digest != keep.rowDigest) {
            keep.rowRevision += 1;
            keep.rowDigest = digest;
            row.put("revision", keep.base + keep.rowRevision);
            ctx.emit("requests", row);
        }
    }

    /** Emits each error row that changed; {@code alerted} (an error just arrived) is also
     * alerted under {@code key}, from the same row. */
    private void errors(RequestKeep keep, Event alerted, String key, Context ctx) {
        for (Event e : keep.timeline.errors()) {
            Map<String, Object> row = RequestRecords.error(keep.timeline, e, rules);
            if (e == alerted) {
                try {
                    ctx.alert(key, json.writeValueAsString(RequestRecords.alert(row)));
                } catch (IOException x) {
                    throw new UncheckedIOException(x);
                }
            }
            long[] old = keep.errors.get(e.messageId);
            long digest = Book.digest(row.toString());
            if (old == null || old[1] != digest) {
                long revision = old == null ? 0 : old[0] + 1;
                keep.errors.put(e.messageId, new long[] {revision, digest});
                row.put("revision", keep.base + revision);
                ctx.emit("errors", row);
            }
        }
    }

    /** One timer at a time per request, at the earliest thing it waits for (see the Python). */
    private void schedule(RequestKeep keep, Context ctx, Long flushAt) {
        long last = keep.timeline.lastAt();
        long want = last + rules.timeoutUs + lateness;
        if (!keep.closed) {
            want = Math.min(want, last + rules.timeoutUs);
        }
        if (keep.dirty && flushAt != null) {
            want = Math.min(want, flushAt);
        }
        long due = -Math.floorDiv(-want, 1000L);
        Long earliest = keep.timers.isEmpty() ? null : keep.timers.first();
        if (earliest == null || earliest > due) {
            ctx.registerTimer(due);
            keep.timers.add(due);
        }
    }
}
