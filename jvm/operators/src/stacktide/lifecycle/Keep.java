package stacktide.lifecycle;

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
import stacktide.flink.Packed;

/**
 * What one instance keeps in Flink state ({@code jobs.instance_state.Keep}), and its bytes:
 * a versioned, explicit encoding (no Kryo, no Java serialization), so a savepoint stays
 * readable when a class changes and its size is what the fields need.
 */
public final class Keep {
    /** 3: message keys as variable-length numbers (they are 32-bit hashes); a pending exists without its
     * message key (its message id's hash) and request id, its id as 16 bytes, its times as
     * differences. Version 2 is still read. */
    private static final int VERSION = 3;
    private static final int READS_FROM = 2;

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
        Packed.Out out = new Packed.Out();
        Shared seen = new Shared();
        writeState(out, state, seen);
        out.writeLong(base);
        out.writeInt(book.rows.size());
        for (Map.Entry<Book.Key, Book.Emitted> e : book.rows.entrySet()) {
            out.writeTime(e.getKey().periodStart);
            out.writeText(e.getKey().flavorId);
            out.writeLong(e.getValue().revision);
            out.writeFixed(e.getValue().digest);
        }
        out.writeTime(book.emittedUntil);
        out.writeTime(book.dirtyFrom);
        out.writeInt(pending.size());
        for (Observation o : pending.values()) {
            writeObservation(out, o);
        }
        out.writeInt(audited.size());
        for (Map.Entry<Long, long[]> e : audited.entrySet()) {
            writeKey(out, e.getKey());
            out.writeTime(e.getValue()[0]);
            out.writeLong(e.getValue()[1]);
            out.writeFixed(e.getValue()[2]);
        }
        out.writeLong(rowRevision);
        out.writeFixed(rowDigest);
        out.writeBoolean(dirty);
        writeTimes(out, timers);
        out.writeTime(watermark);
        out.writeTime(heard);
        writeTimes(out, periodic);
        out.writeTime(checked);
        return out.finish(VERSION);
    }

    public static Keep fromBytes(byte[] data) {
        Packed.In in = new Packed.In(data);
        if (in.version < READS_FROM || in.version > VERSION) {
            throw new IllegalStateException("instance state of version " + in.version
                    + "; this build reads versions " + READS_FROM + " to " + VERSION);
        }
        Shared seen = new Shared();
        Keep k = new Keep(readState(in, seen), 0);
        k.base = in.readLong();
        for (int n = in.readInt(); n > 0; n--) {
            Book.Key key = new Book.Key(in.readTime(), in.readText());
            k.book.rows.put(key, new Book.Emitted(in.readLong(), in.readFixed()));
        }
        k.book.emittedUntil = in.readNullableTime();
        k.book.dirtyFrom = in.readNullableTime();
        for (int n = in.readInt(); n > 0; n--) {
            Observation o = readObservation(in);
            k.pending.put(o.messageId, o);
        }
        for (int n = in.readInt(); n > 0; n--) {
            long key = readKey(in);
            k.audited.put(key, new long[] {in.readTime(), in.readLong(), in.readFixed()});
        }
        k.rowRevision = in.readLong();
        k.rowDigest = in.readFixed();
        k.dirty = in.readBoolean();
        readTimes(in, k.timers);
        k.watermark = in.readTime();
        k.heard = in.readTime();
        readTimes(in, k.periodic);
        k.checked = in.readNullableTime();
        return k;
    }

    private static void writeState(Packed.Out out, InstanceState s, Shared seen) {
        out.writeText(s.cell);
        out.writeText(s.instanceId);
        out.writeInt(s.samples.size());
        for (Sample x : s.samples) {
            out.writeTime(x.at);
            writeKey(out, x.key);
            out.writeText(x.state);
            writeFlavor(out, x.flavor, seen);
            writeImage(out, x.image, seen);
            out.writeTime(x.launched);
        }
        out.writeInt(s.registers.size());
        for (Map.Entry<String, Register> e : s.registers.entrySet()) {
            out.writeText(e.getKey());
            out.writeTime(e.getValue().at);
            writeKey(out, e.getValue().key);
            out.writeText((String) e.getValue().value);
        }
        out.writeTime(s.firstLaunched);
        out.writeTime(s.deletedAt);
        out.writeTime(s.observedFrom);
        out.writeInt(s.launches.size());
        for (Launch x : s.launches) {
            out.writeTime(x.launched);
            out.writeTime(x.at);
            writeKey(out, x.key);
            writeFlavor(out, x.flavor, seen);
            writeImage(out, x.image, seen);
        }
        out.writeTime(s.horizon);
    }

    private static InstanceState readState(Packed.In in, Shared seen) {
        InstanceState s = new InstanceState(in.readText(), in.readText());
        for (int n = in.readInt(); n > 0; n--) {
            long at = in.readTime();
            long key = readKey(in);
            String state = in.readText();
            Flavor flavor = readFlavor(in, seen);
            Image image = readImage(in, seen);
            s.samples.add(new Sample(at, key, state, flavor, image, in.readNullableTime()));
        }
        for (int n = in.readInt(); n > 0; n--) {
            String name = in.readText();
            long at = in.readTime();
            long key = readKey(in);
            s.registers.put(name, new Register(at, key, in.readText()));
        }
        s.firstLaunched = in.readNullableTime();
        s.deletedAt = in.readNullableTime();
        s.observedFrom = in.readNullableTime();
        for (int n = in.readInt(); n > 0; n--) {
            long launched = in.readTime();
            long at = in.readTime();
            long key = readKey(in);
            Flavor flavor = readFlavor(in, seen);
            s.launches.add(new Launch(launched, at, key, flavor, readImage(in, seen)));
        }
        s.horizon = in.readTime();
        return s;
    }

    /** A pending exists: what the audit reads of it. Its message key is its message id's
     * hash, computed again when read; its request id no row of the audit names. */
    private static void writeObservation(Packed.Out out, Observation o) {
        out.writeText(o.cell);
        out.writeText(o.instanceId);
        out.writeId(o.messageId);
        out.writeText(o.eventType);
        out.writeTime(o.at);
        out.writeBoolean(o.effect.audit);
        out.writeInt(o.effect.sets.size());
        for (String leaf : o.effect.sets) {
            out.writeText(leaf);
        }
        out.writeInt(o.values.size());
        for (Map.Entry<String, Object> e : o.values.entrySet()) {
            out.writeText(e.getKey());
            Object v = e.getValue();
            out.writeByte(v == null ? 0 : v instanceof Long ? 1 : 2);
            if (v instanceof Long) {
                out.writeTime(((Long) v).longValue());
            } else if (v != null) {
                out.writeText((String) v);
            }
        }
        out.writeText(o.effect.audit ? null : o.requestId);
    }

    private static Observation readObservation(Packed.In in) {
        boolean old = in.version < 3;
        String cell = in.readText();
        String instanceId = in.readText();
        String messageId = old ? in.readText() : in.readId();
        String eventType = in.readText();
        long at = in.readTime();
        long key = old ? in.readFixed() : Blake2b.key(messageId);
        boolean audit = in.readBoolean();
        Set<String> sets = new HashSet<>();
        for (int n = in.readInt(); n > 0; n--) {
            sets.add(in.readText());
        }
        Map<String, Object> values = new HashMap<>();
        for (int n = in.readInt(); n > 0; n--) {
            String name = in.readText();
            int kind = in.readByte();
            Object v = kind == 0 ? null : kind == 2 ? in.readText()
                    : (Object) (old ? in.readLong() : in.readTime());
            values.put(name, v);
        }
        return new Observation(cell, instanceId, messageId, eventType, at, key,
                new Rules.Effect(Set.copyOf(sets), audit), values, in.readText());
    }

    /** The flavors and images of one state, each written once and then referred to by number
     * (every sample carries its flavor and image, which seldom change). */
    private static final class Shared {
        final Map<Object, Integer> written = new HashMap<>();
        final java.util.List<Object> read = new java.util.ArrayList<>();
    }

    /** 0: null; n > 0: the (n-1)th part already written; -1: a new part follows. */
    private static boolean reference(Packed.Out out, Object part, Shared seen) {
        if (part == null) {
            out.writeInt(0);
            return true;
        }
        Integer at = seen.written.get(part);
        if (at != null) {
            out.writeInt(at + 1);
            return true;
        }
        seen.written.put(part, seen.written.size());
        out.writeInt(-1);
        return false;
    }

    private static void writeFlavor(Packed.Out out, Flavor f, Shared seen) {
        if (!reference(out, f, seen)) {
            out.writeText(f.flavorId);
            out.writeText(f.flavorName);
            out.writeNullable(f.vcpus);
            out.writeNullable(f.memoryMb);
            out.writeNullable(f.rootGb);
            out.writeNullable(f.ephemeralGb);
            out.writeText(f.instanceTypeId);
        }
    }

    private static Flavor readFlavor(Packed.In in, Shared seen) {
        int ref = in.readInt();
        if (ref >= 0) {
            return ref == 0 ? null : (Flavor) seen.read.get(ref - 1);
        }
        Flavor f = new Flavor(in.readText(), in.readText(), in.readNullable(), in.readNullable(),
                in.readNullable(), in.readNullable(), in.readText());
        seen.read.add(f);
        return f;
    }

    private static void writeImage(Packed.Out out, Image i, Shared seen) {
        if (!reference(out, i, seen)) {
            out.writeText(i.imageRef);
            out.writeText(i.osType);
            out.writeText(i.osArchitecture);
            out.writeText(i.osDistro);
            out.writeText(i.osVersion);
        }
    }

    private static Image readImage(Packed.In in, Shared seen) {
        int ref = in.readInt();
        if (ref >= 0) {
            return ref == 0 ? null : (Image) seen.read.get(ref - 1);
        }
        Image i = new Image(in.readText(), in.readText(), in.readText(), in.readText(),
                in.readText());
        seen.read.add(i);
        return i;
    }

    /** A message key: a 32-bit hash, or -1 (a compacted state's first sample). */
    private static void writeKey(Packed.Out out, long key) {
        out.writeLong(key);
    }

    private static long readKey(Packed.In in) {
        return in.version < 3 ? in.readFixed() : in.readLong();
    }

    private static void writeTimes(Packed.Out out, Set<Long> values) {
        out.writeInt(values.size());
        for (long v : values) {
            out.writeTime(v);
        }
    }

    private static void readTimes(Packed.In in, Set<Long> into) {
        for (int n = in.readInt(); n > 0; n--) {
            into.add(in.readTime());
        }
    }
}
