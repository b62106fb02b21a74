package stacktide.requests;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.util.RawValue;

import stacktide.lifecycle.NovaTime;
import stacktide.text.PyJson;

/**
 * The rows of the request job ({@code jobs.requests.operations}, {@code request_row},
 * {@code error_row}, {@code alert}) as column -> value maps; times as µs (Long), JSON columns
 * in Python's {@code json.dumps} form, so both implementations write the same text.
 */
public final class RequestRecords {
    private RequestRecords() {}

    /** One timed operation: a start paired with its end or error. */
    public static final class Operation {
        final String name;
        final String instanceId;
        final Long start;
        final Long end;
        final String outcome;
        final String cell;
        final String host;

        Operation(String name, String instanceId, Long start, Long end, String outcome,
                  String cell, String host) {
            this.name = name;
            this.instanceId = instanceId;
            this.start = start;
            this.end = end;
            this.outcome = outcome;
            this.cell = cell;
            this.host = host;
        }

        Map<String, Object> record() {
            Map<String, Object> r = new LinkedHashMap<>();
            r.put("operation", name);
            r.put("instance_id", instanceId);
            r.put("cell", cell);
            r.put("host", host);
            r.put("start", NovaTime.format(start));
            r.put("end", NovaTime.format(end));
            r.put("duration_s", start == null || end == null ? null : (end - start) / 1e6);
            r.put("outcome", outcome);
            return r;
        }

        long sortTime() {
            return start != null ? start : end != null ? end : 0;
        }
    }

    /** Each operation's start paired with its end or error, per instance, in time order. */
    public static List<Operation> operations(List<Event> events, RequestRules rules,
                                             boolean closed) {
        Map<List<String>, Event> open = new LinkedHashMap<>();
        List<Operation> done = new ArrayList<>();
        for (Event e : events) {
            String[] phase = rules.phase(e.eventType);
            if (phase == null) {
                continue;
            }
            List<String> slot = java.util.Arrays.asList(phase[0], e.instanceId);
            if (phase[1].equals("start")) {
                open.put(slot, e);  // a second start restarts the operation
                continue;
            }
            String outcome = phase[1].equals("error") || e.fault != null ? "error" : "ok";
            Event start = open.remove(slot);
            done.add(new Operation(phase[0], e.instanceId, start == null ? null : start.at, e.at,
                    outcome, e.cell, Event.truthy(e.host) ? e.host
                    : start != null ? start.host : null));
        }
        String left = closed ? "unfinished" : "open";
        for (Map.Entry<List<String>, Event> o : open.entrySet()) {
            Event e = o.getValue();
            done.add(new Operation(o.getKey().get(0), o.getKey().get(1), e.at, null, left, e.cell,
                    e.host));
        }
        done.sort(Comparator.comparingLong(Operation::sortTime)
                .thenComparing((a, b) -> PyJson.compare(a.name, b.name))
                .thenComparing((a, b) -> PyJson.compare(a.instanceId == null ? "" : a.instanceId,
                        b.instanceId == null ? "" : b.instanceId)));
        return done;
    }

    static String outcome(List<Operation> ops, boolean hasError, boolean closed) {
        if (hasError) {
            return "error";
        }
        if (closed) {
            return "ok";
        }
        if (ops.isEmpty()) {
            return "open";
        }
        for (Operation o : ops) {
            if (o.end == null) {
                return "open";
            }
        }
        return "ok";
    }

    private interface Field {
        String of(Event e);
    }

    private static String names(List<Event> events, Field field) {
        TreeSet<String> seen = new TreeSet<>(PyJson::compare);
        for (Event e : events) {
            String v = field.of(e);
            if (Event.truthy(v)) {
                seen.add(v);
            }
        }
        return PyJson.dumps(new ArrayList<Object>(seen));
    }

    private static String first(List<Event> events, Field field) {
        for (Event e : events) {
            String v = field.of(e);
            if (Event.truthy(v)) {
                return v;
            }
        }
        return null;
    }

    private static boolean keyed(List<Event> events) {
        for (Event e : events) {
            if (Event.truthy(e.requestId) || Event.truthy(e.globalRequestId)) {
                return true;
            }
        }
        return false;
    }

    /** The {@code requests} row (no revision yet); null when no event carries a request id. */
    public static Map<String, Object> request(Timeline t, RequestRules rules, boolean closed) {
        List<Event> events = t.events;
        if (events.isEmpty() || !keyed(events)) {
            return null;
        }
        List<Operation> ops = operations(events, rules, closed);
        List<Event> errors = t.errors();
        long first = events.get(0).at;
        long last = t.lastAt();
        List<Object> records = new ArrayList<>();
        ops.forEach(o -> records.add(o.record()));
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("request_id", t.key);
        r.put("global_request_id", first(events, e -> e.globalRequestId));
        r.put("first_at", first);
        r.put("last_at", last);
        r.put("duration_s", (last - first) / 1e6);
        r.put("cells", names(events, e -> e.cell));
        r.put("services", names(events, e -> e.service));
        r.put("hosts", names(events, e -> e.host));
        r.put("instance_ids", names(events, e -> e.instanceId));
        r.put("tenant_id", first(events, e -> e.tenantId));
        r.put("event_count", (long) events.size());
        r.put("error_count", (long) errors.size());
        r.put("outcome", outcome(ops, !errors.isEmpty(), closed));
        r.put("operations", PyJson.dumps(records));
        r.put("root_cause_message_id", errors.isEmpty() ? null : errors.get(0).messageId);
        return r;
    }

    /** The {@code errors} row of {@code error} (no revision yet), correlated with its request
     * so far. */
    public static Map<String, Object> error(Timeline t, Event error, RequestRules rules) {
        List<Event> events = t.events;
        int i = t.position(error.at, error.messageId);
        List<Object> before = new ArrayList<>();
        if (rules.precedingMax > 0) {
            for (Event e : events.subList(Math.max(0, i - rules.precedingMax), i)) {
                Map<String, Object> p = new LinkedHashMap<>();
                p.put("event_type", e.eventType);
                p.put("at", NovaTime.format(e.at));
                p.put("host", e.host);
                p.put("message_id", e.messageId);
                before.add(p);
            }
        }
        List<Event> errors = t.errors();
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("message_id", error.messageId);
        r.put("at", error.at);
        r.put("cell", error.cell);
        r.put("event_type", error.eventType);
        r.put("priority", error.priority);
        r.put("service", error.service);
        r.put("host", error.host);
        r.put("request_id", keyed(events) ? t.key : null);
        r.put("instance_id", Event.truthy(error.instanceId) ? error.instanceId
                : first(events, e -> e.instanceId));
        r.put("tenant_id", Event.truthy(error.tenantId) ? error.tenantId
                : first(events, e -> e.tenantId));
        r.put("exception", error.fault[0]);
        r.put("message", error.fault[1]);
        r.put("code", error.fault[2]);
        r.put("root_cause_message_id", errors.isEmpty() ? error.messageId
                : errors.get(0).messageId);
        r.put("preceding", PyJson.dumps(before));
        return r;
    }

    /** The JSON object of an {@code errors} row (no revision yet) as published on
     * {@code <prefix>.alerts}: times as text, {@code preceding} as the list its JSON text holds,
     * written in as it is rather than parsed back. */
    public static Map<String, Object> alert(Map<String, Object> row) {
        Map<String, Object> a = new LinkedHashMap<>(row);
        a.put("at", NovaTime.format((Long) row.get("at")));
        a.put("preceding", new RawValue((String) row.get("preceding")));
        return a;
    }
}
