package stacktide.lifecycle;

import java.util.HashMap;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;

import stacktide.flink.Packed;
import stacktide.lifecycle.Parts.Flavor;
import stacktide.lifecycle.Parts.Image;
import stacktide.lifecycle.Parts.Launch;
import stacktide.lifecycle.Parts.Register;
import stacktide.lifecycle.Parts.Sample;

/**
 * The instance state as versions 2 and 3 of {@link Keep} wrote it, read so that a savepoint
 * taken by an earlier build resumes in this one (tests/jobs/test_jvm_state_versions.py).
 * Nothing writes these versions any more; this class only reads them.
 */
final class KeepEarlier {
    private KeepEarlier() {}

    static Keep read(Packed.In in) {
        Keep.Shared seen = new Keep.Shared();
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
            long at = in.readTime();
            long revision = in.readLong();
            k.audited.put(key, at, revision, in.readFixed());
        }
        k.rowRevision = in.readLong();
        k.rowDigest = in.readFixed();
        k.dirty = in.readBoolean();
        for (int n = in.readInt(); n > 0; n--) {
            k.timers.add(in.readTime());
        }
        k.watermark = in.readTime();
        k.heard = in.readTime();
        for (int n = in.readInt(); n > 0; n--) {
            k.periodic.add(in.readTime());
        }
        k.checked = in.readNullableTime();
        return k;
    }

    private static InstanceState readState(Packed.In in, Keep.Shared seen) {
        InstanceState s = new InstanceState(in.readText(), in.readText());
        for (int n = in.readInt(); n > 0; n--) {
            long at = in.readTime();
            long key = readKey(in);
            String state = in.readText();
            Flavor flavor = Keep.readFlavor(in, seen);
            Image image = Keep.readImage(in, seen);
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
            Flavor flavor = Keep.readFlavor(in, seen);
            s.launches.add(new Launch(launched, at, key, flavor, Keep.readImage(in, seen)));
        }
        s.horizon = in.readTime();
        return s;
    }

    /** Version 2 wrote a pending exists' message key and its id as text; version 3 its id as
     * 16 bytes and no key (its id's hash). */
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

    /** Version 2: eight fixed bytes; version 3: a variable-length number. */
    private static long readKey(Packed.In in) {
        return in.version < 3 ? in.readFixed() : in.readLong();
    }
}
