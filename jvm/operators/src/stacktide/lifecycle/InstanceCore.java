package stacktide.lifecycle;

import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.Map;

/**
 * The keyed instance job's logic for one key, without Flink: the JVM's
 * {@code jobs.instance_state.InstanceFunction} (process_element, on_timer and their helpers),
 * kept equal to it by the differential tests, which drive both over the same traffic, watermarks
 * and timers. A Flink function wraps it ({@link InstanceFunction}); the {@link Context} is
 * what it asks of Flink.
 */
public final class InstanceCore {
    public static final long MAX_WATERMARK = Long.MAX_VALUE;  // ms: the end of a bounded input
    static final long MS = 1000;
    private static final long END = InstanceState.END;

    /** What the logic asks of its runtime: the clocks, timers, and where rows go. */
    public interface Context {
        /** The current watermark, in ms. */
        long watermarkMs();

        /** The newest event time of the input, µs (read at the end of a bounded input). */
        long newest();

        void registerTimer(long ms);

        void emit(String table, Map<String, Object> row);

        /** {@code obs} is skipped as late: {@code watermark} (µs) is past it by more than the
         * allowed lateness, or the state no longer holds its time. */
        void late(Observation obs, long watermark);

        void duplicate();
    }

    /** The job's clocks in µs (see {@code jobs.instance_state.Timing}). */
    public static final class Timing {
        final long period;
        final long outOfOrder;
        final long lateness;
        final long settle;
        final long silence;
        final boolean auditExpected;

        public Timing(long period, long outOfOrder, long lateness, long settle, long silence,
                      boolean auditExpected) {
            this.period = period;
            this.outOfOrder = outOfOrder;
            this.lateness = lateness;
            this.settle = settle;
            this.silence = silence;
            this.auditExpected = auditExpected;
        }
    }

    private final Timing t;
    private final long base;
    private final Rules rules;

    public InstanceCore(Timing timing, long base, Rules rules) {
        this.t = timing;
        this.base = base;
        this.rules = rules;
    }

    public Rules rules() {
        return rules;
    }

    /** Take one observation of the key; returns the state to store, or null to leave the
     * stored state as it was. */
    public Keep process(Keep keep, Observation obs, Context ctx) {
        long wm = Math.max(us(ctx.watermarkMs()), keep != null ? keep.watermark : -END);
        if (keep == null && obs.at < wm - t.lateness) {
            ctx.late(obs, wm);  // too late for an instance this job no longer (or never) tracked
            return null;
        }
        if (keep != null && keep.state.isLate(obs)) {
            ctx.late(obs, wm);
            return null;
        }
        if (keep == null) {
            keep = new Keep(new InstanceState(obs.cell, obs.instanceId), base);
        }
        keep.watermark = wm;
        keep.heard = Math.max(keep.heard, obs.at);
        if (obs.effect.audit) {
            if (keep.pending.containsKey(obs.messageId) || keep.audited.find(obs.key) >= 0) {
                ctx.duplicate();
            }
            keep.pending.put(obs.messageId, obs);
            // Only read to flag a missing exists, and pruned only there: kept only then.
            Long start = t.auditExpected ? Audit.periodic(obs, t.period) : null;
            if (start != null) {
                keep.periodic.add(start);
            }
            settle(keep, wm, obs.messageId, ctx);
        } else if (seen(keep.state, obs)) {
            ctx.duplicate();
        } else if (keep.book.step(keep.state, obs)) {
            Map<String, Object> event = Records.event(obs);
            if (event != null) {
                ctx.emit("instance_events", event);
            }
            keep.dirty = true;
            Book b = keep.book;
            if (b.dirtyFrom != null && b.emittedUntil != null && b.dirtyFrom < b.emittedUntil) {
                advance(keep, wm, ctx);  // a late event: correct now
            }
        }
        schedule(keep, ctx, obs.at);
        return keep;
    }

    /** A timer of the key fired; returns the state to store, or null to clear it. */
    public Keep onTimer(Keep keep, long timestamp, Context ctx) {
        keep.timers.remove(timestamp);
        long current = ctx.watermarkMs();
        boolean last = current >= MAX_WATERMARK;
        long now = Math.max(last ? Math.max(ctx.newest(), keep.heard) - t.outOfOrder : us(current),
                keep.watermark);
        keep.watermark = now;
        boolean deleted = last && keep.state.deletedAt != null;
        advance(keep, deleted ? END - 1 : now, ctx);  // a deletion ends usage
        keep.book.compact(keep.state, t.period, now - t.lateness);
        settle(keep, last ? END : now, null, ctx);
        if (t.auditExpected) {
            missing(keep, now - t.settle, ctx);  // even at the end: the audit runs after its period
        }
        if (!keep.audited.isEmpty()) {
            long horizon = keep.state.horizon;
            keep.audited.removeIf((key, at) -> at < horizon && !waiting(keep, key));
        }
        if (keep.dirty) {
            flush(keep, ctx);
        }
        if (finished(keep, now)) {
            return null;
        }
        if (!last) {  // at +inf a timer fires at once, again and again
            schedule(keep, ctx, null);
        }
        return keep;
    }

    /** Emit usage up to {@code now}, or, for an instance silent longer than the silence
     * limit, up to that limit (its later periods are held until it is heard of again). */
    private void advance(Keep keep, long now, Context ctx) {
        if (held(keep, now)) {
            now = keep.heard + t.silence;
        }
        for (Book.Revised r : keep.book.advance(keep.state, rules, t.period, now)) {
            ctx.emit("instance_usage", Records.usage(keep.state, r.row, keep.base + r.revision));
        }
    }

    private boolean held(Keep keep, long at) {
        return t.silence != 0 && keep.state.deletedAt == null && at > keep.heard + t.silence;
    }

    /** Verify the pending exists whose settle time passed; one that just arrived is written
     * at once, as pending when it must wait. */
    private void settle(Keep keep, long now, String arrived, Context ctx) {
        if (keep.pending.isEmpty()) {
            return;
        }
        for (Iterator<Observation> it = keep.pending.values().iterator(); it.hasNext(); ) {
            Observation obs = it.next();
            boolean justArrived = obs.messageId.equals(arrived);
            if (now < Audit.dueAt(obs, t.settle) && !justArrived) {
                continue;  // still settling, and written as pending when it arrived
            }
            Audit.Result result = Audit.verify(keep.state, obs, now, t.settle, t.period);
            if (!result.status.equals("pending")) {
                it.remove();
            } else if (!justArrived) {
                continue;
            }
            auditRow(keep, obs, result, ctx);
        }
    }

    /** Whether an exists of message key {@code key} is still pending: its audit row is kept. */
    private static boolean waiting(Keep keep, long key) {
        for (Observation o : keep.pending.values()) {
            if (o.key == key) {
                return true;
            }
        }
        return false;
    }

    /** Flag the periods ending by {@code until} in which the instance existed but no
     * periodic exists arrived: a failed row named missing:cell:instance:period start, once. */
    private void missing(Keep keep, long until, Context ctx) {
        long[] window = Usage.existence(keep.state);
        if (window == null) {
            return;
        }
        long start = keep.checked == null ? Usage.periodOf(window[0], t.period) : keep.checked;
        long stop = Usage.periodOf(Math.min(until, window[1] + t.period), t.period);
        if (stop <= start) {
            return;
        }
        InstanceState s = keep.state;
        for (long begin : Audit.missing(s, rules, keep.periodic, start, stop, t.period)) {
            String name = "missing:" + s.cell + ":" + s.instanceId + ":"
                    + NovaTime.format(begin).substring(0, 19) + "Z";
            Audit.Result result = new Audit.Result(name, s.cell, s.instanceId, begin,
                    begin + t.period, "failed",
                    List.of(new Audit.Mismatch("exists", "a periodic exists for the period", null)));
            ctx.emit("usage_audit", Records.audit(result, keep.base));
        }
        keep.checked = stop;
        keep.periodic.removeIf(p -> p < stop);
    }

    private void auditRow(Keep keep, Observation obs, Audit.Result result, Context ctx) {
        int old = keep.audited.find(obs.key);
        long at = old < 0 ? obs.at : keep.audited.at(old);
        long revision = old < 0 ? -1 : keep.audited.revision(old);
        long digest = result.digest();
        if (old < 0 || keep.audited.digest(old) != digest) {
            keep.audited.put(obs.key, at, revision + 1, digest);
            ctx.emit("usage_audit", Records.audit(result, keep.base + revision + 1));
        }
    }

    private void flush(Keep keep, Context ctx) {
        Map<String, Object> row = Records.instance(keep.state, rules);
        long digest = Book.digest(row.toString());
        keep.dirty = false;
        if (keep.rowRevision < 0 || digest != keep.rowDigest) {
            keep.rowRevision += 1;
            keep.rowDigest = digest;
            row.put("revision", keep.base + keep.rowRevision);
            ctx.emit("instances", row);
        }
    }

    /** Deleted, every period emitted, nothing pending, and past the allowed lateness. */
    private boolean finished(Keep keep, long now) {
        Long deleted = keep.state.deletedAt;
        long[] window = Usage.existence(keep.state);
        if (t.auditExpected && window != null) {
            long checked = keep.checked == null || keep.checked == 0 ? -END : keep.checked;
            if (checked < Usage.periodOf(window[1] - 1, t.period) + t.period) {
                return false;  // a period it existed in still waits for its exists
            }
        }
        return deleted != null && keep.pending.isEmpty() && !keep.dirty
                && keep.book.nextDue(keep.state, t.period) == null && now >= deleted + t.lateness;
    }

    /** Register the timers the instance now needs, each once, in time order. */
    private void schedule(Keep keep, Context ctx, Long flushAt) {
        // Called for every event and timer: the due times go in a small array, not in sets.
        long[] due = new long[keep.pending.size() + 4];
        int n = 0;
        Long rowDue = keep.book.nextDue(keep.state, t.period);
        if (rowDue != null && !held(keep, rowDue)) {
            due[n++] = rowDue;
        }
        for (Observation o : keep.pending.values()) {
            due[n++] = Audit.dueAt(o, t.settle);
        }
        if (keep.state.deletedAt != null) {
            due[n++] = keep.state.deletedAt + t.lateness;
        }
        long[] window = Usage.existence(keep.state);
        if (t.auditExpected && window != null) {
            long first = keep.checked == null ? Usage.periodOf(window[0], t.period) : keep.checked;
            if (first < window[1]) {
                due[n++] = first + t.period + t.settle;  // the next period to look for its exists
            }
        }
        // Never at or before the watermark: such a timer would fire within the same advance.
        long floor = keep.watermark > -END ? Math.floorDiv(keep.watermark, MS) + 1 : -END;
        int m = 0;
        for (int k = 0; k < n; k++) {
            if (due[k] < END) {
                due[m++] = Math.max(ceilMs(due[k]), floor);
            }
        }
        if (keep.dirty && flushAt != null) {
            long flush = Math.max(ceilMs(flushAt), floor);
            boolean covered = false;
            for (int k = 0; k < m; k++) {
                covered |= due[k] <= flush;
            }
            for (long d : keep.timers) {
                covered |= d <= flush;
            }
            if (!covered) {
                due[m++] = flush;  // when the watermark passes this event
            }
        }
        Arrays.sort(due, 0, m);
        for (int k = 0; k < m; k++) {
            if (keep.timers.add(due[k])) {
                ctx.registerTimer(due[k]);
            }
        }
    }

    /** Whether {@code obs} (same time, same message key) is folded in already. */
    private static boolean seen(InstanceState s, Observation obs) {
        int i = s.after(obs.at, obs.key);
        if (i == 0) {
            return false;
        }
        Parts.Sample x = s.samples.get(i - 1);
        return x.at == obs.at && x.key == obs.key;
    }

    static long ceilMs(long us) {
        return -Math.floorDiv(-us, MS);
    }

    /** A watermark in ms as µs, saturating (the initial watermark is Long.MIN_VALUE). */
    static long us(long ms) {
        return ms <= -END / MS ? -END : ms >= END / MS ? END : ms * MS;
    }
}
