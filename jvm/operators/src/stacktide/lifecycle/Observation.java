package stacktide.lifecycle;

import java.io.IOException;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * What one notification says about one instance ({@code jobs.lifecycle.Observation}): the
 * leaves its event type sets, read from the payload where the rules say they sit
 * ({@link PayloadLeaves}). A leaf present but empty maps to null; one absent is not in
 * {@link #values}.
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

    /** The names observations and states hold (registers, leaves), each by its place here
     * where they are written (a state's encoding, the wire to the keyed operator), and read
     * back as these very strings: a lookup by a constant name then matches at its first
     * comparison. Append only: a name's place is part of the state's encoding. */
    public static final List<String> NAMES = List.of("task_state", "power_state", "tenant_id",
            "user_id", "host", "last_event", "state", "launched_at", "deleted_at",
            "audit_period_beginning", "audit_period_ending", "flavor_id", "flavor_name", "vcpus",
            "memory_mb", "root_gb", "ephemeral_gb", "instance_type_id", "image_ref", "os_type",
            "os_architecture", "os_distro", "os_version", "old_state", "old_task_state");
    private static final Map<String, Integer> PLACES = new HashMap<>();

    static {
        for (int k = 0; k < NAMES.size(); k++) {
            PLACES.put(NAMES.get(k), k + 1);
        }
    }

    /** The place of {@code name} in {@link #NAMES} counted from 1; 0 when it is not there. */
    public static int place(String name) {
        Integer place = PLACES.get(name);
        return place == null ? 0 : place;
    }

    /** The name at {@code place} (counted from 1) of {@link #NAMES}. */
    public static String named(int place) {
        return NAMES.get(place - 1);
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
    /** An exists' audit period end, or its own time if it names none ({@code Audit}'s
     * "end or at"). Read at every timer of its instance while it waits, and kept here so that
     * such a read stays in this object, not in {@link #values}' table, nodes and keys. */
    final long auditEnd;

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
        Object end = effect.audit ? values.get("audit_period_ending") : null;
        this.auditEnd = end instanceof Long && (Long) end != 0 ? (Long) end : at;
    }

    /** The observation of one envelope ({@code payload}: its JSON text); null when it is about
     * no instance, matches no rule, or its payload is not a JSON object. */
    public static Observation observe(Rules rules, String cell, String instanceId, String messageId,
                                      String eventType, String generated, String format,
                                      String requestId, String payload) throws IOException {
        Rules.Effect effect = rules.effect(eventType);
        if (effect == null || instanceId == null || instanceId.isEmpty() || payload == null) {
            return null;
        }
        Map<String, Object> values = rules.reader(format, effect).read(payload);
        if (values == null) {
            return null;
        }
        Long at = NovaTime.micros(generated);
        return new Observation(cell, instanceId, messageId, eventType,
                at == null || at == 0 ? 0 : at, Blake2b.key(messageId), effect, values, requestId);
    }

    /** The leaves an event of {@code effect} reads: what it sets, and the audit's or the old
     * states. */
    static Set<String> leaves(Rules.Effect effect) {
        Set<String> leaves = new HashSet<>(effect.sets);
        leaves.addAll(effect.audit ? AUDIT_LEAVES : OLD);
        return leaves;
    }
}
