package stacktide.lifecycle;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.Set;

import stacktide.lifecycle.Parts.Flavor;
import stacktide.lifecycle.Parts.Image;
import stacktide.lifecycle.Parts.Launch;
import stacktide.text.PyJson;

/**
 * StackTach's verifier, stream-native: the JVM's {@code jobs.audit} ({@code verify},
 * {@code periodic}, {@code missing_exists}). An exists is checked against the launch it names,
 * that launch's flavor and image, the tenant, the deletion and its audit period, once the
 * settle time passed; see the Python module for the rules, which these follow.
 */
public final class Audit {
    static final long SECOND = 1_000_000L;

    private Audit() {}

    /** A field whose exists value ({@code actual}) differs from what the stream saw. */
    public static final class Mismatch {
        public final String field;
        public final String expected;
        public final String actual;

        Mismatch(String field, String expected, String actual) {
            this.field = field;
            this.expected = expected;
            this.actual = actual;
        }
    }

    /** One exists' verdict: verified, failed (with its mismatches) or pending. */
    public static final class Result {
        public final String messageId;
        public final String cell;
        public final String instanceId;
        public final Long begin;
        public final Long end;
        public final String status;
        public final List<Mismatch> mismatches;

        Result(String messageId, String cell, String instanceId, Long begin, Long end, String status,
               List<Mismatch> mismatches) {
            this.messageId = messageId;
            this.cell = cell;
            this.instanceId = instanceId;
            this.begin = begin;
            this.end = end;
            this.status = status;
            this.mismatches = mismatches;
        }

        /** The mismatches as the {@code usage_audit.mismatches} column holds them: the text
         * Python's {@code json.dumps} writes of [{"field", "expected", "actual"}, ...]. */
        public String mismatchesJson() {
            StringBuilder b = new StringBuilder("[");
            for (int k = 0; k < mismatches.size(); k++) {
                Mismatch m = mismatches.get(k);
                b.append(k == 0 ? "" : ", ").append("{\"field\": ").append(json(m.field))
                        .append(", \"expected\": ").append(json(m.expected))
                        .append(", \"actual\": ").append(json(m.actual)).append('}');
            }
            return b.append(']').toString();
        }

        public long digest() {
            return Book.digest(status + "\u0000" + mismatchesJson());
        }
    }

    private static Long second(Long us) {
        return us == null ? null : Math.floorDiv(us, SECOND);
    }

    /** When an exists is verified: a settle time after its audit period's end (its own time
     * if it names none), and never before its own time. */
    public static long dueAt(Observation exists, long settle) {
        return Math.max(exists.at, exists.auditEnd) + settle;
    }

    /** Verify one exists against {@code state} (null: the stream never saw the instance). */
    public static Result verify(InstanceState state, Observation exists, long now, long settle,
                                long period) {
        Long begin = (Long) exists.values.get("audit_period_beginning");
        Long end = (Long) exists.values.get("audit_period_ending");
        long endOrAt = exists.auditEnd;
        if (now < dueAt(exists, settle)) {
            return new Result(exists.messageId, exists.cell, exists.instanceId, begin, end,
                    "pending", List.of());
        }
        InstanceState s = state != null ? state : new InstanceState(exists.cell, exists.instanceId);
        List<Mismatch> found = new ArrayList<>();
        Set<String> claimed = exists.values.keySet();
        Long launched = (Long) exists.values.get("launched_at");
        List<Launch> same = new ArrayList<>();
        for (Launch x : s.launches) {
            if (launched != null && Objects.equals(second(x.launched), second(launched))) {
                same.add(x);
            }
        }
        if (same.isEmpty()) {
            Long seen = s.samples.isEmpty() ? null : s.latest(exists.at, InstanceState.END, x -> x.launched);
            found.add(new Mismatch("launched_at", NovaTime.format(seen), NovaTime.format(launched)));
        }
        Flavor fallbackFlavor = s.latest(exists.at, InstanceState.END, x -> x.flavor);
        Image fallbackImage = s.latest(exists.at, InstanceState.END, x -> x.image);
        Flavor flavor = InstanceState.flavor(exists.values);
        Image image = InstanceState.image(exists.values);
        check(found, claimed, "instance_type_id",
                ref(same, fallbackFlavor, x -> x.flavor == null ? null : x.flavor.instanceTypeId,
                        f -> f.instanceTypeId), flavor == null ? null : flavor.instanceTypeId);
        check(found, claimed, "flavor_id",
                ref(same, fallbackFlavor, x -> x.flavor == null ? null : x.flavor.flavorId,
                        f -> f.flavorId), flavor == null ? null : flavor.flavorId);
        check(found, claimed, "os_architecture",
                ref(same, fallbackImage, x -> x.image == null ? null : x.image.osArchitecture,
                        i -> i.osArchitecture), image == null ? null : image.osArchitecture);
        check(found, claimed, "os_distro",
                ref(same, fallbackImage, x -> x.image == null ? null : x.image.osDistro,
                        i -> i.osDistro), image == null ? null : image.osDistro);
        check(found, claimed, "os_version",
                ref(same, fallbackImage, x -> x.image == null ? null : x.image.osVersion,
                        i -> i.osVersion), image == null ? null : image.osVersion);
        check(found, claimed, "tenant_id", (String) s.register("tenant_id"),
                (String) exists.values.get("tenant_id"));
        Long deleted = (Long) exists.values.get("deleted_at");
        if (deleted != null && !Objects.equals(second(deleted), second(s.deletedAt))) {
            found.add(new Mismatch("deleted_at", NovaTime.format(s.deletedAt), NovaTime.format(deleted)));
        } else if (deleted == null && s.deletedAt != null && s.deletedAt <= endOrAt) {
            found.add(new Mismatch("deleted_at", NovaTime.format(s.deletedAt), null));
        }
        boolean hasBegin = begin != null && begin != 0;
        if (begin == null || end == null || begin >= end) {
            found.add(new Mismatch(hasBegin ? "audit_period_ending" : "audit_period_beginning",
                    "an audit period", NovaTime.format(hasBegin ? end : begin)));
        } else {
            long start = Usage.periodOf(end - 1, period);
            if (begin != start) {
                found.add(new Mismatch("audit_period_beginning", NovaTime.format(start), NovaTime.format(begin)));
            }
            if (end > exists.at + SECOND) {
                found.add(new Mismatch("audit_period_ending", "<= " + NovaTime.format(exists.at), NovaTime.format(end)));
            }
        }
        return new Result(exists.messageId, exists.cell, exists.instanceId, begin, end,
                found.isEmpty() ? "verified" : "failed", found);
    }

    private static <T> String ref(List<Launch> same, T fallback,
                                  java.util.function.Function<Launch, String> fromLaunch,
                                  java.util.function.Function<T, String> fromFallback) {
        for (Launch x : same) {
            String v = fromLaunch.apply(x);
            if (v != null) {
                return v;
            }
        }
        return same.isEmpty() && fallback != null ? fromFallback.apply(fallback) : null;
    }

    private static void check(List<Mismatch> found, Set<String> claimed, String name,
                              String expected, String actual) {
        if (expected != null && claimed.contains(name) && !expected.equals(actual)) {
            found.add(new Mismatch(name, expected, actual));
        }
    }

    /** The period start if {@code exists} is nova's periodic audit of a whole period. */
    public static Long periodic(Observation exists, long period) {
        Object begin = exists.values.get("audit_period_beginning");
        Object end = exists.values.get("audit_period_ending");
        if (begin instanceof Long && end instanceof Long && (Long) end == (Long) begin + period
                && Math.floorMod((Long) begin, period) == 0) {
            return (Long) begin;
        }
        return null;
    }

    /** Whether nova's audit of the period should send an exists for the instance. */
    static boolean expected(InstanceState s, Rules rules, long periodStart, long period) {
        long end = periodStart + period;
        long last = Math.min(end, s.deletedAt == null ? InstanceState.END : s.deletedAt) - 1;
        Long launched = s.latest(last, InstanceState.END, x -> x.launched);
        if (launched == null || launched >= end
                || Usage.usage(s, rules, period, periodStart, end).isEmpty()) {
            return false;
        }
        return rules.meaning(s.latest(last, InstanceState.END, x -> x.state)).audited;
    }

    /** Period starts in [start, stop) that expected a periodic exists and got none. */
    public static List<Long> missing(InstanceState s, Rules rules, Set<Long> seen, long start,
                                     long stop, long period) {
        List<Long> out = new ArrayList<>();
        stop = Math.min(stop, InstanceState.END);
        for (long ps = Usage.periodOf(start, period); ps < stop; ps += period) {
            if (ps + period <= stop && !seen.contains(ps) && expected(s, rules, ps, period)) {
                out.add(ps);
            }
        }
        return out;
    }

    /** Python's {@code json.dumps} of a str or None. */
    static String json(String s) {
        if (s == null) {
            return "null";
        }
        StringBuilder b = new StringBuilder();
        PyJson.string(b, s);
        return b.toString();
    }
}
