import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;

import stacktide.lifecycle.Blake2b;
import stacktide.lifecycle.InstanceState;
import stacktide.lifecycle.NovaTime;
import stacktide.lifecycle.Observation;
import stacktide.lifecycle.Parts;
import stacktide.lifecycle.Rules;
import stacktide.lifecycle.Usage;

/**
 * What tests/jobs/test_jvm_lifecycle.py compares with the Python functions: reads JSON lines
 * on stdin and writes one JSON line per input line.
 *
 * {"time": text} -> the µs; {"key": text} -> the message key; {"envelope": {...}} -> its
 * observation; {"fold": [envelopes...], "period": p, "lo": a, "hi": b} -> the state of each
 * instance after folding them in that order, and its usage rows over [lo, hi).
 */
public final class LifecycleCheck {
    private static final ObjectMapper JSON = new ObjectMapper();

    public static void main(String[] args) throws Exception {
        Rules rules = new Rules(JSON.readTree(Files.readAllBytes(Paths.get(args[0]))));
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        PrintStream out = new PrintStream(System.out, false, "UTF-8");
        for (String line; (line = in.readLine()) != null; ) {
            JsonNode q = JSON.readTree(line);
            Object answer;
            if (q.has("time")) {
                answer = NovaTime.micros(q.get("time").asText());
            } else if (q.has("key")) {
                answer = Blake2b.key(q.get("key").asText());
            } else if (q.has("envelope")) {
                answer = observation(observe(rules, q.get("envelope")));
            } else {
                answer = fold(rules, q);
            }
            out.println(JSON.writeValueAsString(answer));
        }
        out.flush();
    }

    private static Observation observe(Rules rules, JsonNode e) {
        return Observation.observe(rules, text(e, "cell"), text(e, "instance_id"),
                text(e, "message_id"), text(e, "event_type"), text(e, "generated"),
                text(e, "format"), text(e, "request_id"), e.get("payload"));
    }

    private static String text(JsonNode e, String name) {
        JsonNode v = e.get(name);
        return v == null || v.isNull() ? null : v.asText();
    }

    private static Map<String, Object> observation(Observation o) {
        if (o == null) {
            return null;
        }
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("instance_id", o.instanceId);
        m.put("message_id", o.messageId);
        m.put("event_type", o.eventType);
        m.put("at", o.at);
        m.put("key", o.key);
        m.put("sets", new TreeSet<>(o.effect.sets));
        m.put("audit", o.effect.audit);
        m.put("values", o.values);
        m.put("request_id", o.requestId);
        return m;
    }

    private static Map<String, Object> fold(Rules rules, JsonNode q) {
        Map<String, InstanceState> states = new LinkedHashMap<>();
        for (JsonNode e : q.get("fold")) {
            Observation o = observe(rules, e);
            if (o != null) {
                states.computeIfAbsent(o.instanceId, id -> new InstanceState(o.cell, id)).apply(o);
            }
        }
        long period = q.get("period").asLong();
        Map<String, Object> out = new LinkedHashMap<>();
        for (InstanceState s : states.values()) {
            Map<String, Object> m = new LinkedHashMap<>();
            List<Object> samples = new ArrayList<>();
            for (Parts.Sample x : s.samples) {
                samples.add(List.of(x.at, x.key, String.valueOf(x.state), flavor(x.flavor),
                        image(x.image), String.valueOf(x.launched)));
            }
            m.put("samples", samples);
            Map<String, Object> regs = new LinkedHashMap<>();
            s.registers.forEach((k, r) -> regs.put(k, List.of(r.at, r.key, String.valueOf(r.value))));
            m.put("registers", regs);
            List<Object> launches = new ArrayList<>();
            for (Parts.Launch x : s.launches) {
                launches.add(List.of(x.launched, x.at, x.key, flavor(x.flavor), image(x.image)));
            }
            m.put("launches", launches);
            m.put("scalars", java.util.Arrays.asList(s.firstLaunched, s.deletedAt, s.observedFrom));
            List<Object> rows = new ArrayList<>();
            for (Usage.Row r : Usage.usage(s, rules, period, q.get("lo").asLong(), q.get("hi").asLong())) {
                rows.add(java.util.Arrays.asList(r.periodStart, r.periodEnd, r.flavorId, r.vcpus,
                        r.memoryMb, r.diskGb, r.microseconds, r.runningMicroseconds, r.launchedAt,
                        r.deletedAt));
            }
            m.put("usage", rows);
            out.put(s.instanceId, m);
        }
        return out;
    }

    private static String flavor(Parts.Flavor f) {
        return f == null ? "None" : String.join("|", f.flavorId, String.valueOf(f.flavorName),
                String.valueOf(f.vcpus), String.valueOf(f.memoryMb), String.valueOf(f.rootGb),
                String.valueOf(f.ephemeralGb), String.valueOf(f.instanceTypeId));
    }

    private static String image(Parts.Image i) {
        return i == null ? "None" : String.join("|", String.valueOf(i.imageRef),
                String.valueOf(i.osType), String.valueOf(i.osArchitecture),
                String.valueOf(i.osDistro), String.valueOf(i.osVersion));
    }
}
