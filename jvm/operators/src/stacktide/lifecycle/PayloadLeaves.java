package stacktide.lifecycle;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;

/**
 * The leaves one kind of event reads from a payload of one format, found in one streaming
 * pass over the payload's JSON text: the values on the rules' paths are read, everything else
 * is skipped token by token. Building each payload's whole tree for the handful of values an
 * event sets took a sixth of the instance job's keyed thread.
 *
 * <p>It reads what {@code jobs.lifecycle.observe} reads from the parsed payload: a versioned
 * payload's paths start at its {@code nova_object.data} when it has one; of a leaf's paths the
 * first holding a non-empty value wins, a leaf whose paths hold only empties (null or "") is
 * null, one whose paths hold nothing is absent; a key repeated in an object counts by its last
 * occurrence, as in the parsed tree.
 */
final class PayloadLeaves {
    private static final JsonFactory JSON = new JsonFactory();
    private static final byte ABSENT = 0;
    private static final byte EMPTY = 1;
    private static final byte FOUND = 2;  // a value that is not a string
    private static final byte TEXT = 3;  // a non-empty string
    private static final String DATA = "nova_object.data";

    /** A step of the paths; the slots of the paths ending here, and of those below. */
    private static final class Node {
        final Map<String, Node> children = new HashMap<>();
        final List<int[]> ending = new ArrayList<>();  // (leaf, path) pairs
        int[] ends;  // their slots
        int lo;
        int hi;
    }

    private final String[] leaves;
    private final boolean[] times;
    private final int[][] slotsOf;  // per leaf, the slots of its paths, in the rules' order
    private final Node top;
    private final boolean versioned;
    private final int slots;

    /** {@code paths}: where each leaf sits in this format ({@link Rules#paths}); {@code wanted}:
     * the leaves to read, {@code times} among them read as µs. */
    PayloadLeaves(Map<String, String[][]> paths, Set<String> wanted, Set<String> times,
                  boolean versioned) {
        this.leaves = wanted.toArray(new String[0]);
        this.times = new boolean[leaves.length];
        this.slotsOf = new int[leaves.length][];
        this.top = new Node();
        this.versioned = versioned;
        for (int i = 0; i < leaves.length; i++) {
            this.times[i] = times.contains(leaves[i]);
            String[][] ways = paths.getOrDefault(leaves[i], new String[0][]);
            slotsOf[i] = new int[ways.length];
            for (int w = 0; w < ways.length; w++) {
                Node node = top;
                for (String step : ways[w]) {
                    node = node.children.computeIfAbsent(step, s -> new Node());
                }
                node.ending.add(new int[] {i, w});
            }
        }
        this.slots = number(top, 0);
    }

    /** Slots in depth-first order, so that a subtree's are one range. */
    private int number(Node node, int next) {
        node.lo = next;
        node.ends = new int[node.ending.size()];
        for (int k = 0; k < node.ends.length; k++) {
            int[] end = node.ending.get(k);
            node.ends[k] = next;
            slotsOf[end[0]][end[1]] = next++;
        }
        for (Node child : node.children.values()) {
            next = number(child, next);
        }
        node.hi = next;
        return next;
    }

    /** Leaf -> a String, a Long (the times, in µs), or null (present but empty); null when the
     * payload is not a JSON object. */
    Map<String, Object> read(String payload) throws IOException {
        try (JsonParser p = JSON.createParser(payload)) {
            if (p.nextToken() != JsonToken.START_OBJECT) {
                return null;
            }
            Found root = new Found(slots);
            Found data = null;
            while (p.nextToken() == JsonToken.FIELD_NAME) {
                String name = p.currentName();
                JsonToken t = p.nextToken();
                if (versioned && DATA.equals(name)) {
                    data = new Found(slots);  // the last one counts; a non-object holds nothing
                    if (t == JsonToken.START_OBJECT) {
                        walk(p, top, data);
                    } else {
                        p.skipChildren();
                    }
                } else {
                    step(p, t, top.children.get(name), root);
                }
            }
            return values(data != null ? data : root);
        }
    }

    /** The values of one object: its fields on the paths read, the others skipped. */
    private void walk(JsonParser p, Node node, Found found) throws IOException {
        while (p.nextToken() == JsonToken.FIELD_NAME) {
            Node child = node.children.get(p.currentName());
            step(p, p.nextToken(), child, found);
        }
    }

    private void step(JsonParser p, JsonToken t, Node node, Found found) throws IOException {
        if (node == null) {
            p.skipChildren();
            return;
        }
        found.clear(node.lo, node.hi);  // a repeated key replaces what the earlier one held
        for (int slot : node.ends) {
            found.set(slot, p, t);
        }
        if (t == JsonToken.START_OBJECT && !node.children.isEmpty()) {
            walk(p, node, found);
        } else {
            p.skipChildren();
        }
    }

    private Map<String, Object> values(Found found) {
        Map<String, Object> values = new HashMap<>();
        for (int i = 0; i < leaves.length; i++) {
            boolean empty = false;
            for (int slot : slotsOf[i]) {
                byte kind = found.kind[slot];
                if (kind >= FOUND) {
                    Object v = found.value[slot];
                    values.put(leaves[i], !times[i] ? v
                            : kind == TEXT ? NovaTime.micros((String) v) : null);
                    empty = false;
                    break;
                }
                empty |= found.kind[slot] == EMPTY;
            }
            if (empty) {
                values.put(leaves[i], null);
            }
        }
        return values;
    }

    /** What each path's slot holds: absent, empty, a string, or another value as text
     * (integers in decimal, booleans as Python writes them, else null). */
    private static final class Found {
        final byte[] kind;
        final Object[] value;

        Found(int slots) {
            kind = new byte[slots];
            value = new Object[slots];
        }

        void clear(int lo, int hi) {
            Arrays.fill(kind, lo, hi, ABSENT);
            Arrays.fill(value, lo, hi, null);
        }

        void set(int slot, JsonParser p, JsonToken t) throws IOException {
            switch (t) {
                case VALUE_NULL:
                    kind[slot] = EMPTY;
                    return;
                case VALUE_STRING:
                    String s = p.getText();
                    kind[slot] = s.isEmpty() ? EMPTY : TEXT;
                    value[slot] = s.isEmpty() ? null : s;
                    return;
                case VALUE_NUMBER_INT:  // JSON's integer text is its decimal form, but for -0
                    kind[slot] = FOUND;
                    String digits = p.getText();
                    value[slot] = "-0".equals(digits) ? "0" : digits;
                    return;
                case VALUE_TRUE:
                case VALUE_FALSE:
                    kind[slot] = FOUND;
                    value[slot] = t == JsonToken.VALUE_TRUE ? "True" : "False";
                    return;
                default:  // a float, an object, an array: present, and no text
                    kind[slot] = FOUND;
                    value[slot] = null;
            }
        }
    }
}
