package stacktide.lifecycle;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Function;

import stacktide.lifecycle.Parts.Flavor;
import stacktide.lifecycle.Parts.Image;
import stacktide.lifecycle.Parts.Launch;
import stacktide.lifecycle.Parts.Register;
import stacktide.lifecycle.Parts.Sample;

/**
 * One instance's state, folded from its observations in any order, any number of times: the
 * JVM's {@code jobs.lifecycle.InstanceState} and {@code apply}, kept equal to them by the
 * differential tests (tests/jobs/test_jvm_lifecycle.py), which hold the Python functions as
 * the definition. Samples ordered by (at, key), last-writer-wins registers, min-merged first
 * launch and deletion: {@link #apply} commutes and a redelivery changes nothing.
 */
public final class InstanceState {
    public static final long END = 1L << 62;  // "after everything", µs
    static final List<String> REGISTERS = List.of("task_state", "power_state", "tenant_id",
            "user_id", "host", "last_event");

    public final String cell;
    public final String instanceId;
    public final List<Sample> samples = new ArrayList<>();
    public final Map<String, Register> registers = new HashMap<>();
    public Long firstLaunched;
    public Long deletedAt;
    public Long observedFrom;
    public final List<Launch> launches = new ArrayList<>();
    public long horizon = -END;

    public InstanceState(String cell, String instanceId) {
        this.cell = cell;
        this.instanceId = instanceId;
    }

    /** A copy sharing no collection with this one (samples, registers and launches never
     * change once made). */
    public InstanceState copy() {
        InstanceState s = new InstanceState(cell, instanceId);
        s.samples.addAll(samples);
        s.registers.putAll(registers);
        s.firstLaunched = firstLaunched;
        s.deletedAt = deletedAt;
        s.observedFrom = observedFrom;
        s.launches.addAll(launches);
        s.horizon = horizon;
        return s;
    }

    public boolean isLate(Observation obs) {
        return obs.at < horizon;
    }

    public Object register(String name) {
        Register r = registers.get(name);
        return r == null ? null : r.value;
    }

    /** Fold {@code obs} in; false when it changes nothing (an audit, a no-op event, late). */
    public boolean apply(Observation obs) {
        if (obs.effect.audit || obs.effect.sets.isEmpty() || isLate(obs)) {
            return false;
        }
        Map<String, Object> v = obs.values;
        for (String name : REGISTERS) {
            boolean last = name.equals("last_event");
            if (!last && !v.containsKey(name)) {
                continue;
            }
            Register old = registers.get(name);
            if (old == null || Parts.compare(old.at, old.key, obs.at, obs.key) < 0) {
                registers.put(name, new Register(obs.at, obs.key, last ? obs.eventType : v.get(name)));
            }
        }
        Flavor flavor = flavor(v);
        Image image = image(v);
        Long launched = (Long) v.get("launched_at");
        Sample sample = new Sample(obs.at, obs.key, (String) v.get("state"), flavor, image, launched);
        if (!sample.empty()) {
            int i = after(obs.at, obs.key);
            Sample before = i > 0 ? samples.get(i - 1) : null;
            if (before == null || before.at != obs.at || before.key != obs.key) {
                samples.add(i, sample);
            }
            observedFrom = min(observedFrom, obs.at);
        }
        if (launched != null) {
            Launch old = null;
            for (Launch x : launches) {
                if (x.launched == launched) {
                    old = x;
                    break;
                }
            }
            if (old == null || Parts.compare(old.at, old.key, obs.at, obs.key) > 0) {
                launches.remove(old);
                launches.add(new Launch(launched, obs.at, obs.key, flavor, image));
                launches.sort(Comparator.comparingLong(x -> x.launched));
            }
        }
        firstLaunched = min(firstLaunched, launched);
        deletedAt = min(deletedAt, (Long) v.get("deleted_at"));
        return true;
    }

    /** The newest value {@code get} finds at or before (at, key); before any, the earliest. */
    public <T> T latest(long at, long key, Function<Sample, T> get) {
        int i = after(at, key);
        for (int k = i - 1; k >= 0; k--) {
            T value = get.apply(samples.get(k));
            if (value != null) {
                return value;
            }
        }
        for (int k = i; k < samples.size(); k++) {
            T value = get.apply(samples.get(k));
            if (value != null) {
                return value;
            }
        }
        return null;
    }

    /** The index after the last sample at or before (at, key): Python's bisect_right. */
    int after(long at, long key) {
        int lo = 0;
        int hi = samples.size();
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            Sample s = samples.get(mid);
            if (Parts.compare(at, key, s.at, s.key) < 0) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        return lo;
    }

    static Long min(Long a, Long b) {
        return a == null ? b : b == null ? a : Long.valueOf(Math.min(a, b));
    }

    /** The flavor an observation describes, when it names one. */
    static Flavor flavor(Map<String, Object> v) {
        Object id = v.get("flavor_id");
        if (id == null || id.toString().isEmpty()) {
            return null;
        }
        return new Flavor(id.toString(), (String) v.get("flavor_name"), integer(v.get("vcpus")),
                integer(v.get("memory_mb")), integer(v.get("root_gb")),
                integer(v.get("ephemeral_gb")), (String) v.get("instance_type_id"));
    }

    /** The image an observation describes, when it describes any part of one. */
    static Image image(Map<String, Object> v) {
        boolean any = false;
        for (String leaf : Observation.IMAGE_LEAVES) {
            Object x = v.get(leaf);
            any |= x != null && !x.toString().isEmpty();
        }
        return any ? new Image((String) v.get("image_ref"), (String) v.get("os_type"),
                (String) v.get("os_architecture"), (String) v.get("os_distro"),
                (String) v.get("os_version")) : null;
    }

    /** Text of an integer as a number (a leading minus allowed); anything else null. */
    static Long integer(Object value) {
        if (!(value instanceof String)) {
            return null;
        }
        String s = (String) value;
        String digits = s.startsWith("-") ? s.substring(1) : s;
        if (digits.isEmpty() || !digits.chars().allMatch(Character::isDigit)) {
            return null;
        }
        try {
            return Long.parseLong(s);
        } catch (NumberFormatException e) {
            return null;
        }
    }
}
