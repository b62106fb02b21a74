import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.Arrays;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

import org.apache.flink.core.memory.DataInputDeserializer;
import org.apache.flink.core.memory.DataOutputSerializer;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;

import stacktide.lifecycle.Blake2b;
import stacktide.lifecycle.InstanceCore;
import stacktide.lifecycle.InstanceState;
import stacktide.lifecycle.Keep;
import stacktide.lifecycle.NovaTime;
import stacktide.lifecycle.Observation;
import stacktide.lifecycle.ObservationSerializer;
import stacktide.lifecycle.Parts;
import stacktide.lifecycle.Rules;
import stacktide.lifecycle.Usage;

/**
 * What tests/jobs/test_jvm_lifecycle.py compares with the Python functions: reads JSON lines
 * on stdin and writes one JSON line per input line.
 *
 * {"time": text} -> the µs; {"key": text} -> the message key; {"envelope": {...}} -> its
 * observation (with {"wire": true}, as the keyed operator receives it from the source); {"fold": [envelopes...], "period": p, "lo": a, "hi": b} -> the state of each
 * instance after folding them in that order, and its usage rows over [lo, hi);
 * {"drive": [["e", envelope] | ["w", ms]...], "timing": [...], "base": b, "newest": µs} -> the
 * rows the keyed instance job's logic emits, driven as Flink drives it (see the Python test);
 * with {"restore": {key: base64 state}} it starts from those states (their timers registered
 * again, as Flink restores them), with {"dump": true} it also answers the states it ends with.
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
            } else if (q.has("drive")) {
                answer = drive(rules, q);
            } else if (q.has("envelope")) {
                Observation o = observe(rules, q.get("envelope"));
                answer = observation(q.path("wire").asBoolean() ? wire(o) : o);
            } else {
                answer = fold(rules, q);
            }
            out.println(JSON.writeValueAsString(answer));
        }
        out.flush();
    }

    /** Keyed state in a map, timers in (ms, key) order, fired as the watermark passes them. */
    private static Map<String, Object> drive(Rules rules, JsonNode q) throws IOException {
        JsonNode t = q.get("timing");
        InstanceCore core = new InstanceCore(new InstanceCore.Timing(t.get(0).asLong(),
                t.get(1).asLong(), t.get(2).asLong(), t.get(3).asLong(), t.get(4).asLong(),
                t.get(5).asBoolean()), q.get("base").asLong(), rules);
        Map<String, byte[]> stored = new java.util.HashMap<>();
        java.util.TreeSet<Object[]> timers = new java.util.TreeSet<>((a, b) -> {
            int c = Long.compare((Long) a[0], (Long) b[0]);
            return c != 0 ? c : ((String) a[1]).compareTo((String) b[1]);
        });
        List<Object> rows = new ArrayList<>();
        long[] counts = new long[2];
        long[] clock = {Long.MIN_VALUE, Long.MIN_VALUE};  // watermark ms, newest µs seen
        long given = q.get("newest").asLong();
        String[] current = {null};
        InstanceCore.Context ctx = new InstanceCore.Context() {
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

            public void late(Observation obs, long watermark) {
                counts[0]++;
            }

            public void duplicate() {
                counts[1]++;
            }
        };
        if (q.has("restore")) {
            for (java.util.Iterator<Map.Entry<String, JsonNode>> it = q.get("restore").fields();
                 it.hasNext(); ) {
                Map.Entry<String, JsonNode> e = it.next();
                byte[] data = java.util.Base64.getDecoder().decode(e.getValue().asText());
                stored.put(e.getKey(), data);
                for (long ms : Keep.fromBytes(data).timers) {
                    timers.add(new Object[] {ms, e.getKey()});
                }
            }
        }
        for (JsonNode step : q.get("drive")) {
            if (step.get(0).asText().equals("e")) {
                Observation o = observe(rules, step.get(1));
                if (o == null) {
                    continue;
                }
                clock[1] = Math.max(clock[1], o.at);
                current[0] = o.cell + "/" + o.instanceId;
                byte[] data = stored.get(current[0]);
                Keep keep = core.process(data == null ? null : copied(data), o, ctx);
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
                Keep keep = core.onTimer(copied(data), (Long) timer[0], ctx);
                if (keep == null) {
                    stored.remove(current[0]);
                } else {
                    stored.put(current[0], keep.toBytes());
                }
            }
        }
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("rows", rows);
        out.put("late", counts[0]);
        out.put("duplicates", counts[1]);
        out.put("kept", new TreeSet<>(stored.keySet()));
        long bytes = 0;
        Map<String, Integer> sizes = new java.util.TreeMap<>();
        for (Map.Entry<String, byte[]> e : stored.entrySet()) {
            bytes += e.getValue().length;
            sizes.put(e.getKey(), e.getValue().length);
        }
        out.put("bytes", bytes);
        out.put("sizes", sizes);  // per kept key: what a checkpoint writes of its state
        Map<String, Integer> periodic = new java.util.TreeMap<>();
        stored.forEach((k, v) -> periodic.put(k, Keep.fromBytes(v).periodic.size()));
        out.put("periodic", periodic);  // per kept key: the periods a periodic exists came for
        if (q.path("dump").asBoolean()) {
            Map<String, String> states = new java.util.TreeMap<>();
            stored.forEach((k, v) -> states.put(k, java.util.Base64.getEncoder().encodeToString(v)));
            out.put("states", states);
        }
        return out;
    }

    /** The state of {@code data} as the job may be handed it: a copy the heap backend made
     * ({@link Keep#copy}) of a state a running snapshot still holds. The copy must encode as
     * the original does, and what the logic then does to it must leave the original as it
     * was (checked when the logic is done with it, at the next copy). */
    private static Keep copied(byte[] data) {
        if (lastOriginal != null && !Arrays.equals(lastOriginal.toBytes(), lastBytes)) {
            throw new IllegalStateException("changing a copy of a state changed the original");
        }
        Keep original = Keep.fromBytes(data);
        Keep copy = original.copy();
        byte[] bytes = original.toBytes();
        if (!Arrays.equals(copy.toBytes(), bytes)) {
            throw new IllegalStateException("a copy of a state encodes otherwise than it");
        }
        lastOriginal = original;
        lastBytes = bytes;
        return copy;
    }

    private static Keep lastOriginal;
    private static byte[] lastBytes;

    /** The payload as the job reads it, JSON text: {@code payload_text} as given, else
     * {@code payload} written out. */
    private static Observation observe(Rules rules, JsonNode e) throws IOException {
        JsonNode payload = e.get("payload");
        String text = e.has("payload_text") ? text(e, "payload_text")
                : payload == null || payload.isNull() ? null : JSON.writeValueAsString(payload);
        return Observation.observe(rules, text(e, "cell"), text(e, "instance_id"),
                text(e, "message_id"), text(e, "event_type"), text(e, "generated"),
                text(e, "format"), text(e, "request_id"), text);
    }

    private static String text(JsonNode e, String name) {
        JsonNode v = e.get(name);
        return v == null || v.isNull() ? null : v.asText();
    }

    /** {@code o} written by the serializer that carries it from the source to the keyed
     * operator, and read back. */
    private static Observation wire(Observation o) throws IOException {
        if (o == null) {
            return null;
        }
        ObservationSerializer serializer = new ObservationSerializer();
        DataOutputSerializer out = new DataOutputSerializer(256);
        serializer.serialize(o, out);
        Observation back = serializer.deserialize(new DataInputDeserializer(out.getCopyOfBuffer()));
        if (!java.util.Objects.equals(back.cell, o.cell)) {
            throw new IllegalStateException("cell " + o.cell + " came back as " + back.cell);
        }
        return back;
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

    private static Map<String, Object> fold(Rules rules, JsonNode q) throws IOException {
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
