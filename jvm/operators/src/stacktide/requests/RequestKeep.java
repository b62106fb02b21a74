package stacktide.requests;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.TreeSet;

import stacktide.flink.Packed;

/**
 * What one request keeps in Flink state ({@code jobs.request_state.Keep}), and its bytes: a
 * versioned, compact encoding ({@link Packed}), as {@code stacktide.lifecycle.Keep}'s.
 */
public final class RequestKeep {
    private static final int VERSION = 1;

    public final Timeline timeline;
    public final long base;
    public long rowRevision = -1;  // requests row emitted: revision, digest
    public long rowDigest;
    public final Map<String, long[]> errors = new LinkedHashMap<>();  // message id: rev, digest
    public boolean dirty;
    public boolean closed;  // the row written last was closed by the inactivity timeout
    public final TreeSet<Long> timers = new TreeSet<>();

    public RequestKeep(Timeline timeline, long base) {
        this.timeline = timeline;
        this.base = base;
    }

    public byte[] toBytes() {
        Packed.Out out = new Packed.Out();
        out.writeText(timeline.key);
        out.writeLong(base);
        out.writeLong(rowRevision);
        out.writeFixed(rowDigest);
        out.writeInt(errors.size());
        for (Map.Entry<String, long[]> e : errors.entrySet()) {
            out.writeText(e.getKey());
            out.writeLong(e.getValue()[0]);
            out.writeFixed(e.getValue()[1]);
        }
        out.writeBoolean(dirty);
        out.writeBoolean(closed);
        out.writeInt(timers.size());
        for (long t : timers) {
            out.writeTime(t);
        }
        out.writeInt(timeline.events.size());
        for (Event e : timeline.events) {
            out.writeText(e.messageId);
            out.writeTime(e.at);
            for (String s : new String[] {e.cell, e.eventType, e.priority, e.service, e.host,
                e.requestId, e.globalRequestId, e.instanceId, e.tenantId}) {
                out.writeText(s);
            }
            out.writeBoolean(e.fault != null);
            if (e.fault != null) {
                for (String s : e.fault) {
                    out.writeText(s);
                }
            }
        }
        return out.finish(VERSION);
    }

    public static RequestKeep fromBytes(byte[] data) {
        Packed.In in = new Packed.In(data);
        if (in.version != VERSION) {
            throw new IllegalStateException("request state of version " + in.version
                    + ", this build reads " + VERSION);
        }
        RequestKeep k = new RequestKeep(new Timeline(in.readText()), in.readLong());
        k.rowRevision = in.readLong();
        k.rowDigest = in.readFixed();
        for (int n = in.readInt(); n > 0; n--) {
            String id = in.readText();
            k.errors.put(id, new long[] {in.readLong(), in.readFixed()});
        }
        k.dirty = in.readBoolean();
        k.closed = in.readBoolean();
        for (int n = in.readInt(); n > 0; n--) {
            k.timers.add(in.readTime());
        }
        for (int n = in.readInt(); n > 0; n--) {
            String id = in.readText();
            long at = in.readTime();
            String[] s = new String[9];
            for (int j = 0; j < s.length; j++) {
                s[j] = in.readText();
            }
            String[] fault = null;
            if (in.readBoolean()) {
                fault = new String[] {in.readText(), in.readText(), in.readText()};
            }
            k.timeline.events.add(new Event(id, at, s[0], s[1], s[2], s[3], s[4], s[5], s[6],
                    s[7], s[8], fault));
        }
        return k;
    }
}
