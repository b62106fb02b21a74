package stacktide.lifecycle;

import java.time.DateTimeException;
import java.time.Instant;
import java.time.LocalDate;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;

/**
 * Nova's times as microseconds since the epoch, UTC: what {@code stacktide.schema.time_us}
 * reads (Python's {@code datetime.fromisoformat} after "Z" becomes "+00:00"; no zone means UTC,
 * as nova's {@code str(datetime)} means it). Extended and basic ISO-8601 dates and times, any
 * single separator character, a fraction of any length (cut to microseconds, not rounded), and
 * offsets to the microsecond. Anything else is no time ({@code null}), as it is to the jobs.
 */
public final class NovaTime {
    private static final DateTimeFormatter FORMAT =
            DateTimeFormatter.ofPattern("uuuu-MM-dd'T'HH:mm:ss.SSSSSS'Z'").withZone(ZoneOffset.UTC);

    private final String s;
    private int i;

    private NovaTime(String s) {
        this.s = s;
    }

    /** {@code stacktide.schema.format_time}: ISO-8601 UTC with microseconds and Z, the one
     * timestamp form the jobs write as text; null stays null. */
    public static String format(Long us) {
        if (us == null) {
            return null;
        }
        return FORMAT.format(Instant.ofEpochSecond(Math.floorDiv(us, 1_000_000L),
                Math.floorMod(us, 1_000_000L) * 1000));
    }

    /** The time of {@code text} in µs since the epoch, or null when it is not one. */
    public static Long micros(String text) {
        if (text == null) {
            return null;
        }
        try {
            return new NovaTime(text.replace("Z", "+00:00")).parse();
        } catch (IllegalArgumentException | DateTimeException | ArithmeticException e) {
            return null;
        }
    }

    private Long parse() {
        boolean extended = s.length() >= 10 && s.charAt(4) == '-';
        int year = digits(4);
        int month;
        int day;
        if (extended) {
            expect('-');
            month = digits(2);
            expect('-');
            day = digits(2);
        } else {
            month = digits(2);
            day = digits(2);
        }
        long days = LocalDate.of(year, month, day).toEpochDay();
        long us = 0;
        if (i < s.length()) {
            i++;  // the separator: any one character
            us = time();
        }
        if (i != s.length()) {
            throw new IllegalArgumentException("trailing text");
        }
        return Math.addExact(Math.multiplyExact(days, 86_400_000_000L), us);
    }

    /** A time of day with its optional offset, as µs since midnight UTC. */
    private long time() {
        long[] clock = clock();
        long local = clock[0];
        if (i == s.length()) {
            return local;
        }
        char sign = s.charAt(i);
        if (sign != '+' && sign != '-') {
            throw new IllegalArgumentException("no offset");
        }
        i++;
        long offset = clock()[0];
        if (offset >= 86_400_000_000L) {
            throw new IllegalArgumentException("offset of a day or more");
        }
        return sign == '+' ? local - offset : local + offset;
    }

    /** HH[:MM[:SS[.f]]] or HH[MM[SS[.f]]], as {µs}; a fraction only with seconds. */
    private long[] clock() {
        int hour = digits(2);
        int minute = 0;
        int second = 0;
        long micros = 0;
        boolean colons = i < s.length() && s.charAt(i) == ':';
        if (more()) {
            if (colons) {
                expect(':');
            }
            minute = digits(2);
            if (more()) {
                if (colons) {
                    expect(':');
                }
                second = digits(2);
                if (i < s.length() && (s.charAt(i) == '.' || s.charAt(i) == ',')) {
                    i++;
                    int start = i;
                    while (i < s.length() && Character.isDigit(s.charAt(i))) {
                        i++;
                    }
                    if (i == start) {
                        throw new IllegalArgumentException("empty fraction");
                    }
                    String f = (s.substring(start, Math.min(i, start + 6)) + "00000").substring(0, 6);
                    micros = Long.parseLong(f);
                }
            }
        }
        if (hour > 23 || minute > 59 || second > 59) {
            throw new IllegalArgumentException("out of range");
        }
        return new long[] {((hour * 60L + minute) * 60 + second) * 1_000_000 + micros};
    }

    private boolean more() {
        return i < s.length() && (s.charAt(i) == ':' || Character.isDigit(s.charAt(i)));
    }

    private int digits(int n) {
        if (i + n > s.length()) {
            throw new IllegalArgumentException("short");
        }
        int v = 0;
        for (int k = 0; k < n; k++) {
            char c = s.charAt(i++);
            if (c < '0' || c > '9') {
                throw new IllegalArgumentException("not a digit");
            }
            v = v * 10 + (c - '0');
        }
        return v;
    }

    private void expect(char c) {
        if (i >= s.length() || s.charAt(i) != c) {
            throw new IllegalArgumentException("expected " + c);
        }
        i++;
    }
}
