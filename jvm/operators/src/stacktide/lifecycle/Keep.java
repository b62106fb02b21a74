package stacktide.lifecycle;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.TreeMap;
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
    /** 4: times in whole seconds where they are (period bounds), a sample's launch and a
     * register's event as differences from the one before, names by their place in
     * {@link Observation#NAMES}, a pending exists' values as changes from the one before, the audited
     * exists in time order with their digests in a table. 3: message keys as variable-length
     * numbers, a pending exists without its message key and request id, its id as 16 bytes.
     * Versions 2 and 3 are still read ({@link KeepEarlier}). */
    private static final int VERSION = 4;
    private static final int READS_FROM = 2;

    public InstanceState state;
    public long base;  // revisions of this key's rows start here
    public Book book = new Book();
    public final LinkedHashMap<String, Observation> pending = new LinkedHashMap<>();
    public Audited audited = new Audited();
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

    /** A copy sharing no collection with this one; the samples, registers, launches, book
     * entries and observations are shared, as nothing changes them once made. */
    public Keep copy() {
        Keep k = new Keep(state.copy(), base);
        k.book = book.copy();
        k.pending.putAll(pending);
        k.audited = audited.copy();
        k.rowRevision = rowRevision;
        k.rowDigest = rowDigest;
        k.dirty = dirty;
        k.timers.addAll(timers);
        k.watermark = watermark;
        k.heard = heard;
        k.periodic.addAll(periodic);
        k.checked = checked;
        return k;
    }

    public byte[] toBytes() {
        Packed.Out out = new Packed.Out();
        Shared seen = new Shared();
        writeState(out, state, seen);
        out.writeLong(base);
        out.writeInt(book.rows.size());
        for (Map.Entry<Book.Key, Book.Emitted> e : book.rows.entrySet()) {  // period order
            out.writeInstant(e.getKey().periodStart);
            out.writeText(e.getKey().flavorId);
            out.writeLong(e.getValue().revision);
            out.writeFixed(e.getValue().digest);
        }
        out.writeInstant(book.emittedUntil);
        out.writeInstant(book.dirtyFrom);
        out.writeInt(pending.size());
        Map<String, Object> before = Map.of();
        for (Observation o : pending.values()) {
            writeObservation(out, o, before);
            before = o.values;
        }
        writeAudited(out);
        out.writeLong(rowRevision);
        out.writeFixed(rowDigest);
        out.writeBoolean(dirty);
        writeTimes(out, timers);
        out.writeInstant(watermark);
        out.writeInstant(heard);
        writeTimes(out, new TreeSet<>(periodic));
        out.writeInstant(checked);
        return out.finish(VERSION);
    }

    public static Keep fromBytes(byte[] data) {
        Packed.In in = new Packed.In(data);
        if (in.version < READS_FROM || in.version > VERSION) {
            throw new IllegalStateException("instance state of version " + in.version
                    + "; this build reads versions " + READS_FROM + " to " + VERSION);
        }
        if (in.version < VERSION) {
            return KeepEarlier.read(in);
        }
        Shared seen = new Shared();
        Keep k = new Keep(readState(in, seen), 0);
        k.base = in.readLong();
        for (int n = in.readInt(); n > 0; n--) {
            Book.Key key = new Book.Key(in.readInstant(), in.readText());
            k.book.rows.put(key, new Book.Emitted(in.readLong(), in.readFixed()));
        }
        k.book.emittedUntil = in.readNullableInstant();
        k.book.dirtyFrom = in.readNullableInstant();
        Map<String, Object> before = Map.of();
        for (int n = in.readInt(); n > 0; n--) {
            Observation o = readObservation(in, before);
            k.pending.put(o.messageId, o);
            before = o.values;
        }
        k.readAudited(in);
        k.rowRevision = in.readLong();
        k.rowDigest = in.readFixed();
        k.dirty = in.readBoolean();
        readTimes(in, k.timers);
        k.watermark = in.readInstant();
        k.heard = in.readInstant();
        readTimes(in, k.periodic);
        k.checked = in.readNullableInstant();
        return k;
    }

    private static void writeState(Packed.Out out, InstanceState s, Shared seen) {
        out.writeText(s.cell);
        out.writeText(s.instanceId);
        out.writeInt(s.samples.size());
        long launched = 0;  // a sample's launch as the difference from the one before: mostly 0
        for (Sample x : s.samples) {
            out.writeInstant(x.at);
            out.writeLong(x.key);
            out.writeText(x.state);
            writeFlavor(out, x.flavor, seen);
            writeImage(out, x.image, seen);
            out.writeBoolean(x.launched != null);
            if (x.launched != null) {
                out.writeLong(x.launched - launched);
                launched = x.launched;
            }
        }
        out.writeInt(s.registers.size());
        long key = 0;  // registers mostly share the event that set them: (at, key) as differences
        for (Map.Entry<String, Register> e : new TreeMap<>(s.registers).entrySet()) {  // one order
            writeName(out, e.getKey());
            out.writeInstant(e.getValue().at);
            out.writeLong(e.getValue().key - key);
            key = e.getValue().key;
            out.writeText((String) e.getValue().value);
        }
        out.writeInstant(s.firstLaunched);
        out.writeInstant(s.deletedAt);
        out.writeInstant(s.observedFrom);
        out.writeInt(s.launches.size());
        for (Launch x : s.launches) {
            out.writeInstant(x.launched);
            out.writeInstant(x.at);
            out.writeLong(x.key);
            writeFlavor(out, x.flavor, seen);
            writeImage(out, x.image, seen);
        }
        out.writeInstant(s.horizon);
    }

    private static InstanceState readState(Packed.In in, Shared seen) {
        InstanceState s = new InstanceState(in.readText(), in.readText());
        long launched = 0;
        for (int n = in.readInt(); n > 0; n--) {
            long at = in.readInstant();
            long key = in.readLong();
            String state = in.readText();
            Flavor flavor = readFlavor(in, seen);
            Image image = readImage(in, seen);
            Long x = null;
            if (in.readBoolean()) {
                launched += in.readLong();
                x = launched;
            }
            s.samples.add(new Sample(at, key, state, flavor, image, x));
        }
        long key = 0;
        for (int n = in.readInt(); n > 0; n--) {
            String name = readName(in);
            long at = in.readInstant();
            key += in.readLong();
            s.registers.put(name, new Register(at, key, in.readText()));
        }
        s.firstLaunched = in.readNullableInstant();
        s.deletedAt = in.readNullableInstant();
        s.observedFrom = in.readNullableInstant();
        for (int n = in.readInt(); n > 0; n--) {
            long launchedAt = in.readInstant();
            long at = in.readInstant();
            long launchKey = in.readLong();
            Flavor flavor = readFlavor(in, seen);
            s.launches.add(new Launch(launchedAt, at, launchKey, flavor, readImage(in, seen)));
        }
        s.horizon = in.readInstant();
        return s;
    }

    /** A pending exists: what the audit reads of it. Its message key is its message id's
     * hash, computed again when read; its request id no row of the audit names. Its values as
     * the changes from the exists written before it ({@code before}): an instance's exists
     * repeat its tenant, flavor and image, and differ in their audit period. */
    private static void writeObservation(Packed.Out out, Observation o, Map<String, Object> before) {
        out.writeText(o.cell);
        out.writeText(o.instanceId);
        out.writeId(o.messageId);
        out.writeText(o.eventType);
        out.writeInstant(o.at);
        out.writeBoolean(o.effect.audit);
        out.writeInt(o.effect.sets.size());
        for (String leaf : o.effect.sets) {
            writeName(out, leaf);
        }
        int changed = 0;
        for (Map.Entry<String, Object> e : o.values.entrySet()) {
            changed += same(before, e.getKey(), e.getValue()) ? 0 : 1;
        }
        out.writeInt(changed);
        for (Map.Entry<String, Object> e : o.values.entrySet()) {
            if (same(before, e.getKey(), e.getValue())) {
                continue;
            }
            writeName(out, e.getKey());
            Object v = e.getValue();
            out.writeByte(v == null ? 0 : v instanceof Long ? 1 : 2);
            if (v instanceof Long) {
                out.writeInstant(((Long) v).longValue());
            } else if (v != null) {
                out.writeText((String) v);
            }
        }
        int gone = 0;
        for (String name : before.keySet()) {
            gone += o.values.containsKey(name) ? 0 : 1;
        }
        out.writeInt(gone);
        for (String name : before.keySet()) {
            if (!o.values.containsKey(name)) {
                writeName(out, name);
            }
        }
        out.writeText(o.effect.audit ? null : o.requestId);
    }

    private static boolean same(Map<String, Object> before, String name, Object value) {
        return before.containsKey(name) && Objects.equals(before.get(name), value);
    }

    private static Observation readObservation(Packed.In in, Map<String, Object> before) {
        String cell = in.readText();
        String instanceId = in.readText();
        String messageId = in.readId();
        String eventType = in.readText();
        long at = in.readInstant();
        boolean audit = in.readBoolean();
        Set<String> sets = new HashSet<>();
        for (int n = in.readInt(); n > 0; n--) {
            sets.add(readName(in));
        }
        Map<String, Object> values = new HashMap<>(before);
        for (int n = in.readInt(); n > 0; n--) {
            String name = readName(in);
            int kind = in.readByte();
            values.put(name, kind == 0 ? null : kind == 2 ? in.readText() : (Object) in.readInstant());
        }
        for (int n = in.readInt(); n > 0; n--) {
            values.remove(readName(in));
        }
        return new Observation(cell, instanceId, messageId, eventType, at, Blake2b.key(messageId),
                new Rules.Effect(Set.copyOf(sets), audit), values, in.readText());
    }

    /** The audited exists in time order (their times then differ little), their digests in a
     * table first: most audit rows of an instance say the same (verified, no mismatch). */
    private void writeAudited(Packed.Out out) {
        List<Integer> order = new ArrayList<>(audited.size());
        for (int i = 0; i < audited.size(); i++) {
            order.add(i);
        }
        order.sort((a, b) -> Long.compare(audited.at(a), audited.at(b)));
        Map<Long, Integer> digests = new LinkedHashMap<>();
        for (int i : order) {
            digests.putIfAbsent(audited.digest(i), digests.size());
        }
        out.writeInt(digests.size());
        for (long d : digests.keySet()) {
            out.writeFixed(d);
        }
        out.writeInt(audited.size());
        for (int i : order) {
            out.writeLong(audited.key(i));
            out.writeInstant(audited.at(i));
            out.writeLong(audited.revision(i));
            out.writeInt(digests.get(audited.digest(i)));
        }
    }

    private void readAudited(Packed.In in) {
        long[] digests = new long[in.readInt()];
        for (int k = 0; k < digests.length; k++) {
            digests[k] = in.readFixed();
        }
        for (int n = in.readInt(); n > 0; n--) {
            long key = in.readLong();
            long at = in.readInstant();
            long revision = in.readLong();
            audited.put(key, at, revision, digests[in.readInt()]);
        }
    }

    /** A name by its place in {@link Observation#NAMES} (so no state's string table carries
     * it); one not there as text after a 0. */
    private static void writeName(Packed.Out out, String name) {
        int place = Observation.place(name);
        out.writeInt(place);
        if (place == 0) {
            out.writeText(name);
        }
    }

    private static String readName(Packed.In in) {
        int place = in.readInt();
        return place == 0 ? in.readText() : Observation.named(place);
    }

    /** The flavors and images of one state, each written once and then referred to by number
     * (every sample carries its flavor and image, which seldom change). */
    static final class Shared {
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

    static Flavor readFlavor(Packed.In in, Shared seen) {
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

    static Image readImage(Packed.In in, Shared seen) {
        int ref = in.readInt();
        if (ref >= 0) {
            return ref == 0 ? null : (Image) seen.read.get(ref - 1);
        }
        Image i = new Image(in.readText(), in.readText(), in.readText(), in.readText(),
                in.readText());
        seen.read.add(i);
        return i;
    }

    private static void writeTimes(Packed.Out out, Set<Long> values) {
        out.writeInt(values.size());
        for (long v : values) {
            out.writeInstant(v);
        }
    }

    private static void readTimes(Packed.In in, Set<Long> into) {
        for (int n = in.readInt(); n > 0; n--) {
            into.add(in.readInstant());
        }
    }
}
