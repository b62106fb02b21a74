package stacktide.lifecycle;

import java.util.Arrays;

/**
 * The exists of one instance whose audit row was written: per message key, when it arrived,
 * the revision of its row and the digest of what the row said ({@code Keep.audited} in
 * Python, a dict). One flat array, not a map of boxed keys to arrays: a timer reads this an
 * hour of traffic after the last time, from memory no cache holds any more, and every object
 * followed on the way is another miss.
 */
public final class Audited {
    private static final int WIDTH = 4;  // key, at, revision, digest
    private long[] entries = new long[0];
    private int size;

    /** Whether to drop the entry of message key {@code key} that arrived {@code at}. */
    public interface Drop {
        boolean test(long key, long at);
    }

    public Audited copy() {
        Audited a = new Audited();
        a.entries = Arrays.copyOf(entries, size * WIDTH);
        a.size = size;
        return a;
    }

    public int size() {
        return size;
    }

    public boolean isEmpty() {
        return size == 0;
    }

    /** The place of message key {@code key}, or -1. */
    public int find(long key) {
        for (int i = 0, k = 0; i < size; i++, k += WIDTH) {
            if (entries[k] == key) {
                return i;
            }
        }
        return -1;
    }

    public long key(int i) {
        return entries[i * WIDTH];
    }

    public long at(int i) {
        return entries[i * WIDTH + 1];
    }

    public long revision(int i) {
        return entries[i * WIDTH + 2];
    }

    public long digest(int i) {
        return entries[i * WIDTH + 3];
    }

    /** Set the entry of message key {@code key}, added if it has none. */
    public void put(long key, long at, long revision, long digest) {
        int i = find(key);
        if (i < 0) {
            if (size * WIDTH == entries.length) {
                entries = Arrays.copyOf(entries, Math.max(WIDTH * 4, entries.length * 2));
            }
            i = size++;
        }
        int k = i * WIDTH;
        entries[k] = key;
        entries[k + 1] = at;
        entries[k + 2] = revision;
        entries[k + 3] = digest;
    }

    /** Drop the entries {@code drop} names, the others kept in their order. */
    public void removeIf(Drop drop) {
        int kept = 0;
        for (int i = 0; i < size; i++) {
            int k = i * WIDTH;
            if (!drop.test(entries[k], entries[k + 1])) {
                System.arraycopy(entries, k, entries, kept * WIDTH, WIDTH);
                kept++;
            }
        }
        size = kept;
    }
}
