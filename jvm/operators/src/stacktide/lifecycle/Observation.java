package stacktide.lifecycle;

import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;

/**
 * What one notification says about one instance ({@code jobs.lifecycle.Observation}): the
 * leaves its event type sets, read from the payload where the rules say they sit. A leaf
 * present but empty maps to null; one absent is not in {@link #values}.
 */
public final class Observation {
    public static final List<String> FLAVOR_LEAVES = List.of("flavor_id", "flavor_name", "vcpus",
            "memory_mb", "root_gb", "ephemeral_gb", "instance_type_id");
    public static final List<String> IMAGE_LEAVES = List.of("image_ref", "os_type",
            "os_architecture", "os_distro", "os_version");
    public static final Set<String> TIMES = Set.of("launched_at", "deleted_at",
            "audit_period_beginning", "audit_period_ending");
    public static final Set<String> AUDIT_LEAVES;
    private static final Set<String> OLD = Set.of("old_state", "old_task_state");

    static {
        Set<String> audit = new HashSet<>(TIMES);
        audit.addAll(FLAVOR_LEAVES);
        audit.addAll(IMAGE_LEAVES);
        audit.add("tenant_id");
        AUDIT_LEAVES = Set.copyOf(audit);
    }

    public final String cell;
    public final String instanceId;
    public final String messageId;
    public final String eventType;
    public final long at;
    public final long key;
    public final Rules.Effect effect;
    /** Leaf -> a String, a Long (the times, in µs), or null (present but empty). */
    public final Map<String, Object> values;
    public final String requestId;

    Observation(String cell, String instanceId, String messageId, String eventType, long at,
                long key, Rules.Effect effect, Map<String, Object> values, String requestId) {
        this.cell = cell;
        this.instanceId = instanceId;
        this.messageId = messageId;
        this.eventType = eventType;
        this.at = at;
        this.key = key;
        this.effect = effect;
        this.values = values;
        this.requestId = requestId;
    }

    /** The observation of one envelope; null when it is about no instance or matches no rule. */
    public static Observation observe(Rules rules, String cell, String instanceId, String messageId,
                                      String eventType, String generated, String format,
                                      String requestId, JsonNode payload) {
        Rules.Effect effect = rules.effect(eventType);
        if (effect == null || instanceId == null || instanceId.isEmpty() || payload == null
                || !payload.isObject()) {
            return null;
        }
        JsonNode root = payload;
        if ("versioned".equals(format) && payload.has("nova_object.data")) {
            root = payload.get("nova_object.data");
        }
        Map<String, String[][]> paths = rules.paths(format);
        Set<String> leaves = new HashSet<>(effect.sets);
        leaves.addAll(effect.audit ? AUDIT_LEAVES : OLD);
        Map<String, Object> values = new HashMap<>();
        for (String leaf : leaves) {
            String[][] ways = paths.get(leaf);
            JsonNode found = lookup(root, ways == null ? new String[0][] : ways);
            if (found != null) {
                values.put(leaf, TIMES.contains(leaf) ? time(found) : text(found));
            }
        }
        Long at = NovaTime.micros(generated);
        return new Observation(cell, instanceId, messageId, eventType,
                at == null || at == 0 ? 0 : at, Blake2b.key(messageId), effect, values, requestId);
    }

    /** The first path's non-empty value; a JSON null if the paths hold only empties; null if
     * none holds anything. */
    private static JsonNode lookup(JsonNode root, String[][] ways) {
        JsonNode empty = null;
        for (String[] way : ways) {
            JsonNode node = root;
            for (String step : way) {
                node = node != null && node.isObject() ? node.get(step) : null;
            }
            if (node != null) {
                if (!node.isNull() && !(node.isTextual() && node.asText().isEmpty())) {
                    return node;
                }
                empty = org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.node
                        .NullNode.getInstance();
            }
        }
        return empty;
    }

    private static Long time(JsonNode node) {
        return node.isTextual() ? NovaTime.micros(node.asText()) : null;
    }

    /** Text and integers as text (booleans as Python writes them); anything else null. */
    private static String text(JsonNode node) {
        if (node.isTextual()) {
            return node.asText();
        }
        if (node.isIntegralNumber()) {
            return node.bigIntegerValue().toString();
        }
        if (node.isBoolean()) {
            return node.asBoolean() ? "True" : "False";
        }
        return null;
    }
}
