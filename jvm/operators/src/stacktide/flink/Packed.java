package stacktide.flink;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * A compact byte form for keyed state: every string written once in a table at the front and
 * referred to by number (an instance's state repeats its cell, flavor, image and field names
 * in every sample), numbers as variable-length integers, times as the difference from the time
 * written before (a key's times lie close together). What a checkpoint stores per key, and
 * what the 2 KB per live instance budget counts.
 *
 * Layout: version byte, string count, each string (length, UTF-8), then the body.
 */
public final class Packed {
    private static final long SECOND = 1_000_000L;  // µs
    private static final long WIDE = 1L << 61;  // |d| below this: zz(d) << 1 fits 64 bits

    private Packed() {}

    /** Writes a body; {@link #finish} puts the version and the string table in front. */
    public static final class Out {
        private final ByteArrayOutputStream body = new ByteArrayOutputStream(256);
        private final Map<String, Integer> strings = new HashMap<>();
        private final List<String> table = new ArrayList<>();
        private long lastTime;

        public void writeLong(long v) {
            varint(body, zigzag(v));
        }

        public void writeInt(int v) {
            writeLong(v);
        }

        public void writeBoolean(boolean v) {
            body.write(v ? 1 : 0);
        }

        public void writeByte(int v) {
            body.write(v);
        }

        /** Eight bytes as they are: hashes and digests, which no varint shortens. */
        public void writeFixed(long v) {
            for (int shift = 56; shift >= 0; shift -= 8) {
                body.write((int) (v >>> shift));
            }
        }

        /** A time, as its difference from the last time written. */
        public void writeTime(long t) {
            writeLong(t - lastTime);
            lastTime = t;
        }

        public void writeTime(Long t) {
            writeBoolean(t != null);
            if (t != null) {
                writeTime(t.longValue());
            }
        }

        /** A time, as its difference from the last time written, in whole seconds when it is
         * one (a period's bounds, nova's audit periods, round timers): {@code zz(d / 1 s) << 1 | 1},
         * else {@code zz(d) << 1}; 0 escapes a difference too wide for that (from or to
         * {@code ±InstanceState.END}), which follows in full. Shares {@link #writeTime}'s last. */
        public void writeInstant(long t) {
            long d = t - lastTime;
            lastTime = t;
            if (d % SECOND == 0) {
                varint(body, (zigzag(d / SECOND) << 1) | 1);
            } else if (d > -WIDE && d < WIDE) {
                varint(body, zigzag(d) << 1);
            } else {
                body.write(0);
                writeLong(d);
            }
        }

        public void writeInstant(Long t) {
            writeBoolean(t != null);
            if (t != null) {
                writeInstant(t.longValue());
            }
        }

        public void writeNullable(Long v) {
            writeBoolean(v != null);
            if (v != null) {
                writeLong(v);
            }
        }

        /** A string or null: 0 for null, else its place in the table + 1. */
        public void writeText(String s) {
            if (s == null) {
                varint(body, 0);
                return;
            }
            Integer at = strings.get(s);
            if (at == null) {
                at = table.size();
                strings.put(s, at);
                table.add(s);
            }
            varint(body, at + 1L);
        }

        /** An identifier: a UUID in its usual form (36 lowercase characters, as nova's
         * message ids) as its 16 bytes, anything else (null included) as text. */
        public void writeId(String s) {
            long[] uuid = uuid(s);
            if (uuid == null) {
                body.write(0);
                writeText(s);
            } else {
                body.write(1);
                writeFixed(uuid[0]);
                writeFixed(uuid[1]);
            }
        }

        public byte[] finish(int version) {
            ByteArrayOutputStream all = new ByteArrayOutputStream(body.size() + 16 * table.size());
            all.write(version);
            varint(all, table.size());
            for (String s : table) {
                byte[] b = s.getBytes(StandardCharsets.UTF_8);
                varint(all, b.length);
                all.write(b, 0, b.length);
            }
            byte[] b = body.toByteArray();
            all.write(b, 0, b.length);
            return all.toByteArray();
        }

        private static void varint(ByteArrayOutputStream out, long v) {
            while ((v & ~0x7FL) != 0) {
                out.write((int) ((v & 0x7F) | 0x80));
                v >>>= 7;
            }
            out.write((int) v);
        }

        private static void varint(ByteArrayOutputStream out, int v) {
            varint(out, (long) v);
        }
    }

    /** Reads what an {@link Out} wrote, in the same order. */
    public static final class In {
        private final byte[] data;
        private int pos;
        private final String[] table;
        private long lastTime;
        public final int version;

        public In(byte[] data) {
            this.data = data;
            version = data[pos++] & 0xff;
            table = new String[(int) varint()];
            for (int k = 0; k < table.length; k++) {
                int n = (int) varint();
                table[k] = new String(data, pos, n, StandardCharsets.UTF_8);
                pos += n;
            }
        }

        public long readLong() {
            return unzigzag(varint());
        }

        public int readInt() {
            return (int) readLong();
        }

        public boolean readBoolean() {
            return data[pos++] != 0;
        }

        public int readByte() {
            return data[pos++];
        }

        public long readFixed() {
            long v = 0;
            for (int k = 0; k < 8; k++) {
                v = (v << 8) | (data[pos++] & 0xffL);
            }
            return v;
        }

        public long readTime() {
            lastTime += readLong();
            return lastTime;
        }

        public long readInstant() {
            long u = varint();
            long d = (u & 1) != 0 ? unzigzag(u >>> 1) * SECOND : u == 0 ? readLong() : unzigzag(u >>> 1);
            lastTime += d;
            return lastTime;
        }

        public Long readNullableInstant() {
            return readBoolean() ? readInstant() : null;
        }

        public Long readNullableTime() {
            return readBoolean() ? readTime() : null;
        }

        public Long readNullable() {
            return readBoolean() ? readLong() : null;
        }

        public String readId() {
            if (data[pos++] == 0) {
                return readText();
            }
            long hi = readFixed();
            return new java.util.UUID(hi, readFixed()).toString();
        }

        public String readText() {
            int at = (int) varint();
            return at == 0 ? null : table[at - 1];
        }

        private long varint() {
            long v = 0;
            for (int shift = 0; ; shift += 7) {
                byte b = data[pos++];
                v |= (long) (b & 0x7F) << shift;
                if (b >= 0) {
                    return v;
                }
            }
        }
    }

    private static long zigzag(long v) {
        return (v << 1) ^ (v >> 63);
    }

    private static long unzigzag(long v) {
        return (v >>> 1) ^ -(v & 1);
    }

    /** The two halves of {@code s} when it is a UUID that {@link java.util.UUID#toString}
     * writes back exactly, else null. */
    static long[] uuid(String s) {
        if (s == null || s.length() != 36) {
            return null;
        }
        long[] v = new long[2];
        int n = 0;
        for (int i = 0; i < 36; i++) {
            char c = s.charAt(i);
            if (i == 8 || i == 13 || i == 18 || i == 23) {
                if (c != '-') {
                    return null;
                }
                continue;
            }
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (d < 0) {
                return null;
            }
            v[n / 16] = (v[n / 16] << 4) | d;
            n++;
        }
        return v;
    }
}
