package stacktide.requests;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;

import stacktide.lifecycle.NovaTime;
import stacktide.text.PyJson;

/**
 * The part of a notification a timeline keeps ({@code jobs.requests.Event}): no payload, the
 * fault only on errors. Ordered by {@code (at, messageId)}.
 */
public final class Event {
    public final String messageId;
    public final long at;  // µs since the epoch, the notification's own time
    public final String cell;
    public final String eventType;
    public final String priority;  // lower case
    public final String service;
    public final String host;
    public final String requestId;
    public final String globalRequestId;
    public final String instanceId;
    public final String tenantId;
    public final String[] fault;  // exception, message, code; null unless an error

    public Event(String messageId, long at, String cell, String eventType, String priority,
                 String service, String host, String requestId, String globalRequestId,
                 String instanceId, String tenantId, String[] fault) {
        this.messageId = messageId;
        this.at = at;
        this.cell = cell;
        this.eventType = eventType;
        this.priority = priority;
        this.service = service;
        this.host = host;
        this.requestId = requestId;
        this.globalRequestId = globalRequestId;
        this.instanceId = instanceId;
        this.tenantId = tenantId;
        this.fault = fault;
    }

    /** {@code jobs.requests.observe} of a keyed row's text columns; null when its
     * {@code generated} is no time (the bridge never forwards one). */
    public static Event observe(RequestRules rules, String messageId, String cell,
                                String eventType, String priority, String service, String host,
                                String generated, String requestId, String globalRequestId,
                                String instanceId, String tenantId, JsonNode payload) {
        Long at = NovaTime.micros(generated);
        if (at == null) {
            return null;
        }
        String p = priority == null ? "" : priority;
        String[] fault = rules.isError(eventType, p) ? Faults.of(payload, rules) : null;
        return new Event(messageId, at, cell, eventType, p.toLowerCase(java.util.Locale.ROOT),
                service, host, requestId, globalRequestId, instanceId, tenantId, fault);
    }

    /** {@code group_key}: the cross-service id when there is one. */
    public static String groupKey(String globalRequestId, String requestId) {
        return truthy(globalRequestId) ? globalRequestId : truthy(requestId) ? requestId : null;
    }

    public int compareTo(long otherAt, String otherId) {
        int c = Long.compare(at, otherAt);
        return c != 0 ? c : PyJson.compare(messageId, otherId);
    }

    public boolean after(Event other) {
        return compareTo(other.at, other.messageId) > 0;
    }

    static boolean truthy(String s) {
        return s != null && !s.isEmpty();
    }
}
