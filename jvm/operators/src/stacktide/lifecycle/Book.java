package stacktide.lifecycle;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.SortedMap;
import java.util.TreeMap;
import java.util.TreeSet;

import stacktide.lifecycle.Parts.Flavor;
import stacktide.lifecycle.Parts.Image;
import stacktide.lifecycle.Parts.Sample;

/**
 * What was emitted of one instance's usage, and the steps that keep it exact: the JVM's
 * {@code jobs.usage.Book}, {@code step}, {@code advance}, {@code compact} and {@code next_due}.
 * A late event re-emits only the rows it changed ({@code revision} + 1; a row left without
 * usage once as zeros), so an upsert by (cell, instance, period, flavor) never counts twice.
 */
public final class Book {
    /** A usage row's identity: (period start, flavor id). */
    public static final class Key implements Comparable<Key> {
        public final long periodStart;
        public final String flavorId;

        public Key(long periodStart, String flavorId) {
            this.periodStart = periodStart;
            this.flavorId = flavorId;
        }

        @Override
        public int compareTo(Key o) {
            int c = Long.compare(periodStart, o.periodStart);
            return c != 0 ? c : flavorId.compareTo(o.flavorId);
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof Key && compareTo((Key) o) == 0;
        }

        @Override
        public int hashCode() {
            return Objects.hash(periodStart, flavorId);
        }
    }

    /** A row as emitted: its revision and its content's digest. */
    public static final class Emitted {
        public final long revision;
        public final long digest;

        public Emitted(long revision, long digest) {
            this.revision = revision;
            this.digest = digest;
        }
    }

    /** A usage row with the revision it is emitted with. */
    public static final class Revised {
        public final Usage.Row row;
        public final long revision;

        Revised(Usage.Row row, long revision) {
            this.row = row;
            this.revision = revision;
        }
    }

    public final TreeMap<Key, Emitted> rows = new TreeMap<>();
    public Long emittedUntil;  // every period ending at or before this was emitted
    public Long dirtyFrom;  // earliest instant a folded event may have changed

    /** A copy sharing no collection with this one (its keys and entries never change). */
    public Book copy() {
        Book b = new Book();
        b.rows.putAll(rows);
        b.emittedUntil = emittedUntil;
        b.dirtyFrom = dirtyFrom;
        return b;
    }

    /** A 64-bit digest of {@code text}, to tell whether an emitted row's content changed:
     * FNV-1a over its chars, then MurmurHash3's 64-bit finalizer. Stable across JVMs, and
     * cheap enough for every row an advance looks at (BLAKE2b of the UTF-8 bytes took 7 % of
     * the instance job's keyed thread). Not cryptographic: nothing here is adversarial, and a
     * collision would only leave one correction of one row unwritten, at odds of 2^-64. A
     * state saved by a version that digested otherwise re-emits a row it compares once,
     * unchanged, with its revision bumped. */
    public static long digest(String text) {
        return new Digest().add(text).value();
    }

    /** {@link #digest} of texts joined by NUL, fed one by one rather than joined first. */
    public static final class Digest {
        private long h = 0xcbf29ce484222325L;
        private boolean first = true;

        /** The next text (after a NUL, unless it is the first). */
        public Digest add(String text) {
            if (!first) {
                h *= 0x100000001b3L;  // h ^ '\0' is h
            }
            first = false;
            for (int k = 0; k < text.length(); k++) {
                h = (h ^ text.charAt(k)) * 0x100000001b3L;
            }
            return this;
        }

        public long value() {
            long x = (h ^ (h >>> 33)) * 0xff51afd7ed558ccdL;
            x = (x ^ (x >>> 33)) * 0xc4ceb53a85ec2e4fL;
            return x ^ (x >>> 33);
        }
    }

    /** Fold {@code obs} into {@code state} and remember from when usage may have changed;
     * false when it changed nothing. */
    public boolean step(InstanceState state, Observation obs) {
        if (!state.apply(obs)) {
            return false;
        }
        long dirty = dirtyFrom == null ? obs.at : Math.min(dirtyFrom, obs.at);
        for (String k : new String[] {"launched_at", "deleted_at"}) {
            Object v = obs.values.get(k);
            if (v instanceof Long) {
                dirty = Math.min(dirty, (Long) v);
            }
        }
        dirtyFrom = dirty;
        return true;
    }

    /** The rows of periods completed by {@code watermark} and those late events changed. */
    public List<Revised> advance(InstanceState state, Rules rules, long period, long watermark) {
        List<Revised> out = new ArrayList<>();
        long[] window = Usage.existence(state);
        if (window == null) {
            return out;
        }
        long upto = Usage.periodOf(watermark, period);
        if (window[1] < InstanceState.END) {
            upto = Math.min(upto, Usage.periodOf(window[1] - 1, period) + period);
        }
        long lo = emittedUntil == null ? Usage.periodOf(window[0], period) : emittedUntil;
        if (dirtyFrom != null) {
            lo = Math.min(lo, Usage.periodOf(dirtyFrom, period));
        }
        lo = Math.max(lo, state.horizon);
        List<Usage.Row> computed = lo < upto ? Usage.usage(state, rules, period, lo, upto) : List.of();
        SortedMap<Key, Emitted> emitted = rows.tailMap(new Key(lo, ""), true);
        if (emitted.isEmpty()) {  // the usual timer: periods not emitted yet, no row to compare
            for (Usage.Row row : computed) {
                rows.put(row.key(), new Emitted(0, row.digest()));
                out.add(new Revised(row, 0));
            }
        } else {
            revise(state, period, computed, emitted, out);
        }
        emittedUntil = emittedUntil == null ? upto : Math.max(emittedUntil, upto);
        dirtyFrom = null;
        return out;
    }

    /** The rows of {@code computed} and of {@code emitted} (those of the same periods already
     * written) whose content changed, with their revisions bumped; an emitted row no longer
     * computed comes back as zeros. */
    private void revise(InstanceState state, long period, List<Usage.Row> computed,
                        SortedMap<Key, Emitted> emitted, List<Revised> out) {
        Map<Key, Usage.Row> fresh = new TreeMap<>();
        for (Usage.Row r : computed) {
            fresh.put(r.key(), r);
        }
        TreeSet<Key> keys = new TreeSet<>(fresh.keySet());
        keys.addAll(emitted.keySet());
        String tenant = (String) state.register("tenant_id");
        for (Key k : keys) {
            Usage.Row row = fresh.get(k);
            if (row == null) {
                row = new Usage.Row(tenant, k.periodStart, k.periodStart + period, k.flavorId,
                        null, null, null, 0, 0, null, null);
            }
            Emitted old = rows.get(k);
            long digest = row.digest();
            if (old == null || old.digest != digest) {
                long revision = old == null ? 0 : old.revision + 1;
                rows.put(k, new Emitted(revision, digest));
                out.add(new Revised(row, revision));
            }
        }
    }

    /** Fold samples before the period-aligned {@code horizon} (never one not yet emitted)
     * into one base sample and forget earlier rows; events before it are then refused. */
    public void compact(InstanceState state, long period, long horizon) {
        if (emittedUntil != null) {
            horizon = Math.min(horizon, emittedUntil);
        }
        horizon = Usage.periodOf(horizon, period);
        if (horizon <= state.horizon) {
            return;
        }
        int cut = 0;
        while (cut < state.samples.size() && state.samples.get(cut).at < horizon) {
            cut++;
        }
        if (cut > 0) {
            List<Sample> old = state.samples.subList(0, cut);
            Sample base = new Sample(horizon, -1, newest(old, x -> x.state),
                    newest(old, x -> x.flavor), newest(old, x -> x.image),
                    newest(old, x -> x.launched));
            old.clear();
            state.samples.add(0, base);
        }
        rows.headMap(new Key(horizon, ""), false).clear();
        state.horizon = horizon;
    }

    private static <T> T newest(List<Sample> samples, java.util.function.Function<Sample, T> get) {
        for (int k = samples.size() - 1; k >= 0; k--) {
            T v = get.apply(samples.get(k));
            if (v != null) {
                return v;
            }
        }
        return null;
    }

    /** When the next period completes that {@link #advance} must emit; null if none will. */
    public Long nextDue(InstanceState state, long period) {
        long[] window = Usage.existence(state);
        if (window == null) {
            return null;
        }
        long start = emittedUntil == null ? Usage.periodOf(window[0], period) : emittedUntil;
        if (window[1] < InstanceState.END && start >= Usage.periodOf(window[1] - 1, period) + period) {
            return null;
        }
        return start + period;
    }

    static Flavor noFlavor() {
        return new Flavor("", null, null, null, null, null, null);
    }

    static Image noImage() {
        return new Image(null, null, null, null, null);
    }
}
