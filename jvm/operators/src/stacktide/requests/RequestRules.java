package stacktide.requests;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.regex.Pattern;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;

/**
 * conf/requests.yaml as the JVM's request job reads it: the JSON of
 * {@code jobs.requests.rules_document}, checked on load in Python. Patterns are fnmatch's
 * ({@code *}, {@code ?}, {@code [set]}, {@code [!set]}), matched whole and case-sensitively as
 * {@code fnmatch.fnmatchcase} does.
 */
public final class RequestRules {
    public final long timeoutUs;
    public final int precedingMax;
    private final Set<String> errorPriorities = new HashSet<>();
    private final List<Pattern> errorEventTypes = new ArrayList<>();
    private final String[][] phases;  // {suffix, kind} in the order Python tries them
    private final List<Pattern> legacyPatterns = new ArrayList<>();
    private final List<String> legacyClasses = new ArrayList<>();

    public RequestRules(JsonNode doc) {
        timeoutUs = doc.get("timeout_us").asLong();
        precedingMax = doc.get("preceding_max").asInt();
        doc.get("error_priorities").forEach(p -> errorPriorities.add(p.asText()));
        doc.get("error_event_types").forEach(p -> errorEventTypes.add(fnmatch(p.asText())));
        List<String[]> all = new ArrayList<>();
        for (String kind : new String[] {"start", "end", "error"}) {
            doc.get(kind + "s").forEach(s -> all.add(new String[] {s.asText(), kind}));
        }
        phases = all.toArray(new String[0][]);
        doc.get("legacy_exceptions").forEach(pair -> {
            legacyPatterns.add(fnmatch(pair.get(0).asText()));
            legacyClasses.add(pair.get(1).asText());
        });
    }

    public boolean isError(String eventType, String priority) {
        if (errorPriorities.contains(priority.toLowerCase(Locale.ROOT))) {
            return true;
        }
        for (Pattern p : errorEventTypes) {
            if (p.matcher(eventType).matches()) {
                return true;
            }
        }
        return false;
    }

    /** {operation, start|end|error} of a paired event type, null for any other. */
    public String[] phase(String eventType) {
        for (String[] p : phases) {
            if (eventType.endsWith(p[0]) && eventType.length() > p[0].length()) {
                return new String[] {eventType.substring(0, eventType.length() - p[0].length()),
                    p[1]};
            }
        }
        return null;
    }

    /** The exception class the first legacy pattern matching {@code message} names, or null. */
    public String legacyException(String message) {
        for (int k = 0; k < legacyPatterns.size(); k++) {
            if (legacyPatterns.get(k).matcher(message).matches()) {
                return legacyClasses.get(k);
            }
        }
        return null;
    }

    /** An fnmatch pattern as a regular expression, as {@code fnmatch.translate} reads it. */
    static Pattern fnmatch(String pat) {
        StringBuilder re = new StringBuilder();
        int i = 0;
        int n = pat.length();
        while (i < n) {
            char c = pat.charAt(i++);
            if (c == '*') {
                re.append(".*");
            } else if (c == '?') {
                re.append('.');
            } else if (c == '[') {
                int j = i;
                if (j < n && pat.charAt(j) == '!') {
                    j++;
                }
                if (j < n && pat.charAt(j) == ']') {
                    j++;
                }
                while (j < n && pat.charAt(j) != ']') {
                    j++;
                }
                if (j >= n) {
                    re.append("\\[");
                    continue;
                }
                String stuff = pat.substring(i, j);
                i = j + 1;
                if (stuff.isEmpty()) {
                    re.append("(?!)");
                } else if (stuff.equals("!")) {
                    re.append('.');
                } else {
                    re.append('[');
                    int k = 0;
                    if (stuff.charAt(0) == '!') {
                        re.append('^');
                        k = 1;
                    }
                    for (; k < stuff.length(); k++) {
                        char s = stuff.charAt(k);
                        boolean range = s == '-' && k > 0 && k < stuff.length() - 1
                                && !(k == 1 && stuff.charAt(0) == '!');
                        re.append(range || Character.isLetterOrDigit(s) ? "" + s : "\\" + s);
                    }
                    re.append(']');
                }
            } else {
                re.append(Character.isLetterOrDigit(c) ? "" + c : "\\" + c);
            }
        }
        return Pattern.compile(re.toString(), Pattern.DOTALL);
    }
}
