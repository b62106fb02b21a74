import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;

import stacktide.requests.Event;
import stacktide.requests.RequestCore;
import stacktide.requests.RequestKeep;
import stacktide.requests.RequestRules;
import stacktide.text.PyJson;

/**
 * What tests/jobs/test_jvm_requests.py compares with the Python functions: reads JSON lines on
 * stdin and writes one JSON line per input line.
 *
 * {"repr": x} -> Python's repr of the float; {"dumps": value} -> json.dumps(value,
 * sort_keys=True); {"match": [pattern, name]} -> the error event type pattern matches;
 * {"row": [12 text columns]} -> the event observed; {"drive": [["e", key, row] | ["w", ms]...],
 * "out_of_order": µs, "lateness": µs, "base": b, "newest": µs} -> the rows, alerts, duplicate
 * count and kept keys of the request job's logic driven as Flink drives it.
 */
public final class RequestCheck {
    private static final ObjectMapper JSON = new ObjectMapper();

    public static void main(String[] args) throws Exception {
        RequestRules rules = new RequestRules(JSON.readTree(Files.readAllBytes(Paths.get(args[0]))));
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        PrintStream out = new PrintStream(System.out, false, "UTF-8");
        for (String line; (line = in.readLine()) != null; ) {
            JsonNode q = JSON.readTree(line);
            Object answer;
            if (q.has("repr")) {
                answer = PyJson.repr(q.get("repr").asDouble());
            } else if (q.has("dumps")) {
                answer = PyJson.dumps(q.get("dumps"), true);
            } else if (q.has("match")) {
                String pattern = q.get("match").get(0).asText();
                String name = q.get("match").get(1).asText();
                answer = new RequestRules(JSON.readTree("{\"timeout_us\": 1, \"preceding_max\": 0,"
                        + "\"error_priorities\": [], \"error_event_types\": ["
                        + JSON.writeValueAsString(pattern) + "], \"starts\": [], \"ends\": [],"
                        + "\"errors\": [], \"legacy_exceptions\": []}")).isError(name, "info");
            } else if (q.has("row")) {
                answer = event(observe(rules, q.get("row")));
            } else {
                answer = drive(rules, q);
            }
            out.println(JSON.writeValueAsString(answer));
        }
        out.flush();
    }

    private static String text(JsonNode n) {
        return n == null || n.isNull() ? null : n.asText();
    }

    /** The row as RequestFunction reads it: the columns of sql/request_notifications.sql. */
    static Event observe(RequestRules rules, JsonNode r) throws Exception {
        String payload = text(r.get(11));
        return Event.observe(rules, text(r.get(0)), text(r.get(1)), text(r.get(2)),
                text(r.get(3)), text(r.get(4)), text(r.get(5)), text(r.get(6)), text(r.get(7)),
                text(r.get(8)), text(r.get(9)), text(r.get(10)),
                payload == null ? null : JSON.readTree(payload));
    }

    static Map<String, Object> event(Event e) {
        if (e == null) {
            return null;
        }
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("message_id", e.messageId);
        m.put("at", e.at);
        m.put("priority", e.priority);
        m.put("fault", e.fault == null ? null : Arrays.asList(e.fault));
        return m;
    }

    /** Keyed state as bytes in a map, timers in (ms, key) order, fired as the watermark passes
     * them: what the Python test's Driver does to jobs.request_state.RequestFunction. */
    private static Map<String, Object> drive(RequestRules rules, JsonNode q) throws Exception {
        RequestCore core = new RequestCore(q.get("out_of_order").asLong(),
                q.get("lateness").asLong(), q.get("base").asLong(), rules);
        Map<String, byte[]> stored = new HashMap<>();
        TreeSet<Object[]> timers = new TreeSet<>((a, b) -> {
            int c = Long.compare((Long) a[0], (Long) b[0]);
            return c != 0 ? c : ((String) a[1]).compareTo((String) b[1]);
        });
        List<Object> rows = new ArrayList<>();
        List<Object> alerts = new ArrayList<>();
        long[] duplicates = {0};
        long[] clock = {Long.MIN_VALUE, Long.MIN_VALUE};  // watermark ms, newest µs seen
        long given = q.get("newest").asLong();
        String[] current = {null};
        RequestCore.Context ctx = new RequestCore.Context() {
            public long watermarkMs() {
                return clock[0];
            }

            public long newest() {
                return Math.max(clock[1], given);
            }

            public void registerTimer(long ms) {
                timers.add(new Object[] {ms, current[0]});
            }

            public void emit(String table, Map<String, Object> row) {
                rows.add(List.of(table, row));
            }

            public void alert(String key, String json) {
                try {
                    alerts.add(List.of(key, JSON.readTree(json)));
                } catch (Exception e) {
                    throw new IllegalStateException(e);
                }
            }

            public void duplicate() {
                duplicates[0]++;
            }
        };
        for (JsonNode step : q.get("drive")) {
            if (step.get(0).asText().equals("e")) {
                Event e = observe(rules, step.get(2));
                if (e == null) {
                    continue;
                }
                clock[1] = Math.max(clock[1], e.at);
                current[0] = step.get(1).asText();
                byte[] data = stored.get(current[0]);
                RequestKeep keep = core.process(data == null ? null : RequestKeep.fromBytes(data),
                        e, ctx);
                if (keep != null) {
                    stored.put(current[0], keep.toBytes());
                }
                continue;
            }
            clock[0] = step.get(1).asLong();
            while (!timers.isEmpty() && (Long) timers.first()[0] <= clock[0]) {
                Object[] timer = timers.pollFirst();
                current[0] = (String) timer[1];
                byte[] data = stored.get(current[0]);
                if (data == null) {
                    continue;
                }
                RequestKeep keep = core.onTimer(RequestKeep.fromBytes(data), (Long) timer[0], ctx);
                if (keep == null) {
                    stored.remove(current[0]);
                } else {
                    stored.put(current[0], keep.toBytes());
                }
            }
        }
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("rows", rows);
        out.put("alerts", alerts);
        out.put("duplicates", duplicates[0]);
        out.put("kept", new TreeSet<>(stored.keySet()));
        long bytes = 0;
        for (byte[] b : stored.values()) {
            bytes += b.length;
        }
        out.put("kept_bytes", bytes);
        return out;
    }
}
