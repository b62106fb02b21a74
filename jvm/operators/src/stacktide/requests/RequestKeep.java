package stacktide.requests;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.TreeSet;

/**
 * What one request keeps in Flink state ({@code jobs.request_state.Keep}), and its bytes: a
 * versioned, explicit encoding, as {@code stacktide.lifecycle.Keep}'s.
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
        ByteArrayOutputStream bytes = new ByteArrayOutputStream(256);
        try (DataOutputStream out = new DataOutputStream(bytes)) {
            out.writeByte(VERSION);
            text(out, timeline.key);
            out.writeLong(base);
            out.writeLong(rowRevision);
            out.writeLong(rowDigest);
            out.writeInt(errors.size());
            for (Map.Entry<String, long[]> e : errors.entrySet()) {
                text(out, e.getKey());
                out.writeLong(e.getValue()[0]);
                out.writeLong(e.getValue()[1]);
            }
            out.writeBoolean(dirty);
            out.writeBoolean(closed);
            out.writeInt(timers.size());
            for (long t : timers) {
                out.writeLong(t);
            }
            out.writeInt(timeline.events.size());
            for (Event e : timeline.events) {
                text(out, e.messageId);
                out.writeLong(e.at);
                for (String s : new String[] {e.cell, e.eventType, e.priority, e.service, e.host,
                    e.requestId, e.globalRequestId, e.instanceId, e.tenantId}) {
                    text(out, s);
                }
                out.writeBoolean(e.fault != null);
                if (e.fault != null) {
                    for (String s : e.fault) {
                        text(out, s);
                    }
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return bytes.toByteArray();
    }

    public static RequestKeep fromBytes(byte[] data) {
        try (DataInputStream in = new DataInputStream(new ByteArrayInputStream(data))) {
            int version = in.readByte();
            if (version != VERSION) {
                throw new IllegalStateException("request state of version " + version
                        + ", this build reads " + VERSION);
            }
            RequestKeep k = new RequestKeep(new Timeline(text(in)), in.readLong());
            k.rowRevision = in.readLong();
            k.rowDigest = in.readLong();
            for (int n = in.readInt(); n > 0; n--) {
                k.errors.put(text(in), new long[] {in.readLong(), in.readLong()});
            }
            k.dirty = in.readBoolean();
            k.closed = in.readBoolean();
            for (int n = in.readInt(); n > 0; n--) {
                k.timers.add(in.readLong());
            }
            for (int n = in.readInt(); n > 0; n--) {
                String id = text(in);
                long at = in.readLong();
                String[] s = new String[9];
                for (int j = 0; j < s.length; j++) {
                    s[j] = text(in);
                }
                String[] fault = null;
                if (in.readBoolean()) {
                    fault = new String[] {text(in), text(in), text(in)};
                }
                k.timeline.events.add(new Event(id, at, s[0], s[1], s[2], s[3], s[4], s[5], s[6],
                        s[7], s[8], fault));
            }
            return k;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** A nullable text of any length (writeUTF stops at 64 KB; a fault message may not). */
    private static void text(DataOutputStream out, String s) throws IOException {
        if (s == null) {
            out.writeInt(-1);
            return;
        }
        byte[] b = s.getBytes(java.nio.charset.StandardCharsets.UTF_8);
        out.writeInt(b.length);
        out.write(b);
    }

    private static String text(DataInputStream in) throws IOException {
        int n = in.readInt();
        if (n < 0) {
            return null;
        }
        byte[] b = new byte[n];
        in.readFully(b);
        return new String(b, java.nio.charset.StandardCharsets.UTF_8);
    }
}
