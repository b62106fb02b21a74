package stacktide.lifecycle;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

import stacktide.lifecycle.Parts.Flavor;
import stacktide.lifecycle.Parts.Image;
import stacktide.lifecycle.Parts.Launch;
import stacktide.lifecycle.Parts.Register;
import stacktide.lifecycle.Parts.Sample;

/**
 * What one instance keeps in Flink state ({@code jobs.instance_state.Keep}), and its bytes:
 * a versioned, explicit encoding (no Kryo, no Java serialization), so a savepoint stays
 * readable when a class changes and its size is what the fields need.
 */
public final class Keep {
    private static final int VERSION = 1;

    public InstanceState state;
    public long base;  // revisions of this key's rows start here
    public Book book = new Book();
    public final LinkedHashMap<String, Observation> pending = new LinkedHashMap<>();
    public final Map<Long, long[]> audited = new HashMap<>();  // message key -> at, rev, digest
    public long rowRevision = -1;  // instances row emitted: revision, digest
    public long rowDigest = 0;
    public boolean dirty;
    public final TreeSet<Long> timers = new TreeSet<>();  // ms, registered and not yet fired
    public long watermark = -InstanceState.END;
    public long heard = -InstanceState.END;
    public final Set<Long> periodic = new HashSet<>();
    public Long checked;

    public Keep(InstanceState state, long base) {
        this.state = state;
        this.base = base;
    }

    public byte[] toBytes() {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream(512);
        try (DataOutputStream out = new DataOutputStream(bytes)) {
            out.writeByte(VERSION);
            writeState(out, state);
            out.writeLong(base);
            out.writeInt(book.rows.size());
            for (Map.Entry<Book.Key, Book.Emitted> e : book.rows.entrySet()) {
                out.writeLong(e.getKey().periodStart);
                utf(out, e.getKey().flavorId);
                out.writeLong(e.getValue().revision);
                out.writeLong(e.getValue().digest);
            }
            writeLong(out, book.emittedUntil);
            writeLong(out, book.dirtyFrom);
            out.writeInt(pending.size());
            for (Observation o : pending.values()) {
                writeObservation(out, o);
            }
            out.writeInt(audited.size());
            for (Map.Entry<Long, long[]> e : audited.entrySet()) {
                out.writeLong(e.getKey());
                for (long x : e.getValue()) {
                    out.writeLong(x);
                }
            }
            out.writeLong(rowRevision);
            out.writeLong(rowDigest);
            out.writeBoolean(dirty);
            writeLongs(out, timers);
            out.writeLong(watermark);
            out.writeLong(heard);
            writeLongs(out, periodic);
            writeLong(out, checked);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return bytes.toByteArray();
    }

    public static Keep fromBytes(byte[] data) {
        try (DataInputStream in = new DataInputStream(new ByteArrayInputStream(data))) {
            int version = in.readByte();
            if (version != VERSION) {
                throw new IllegalStateException("instance state of version " + version
                        + "; this build reads version " + VERSION);
            }
            Keep k = new Keep(readState(in), 0);
            k.base = in.readLong();
            for (int n = in.readInt(); n > 0; n--) {
                Book.Key key = new Book.Key(in.readLong(), utf(in));
                k.book.rows.put(key, new Book.Emitted(in.readLong(), in.readLong()));
            }
            k.book.emittedUntil = readLong(in);
            k.book.dirtyFrom = readLong(in);
            for (int n = in.readInt(); n > 0; n--) {
                Observation o = readObservation(in);
                k.pending.put(o.messageId, o);
            }
            for (int n = in.readInt(); n > 0; n--) {
                k.audited.put(in.readLong(), new long[] {in.readLong(), in.readLong(), in.readLong()});
            }
            k.rowRevision = in.readLong();
            k.rowDigest = in.readLong();
            k.dirty = in.readBoolean();
            readLongs(in, k.timers);
            k.watermark = in.readLong();
            k.heard = in.readLong();
            readLongs(in, k.periodic);
            k.checked = readLong(in);
            return k;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static void writeState(DataOutputStream out, InstanceState s) throws IOException {
        utf(out, s.cell);
        utf(out, s.instanceId);
        out.writeInt(s.samples.size());
        for (Sample x : s.samples) {
            out.writeLong(x.at);
            out.writeLong(x.key);
            writeText(out, x.state);
            writeFlavor(out, x.flavor);
            writeImage(out, x.image);
            writeLong(out, x.launched);
        }
        out.writeInt(s.registers.size());
        for (Map.Entry<String, Register> e : s.registers.entrySet()) {
            utf(out, e.getKey());
            out.writeLong(e.getValue().at);
            out.writeLong(e.getValue().key);
            writeText(out, (String) e.getValue().value);
        }
        writeLong(out, s.firstLaunched);
        writeLong(out, s.deletedAt);
        writeLong(out, s.observedFrom);
        out.writeInt(s.launches.size());
        for (Launch x : s.launches) {
            out.writeLong(x.launched);
            out.writeLong(x.at);
            out.writeLong(x.key);
            writeFlavor(out, x.flavor);
            writeImage(out, x.image);
        }
        out.writeLong(s.horizon);
    }

    private static InstanceState readState(DataInputStream in) throws IOException {
        InstanceState s = new InstanceState(utf(in), utf(in));
        for (int n = in.readInt(); n > 0; n--) {
            s.samples.add(new Sample(in.readLong(), in.readLong(), readText(in), readFlavor(in),
                    readImage(in), readLong(in)));
        }
        for (int n = in.readInt(); n > 0; n--) {
            s.registers.put(utf(in), new Register(in.readLong(), in.readLong(), readText(in)));
        }
        s.firstLaunched = readLong(in);
        s.deletedAt = readLong(in);
        s.observedFrom = readLong(in);
        for (int n = in.readInt(); n > 0; n--) {
            s.launches.add(new Launch(in.readLong(), in.readLong(), in.readLong(), readFlavor(in),
                    readImage(in)));
        }
        s.horizon = in.readLong();
        return s;
    }

    private static void writeObservation(DataOutputStream out, Observation o) throws IOException {
        utf(out, o.cell);
        utf(out, o.instanceId);
        utf(out, o.messageId);
        utf(out, o.eventType);
        out.writeLong(o.at);
        out.writeLong(o.key);
        out.writeBoolean(o.effect.audit);
        out.writeInt(o.effect.sets.size());
        for (String leaf : o.effect.sets) {
            utf(out, leaf);
        }
        out.writeInt(o.values.size());
        for (Map.Entry<String, Object> e : o.values.entrySet()) {
            utf(out, e.getKey());
            Object v = e.getValue();
            out.writeByte(v == null ? 0 : v instanceof Long ? 1 : 2);
            if (v instanceof Long) {
                out.writeLong((Long) v);
            } else if (v != null) {
                utf(out, (String) v);
            }
        }
        writeText(out, o.requestId);
    }

    private static Observation readObservation(DataInputStream in) throws IOException {
        String cell = utf(in);
        String instanceId = utf(in);
        String messageId = utf(in);
        String eventType = utf(in);
        long at = in.readLong();
        long key = in.readLong();
        boolean audit = in.readBoolean();
        Set<String> sets = new HashSet<>();
        for (int n = in.readInt(); n > 0; n--) {
            sets.add(utf(in));
        }
        Map<String, Object> values = new HashMap<>();
        for (int n = in.readInt(); n > 0; n--) {
            String name = utf(in);
            int kind = in.readByte();
            values.put(name, kind == 0 ? null : kind == 1 ? (Object) in.readLong() : utf(in));
        }
        return new Observation(cell, instanceId, messageId, eventType, at, key,
                new Rules.Effect(Set.copyOf(sets), audit), values, readText(in));
    }

    private static void writeFlavor(DataOutputStream out, Flavor f) throws IOException {
        out.writeBoolean(f != null);
        if (f != null) {
            utf(out, f.flavorId);
            writeText(out, f.flavorName);
            writeLong(out, f.vcpus);
            writeLong(out, f.memoryMb);
            writeLong(out, f.rootGb);
            writeLong(out, f.ephemeralGb);
            writeText(out, f.instanceTypeId);
        }
    }

    private static Flavor readFlavor(DataInputStream in) throws IOException {
        return in.readBoolean() ? new Flavor(utf(in), readText(in), readLong(in), readLong(in),
                readLong(in), readLong(in), readText(in)) : null;
    }

    private static void writeImage(DataOutputStream out, Image i) throws IOException {
        out.writeBoolean(i != null);
        if (i != null) {
            writeText(out, i.imageRef);
            writeText(out, i.osType);
            writeText(out, i.osArchitecture);
            writeText(out, i.osDistro);
            writeText(out, i.osVersion);
        }
    }

    private static Image readImage(DataInputStream in) throws IOException {
        return in.readBoolean() ? new Image(readText(in), readText(in), readText(in), readText(in),
                readText(in)) : null;
    }

    /** A string of any length (writeUTF stops at 64 KB). */
    private static void utf(DataOutputStream out, String s) throws IOException {
        byte[] b = s.getBytes(java.nio.charset.StandardCharsets.UTF_8);
        out.writeInt(b.length);
        out.write(b);
    }

    private static String utf(DataInputStream in) throws IOException {
        byte[] b = new byte[in.readInt()];
        in.readFully(b);
        return new String(b, java.nio.charset.StandardCharsets.UTF_8);
    }

    private static void writeText(DataOutputStream out, String s) throws IOException {
        out.writeBoolean(s != null);
        if (s != null) {
            utf(out, s);
        }
    }

    private static String readText(DataInputStream in) throws IOException {
        return in.readBoolean() ? utf(in) : null;
    }

    private static void writeLong(DataOutputStream out, Long v) throws IOException {
        out.writeBoolean(v != null);
        if (v != null) {
            out.writeLong(v);
        }
    }

    private static Long readLong(DataInputStream in) throws IOException {
        return in.readBoolean() ? in.readLong() : null;
    }

    private static void writeLongs(DataOutputStream out, Set<Long> values) throws IOException {
        out.writeInt(values.size());
        for (long v : values) {
            out.writeLong(v);
        }
    }

    private static void readLongs(DataInputStream in, Set<Long> into) throws IOException {
        for (int n = in.readInt(); n > 0; n--) {
            into.add(in.readLong());
        }
    }
}
