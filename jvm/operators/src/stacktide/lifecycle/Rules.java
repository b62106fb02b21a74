package stacktide.lifecycle;

import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.regex.Pattern;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;

/**
 * conf/lifecycle.yaml as the JVM reads it: the document {@code jobs.lifecycle.rules_document}
 * writes from the rules Python loaded and checked, so the file has one reader and one set of
 * checks, and both sides run the same rules.
 */
public final class Rules {
    /** What a vm_state means for usage. */
    public static final class Meaning {
        public final String powerState;
        public final boolean running;
        public final boolean exists;
        public final boolean audited;

        Meaning(String powerState, boolean running, boolean exists, boolean audited) {
            this.powerState = powerState;
            this.running = running;
            this.exists = exists;
            this.audited = audited;
        }
    }

    /** What an event type sets (leaves), or that it is an audit. */
    public static final class Effect {
        public final Set<String> sets;
        public final boolean audit;

        Effect(Set<String> sets, boolean audit) {
            this.sets = sets;
            this.audit = audit;
        }
    }

    private static final Meaning UNKNOWN = new Meaning("nostate", false, true, true);

    private final Map<String, Meaning> states = new HashMap<>();
    private final Map<String, Effect> exact = new HashMap<>();
    private final List<Map.Entry<Pattern, Effect>> patterns = new ArrayList<>();
    private final Map<String, Map<String, String[][]>> paths = new HashMap<>();
    private final Map<String, Map<Effect, PayloadLeaves>> readers = new ConcurrentHashMap<>();

    public Rules(JsonNode doc) {
        for (Iterator<Map.Entry<String, JsonNode>> it = doc.get("states").fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            JsonNode m = e.getValue();
            states.put(e.getKey(), new Meaning(m.get(0).asText(), m.get(1).asBoolean(),
                    m.get(2).asBoolean(), m.get(3).asBoolean()));
        }
        for (JsonNode event : doc.get("events")) {
            Set<String> sets = new HashSet<>();
            event.get(1).forEach(leaf -> sets.add(leaf.asText()));
            Effect effect = new Effect(Collections.unmodifiableSet(sets), event.get(2).asBoolean());
            String name = event.get(0).asText();
            exact.putIfAbsent(name, effect);
            if (name.contains("*")) {
                patterns.add(Map.entry(glob(name), effect));
            }
        }
        for (Iterator<Map.Entry<String, JsonNode>> it = doc.get("paths").fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> format = it.next();
            Map<String, String[][]> leaves = new LinkedHashMap<>();
            for (Iterator<Map.Entry<String, JsonNode>> l = format.getValue().fields(); l.hasNext(); ) {
                Map.Entry<String, JsonNode> leaf = l.next();
                String[][] ways = new String[leaf.getValue().size()][];
                for (int k = 0; k < ways.length; k++) {
                    JsonNode path = leaf.getValue().get(k);
                    ways[k] = new String[path.size()];
                    for (int j = 0; j < path.size(); j++) {
                        ways[k][j] = path.get(j).asText();
                    }
                }
                leaves.put(leaf.getKey(), ways);
            }
            paths.put(format.getKey(), leaves);
        }
    }

    /** The effect of {@code eventType}: its exact entry, else the first pattern matching. */
    public Effect effect(String eventType) {
        Effect found = exact.get(eventType);
        if (found != null) {
            return found;
        }
        for (Map.Entry<Pattern, Effect> p : patterns) {
            if (p.getKey().matcher(eventType).matches()) {
                return p.getValue();
            }
        }
        return null;
    }

    public Meaning meaning(String state) {
        Meaning m = states.get(state == null ? "" : state);
        return m == null ? UNKNOWN : m;
    }

    /** Where each leaf sits in a payload of {@code format} (none: an empty map). */
    public Map<String, String[][]> paths(String format) {
        Map<String, String[][]> p = paths.get(format);
        return p == null ? Map.of() : p;
    }

    /** The reader of the leaves an event of {@code effect} takes from a payload of
     * {@code format}, built once. */
    PayloadLeaves reader(String format, Effect effect) {
        return readers.computeIfAbsent(format == null ? "" : format, f -> new ConcurrentHashMap<>())
                .computeIfAbsent(effect, e -> new PayloadLeaves(paths(format), Observation.leaves(e),
                        Observation.TIMES, "versioned".equals(format)));
    }

    /** Python's {@code fnmatch.fnmatchcase} pattern as a regex: *, ? and [...] sets. */
    static Pattern glob(String pattern) {
        StringBuilder re = new StringBuilder();
        for (int k = 0; k < pattern.length(); k++) {
            char c = pattern.charAt(k);
            int close = c == '[' ? pattern.indexOf(']', k + 2) : -1;
            if (c == '*') {
                re.append(".*");
            } else if (c == '?') {
                re.append('.');
            } else if (close > 0) {
                String set = pattern.substring(k + 1, close);
                re.append('[').append(set.startsWith("!") ? "^" + quoteSet(set.substring(1)) : quoteSet(set))
                        .append(']');
                k = close;
            } else {
                re.append(Pattern.quote(String.valueOf(c)));
            }
        }
        return Pattern.compile(re.toString(), Pattern.DOTALL);
    }

    private static String quoteSet(String set) {
        return set.replace("\\", "\\\\").replace("[", "\\[").replace("&", "\\&").replace("^", "\\^");
    }
}
