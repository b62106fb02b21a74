package stacktide.lifecycle;

import java.util.ArrayList;
import java.util.List;
import java.util.TreeMap;

import stacktide.lifecycle.Parts.Flavor;
import stacktide.lifecycle.Parts.Sample;

/**
 * Exact usage of one instance per period and flavor, in integer microseconds: the JVM's
 * {@code jobs.usage.existence}, {@code pieces} and {@code usage}, kept equal to them by the
 * differential tests. Existence runs from the first launched_at (not before the stream first
 * saw the instance) to deleted_at, except in states the rules say do not exist; running is
 * existence in a running state.
 */
public final class Usage {
    private Usage() {}

    /** One instance's usage in one period with one flavor. */
    public static final class Row {
        public final String tenantId;
        public final long periodStart;
        public final long periodEnd;
        public final String flavorId;
        public final Long vcpus;
        public final Long memoryMb;
        public final Long diskGb;
        public final long microseconds;
        public final long runningMicroseconds;
        public final Long launchedAt;
        public final Long deletedAt;

        Row(String tenantId, long periodStart, long periodEnd, String flavorId, Long vcpus, Long memoryMb, Long diskGb,
            long microseconds, long runningMicroseconds, Long launchedAt, Long deletedAt) {
            this.tenantId = tenantId;
            this.periodStart = periodStart;
            this.periodEnd = periodEnd;
            this.flavorId = flavorId;
            this.vcpus = vcpus;
            this.memoryMb = memoryMb;
            this.diskGb = diskGb;
            this.microseconds = microseconds;
            this.runningMicroseconds = runningMicroseconds;
            this.launchedAt = launchedAt;
            this.deletedAt = deletedAt;
        }

        /** Identity of the row's content, for the Book: a late event that changes nothing in
         * it emits nothing. */
        public long digest() {
            return new Book.Digest().add(String.valueOf(tenantId))
                    .add(Long.toString(periodStart)).add(Long.toString(periodEnd))
                    .add(String.valueOf(flavorId)).add(String.valueOf(vcpus))
                    .add(String.valueOf(memoryMb)).add(String.valueOf(diskGb))
                    .add(Long.toString(microseconds)).add(Long.toString(runningMicroseconds))
                    .add(String.valueOf(launchedAt)).add(String.valueOf(deletedAt)).value();
        }

        public Book.Key key() {
            return new Book.Key(periodStart, flavorId);
        }
    }

    /** A stretch of existence with one flavor and one running state. */
    static final class Piece {
        final long start;
        final long end;
        final Flavor flavor;
        final boolean running;
        final Long launched;

        Piece(long start, long end, Flavor flavor, boolean running, Long launched) {
            this.start = start;
            this.end = end;
            this.flavor = flavor;
            this.running = running;
            this.launched = launched;
        }
    }

    /** Start of the UTC period holding {@code at} (epoch-aligned). */
    public static long periodOf(long at, long period) {
        return at - Math.floorMod(at, period);
    }

    /** [first launched_at, deleted_at) clipped to when the stream first saw the instance;
     * null before any launch. */
    public static long[] existence(InstanceState s) {
        if (s.firstLaunched == null || s.observedFrom == null) {
            return null;
        }
        return new long[] {Math.max(s.firstLaunched, s.observedFrom),
                s.deletedAt == null ? InstanceState.END : s.deletedAt};
    }

    static List<Piece> pieces(InstanceState s, Rules rules, long lo, long hi) {
        List<Piece> out = new ArrayList<>();
        long[] window = existence(s);
        if (window == null) {
            return out;
        }
        lo = Math.max(lo, window[0]);
        hi = Math.min(hi, window[1]);
        String vm = s.latest(-InstanceState.END, InstanceState.END, x -> x.state);
        Flavor flavor = s.latest(-InstanceState.END, InstanceState.END, x -> x.flavor);
        Long launched = s.latest(-InstanceState.END, InstanceState.END, x -> x.launched);
        int n = s.samples.size();
        // The stretches ending by lo add nothing: start at the first sample after lo, with what
        // the samples before it set (a timer asks for the last period only, of a day's samples).
        int first = s.after(lo, InstanceState.END);
        vm = newest(s.samples, first, x -> x.state != null && !x.state.isEmpty() ? x.state : null, vm);
        flavor = newest(s.samples, first, x -> x.flavor, flavor);
        launched = newest(s.samples, first, x -> x.launched, launched);
        for (int i = first; i <= n; i++) {
            long start = i == 0 ? -InstanceState.END : s.samples.get(i - 1).at;
            long next = i == n ? InstanceState.END : s.samples.get(i).at;
            if (i > 0) {
                Sample x = s.samples.get(i - 1);
                vm = x.state != null && !x.state.isEmpty() ? x.state : vm;
                flavor = x.flavor != null ? x.flavor : flavor;
                launched = x.launched == null ? launched : x.launched;
            }
            long a = Math.max(start, lo);
            long b = Math.min(next, hi);
            Rules.Meaning meaning = rules.meaning(vm);
            if (a < b && meaning.exists) {
                out.add(new Piece(a, b, flavor, meaning.running, launched));
            }
            if (next >= hi) {
                break;
            }
        }
        return out;
    }

    /** The newest value {@code get} finds in the samples before {@code end}, else {@code none}. */
    private static <T> T newest(List<Sample> samples, int end, java.util.function.Function<Sample, T> get,
                                T none) {
        for (int k = end - 1; k >= 0; k--) {
            T value = get.apply(samples.get(k));
            if (value != null) {
                return value;
            }
        }
        return none;
    }

    /** The rows of the periods starting in [lo, hi), ordered by (period start, flavor id). */
    public static List<Row> usage(InstanceState s, Rules rules, long period, long lo, long hi) {
        TreeMap<Long, TreeMap<String, Row>> rows = new TreeMap<>();  // period start, flavor id
        String tenant = (String) s.register("tenant_id");
        long upper = Math.floorMod(hi, period) == 0 ? hi : periodOf(hi, period) + period;
        for (Piece p : pieces(s, rules, periodOf(lo, period), upper)) {
            long start = p.start;
            while (start < p.end) {
                long ps = periodOf(start, period);
                long end = Math.min(p.end, ps + period);
                Flavor f = p.flavor != null ? p.flavor : new Flavor("", null, null, null, null, null, null);
                TreeMap<String, Row> flavors = rows.computeIfAbsent(ps, x -> new TreeMap<>());
                String k = String.valueOf(f.flavorId);
                Row old = flavors.get(k);
                long secs = end - start + (old == null ? 0 : old.microseconds);
                long run = (p.running ? end - start : 0) + (old == null ? 0 : old.runningMicroseconds);
                Long disk = f.rootGb == null ? null
                        : Long.valueOf(f.rootGb + (f.ephemeralGb == null ? 0 : f.ephemeralGb));
                Long deleted = s.deletedAt != null && ps < s.deletedAt && s.deletedAt <= ps + period
                        ? s.deletedAt : null;
                flavors.put(k, new Row(tenant, ps, ps + period, f.flavorId, f.vcpus, f.memoryMb, disk, secs, run,
                        p.launched, deleted));
                start = end;
            }
        }
        List<Row> out = new ArrayList<>();
        rows.values().forEach(flavors -> out.addAll(flavors.values()));
        return out;
    }
}
