package stacktide.lifecycle;

import java.util.LinkedHashMap;
import java.util.Map;

import stacktide.lifecycle.Parts.Flavor;
import stacktide.lifecycle.Parts.Image;
import stacktide.lifecycle.Parts.Register;

/**
 * The rows the keyed instance job writes, as column -> value maps in the tables' column order
 * (CONTRACT.md §3; times as µs since the epoch, Long): the JVM's {@code jobs.usage.instance_row},
 * {@code event_row}, {@code UsageRow.record} and {@code AuditResult.record}.
 */
public final class Records {
    private Records() {}

    /** The {@code instances} row: the newest of everything (no revision yet). */
    public static Map<String, Object> instance(InstanceState s, Rules rules) {
        long end = InstanceState.END;
        String vm = s.latest(end, end, x -> x.state);
        Long launched = s.latest(end, end, x -> x.launched);
        Flavor f = s.latest(end, end, x -> x.flavor);
        Image i = s.latest(end, end, x -> x.image);
        f = f == null ? Book.noFlavor() : f;
        i = i == null ? Book.noImage() : i;
        Register power = s.registers.get("power_state");
        long[] vmStamp = s.latest(end, end, x -> x.state != null && !x.state.isEmpty()
                ? new long[] {x.at, x.key} : null);
        long[] stamp = vmStamp == null ? new long[] {0, 0} : vmStamp;
        boolean own = power != null && power.value != null && !power.value.toString().isEmpty()
                && Parts.compare(power.at, power.key, stamp[0], stamp[1]) >= 0;
        Register last = s.registers.get("last_event");
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("cell", s.cell);
        r.put("instance_id", s.instanceId);
        r.put("state", vm);
        r.put("task_state", s.register("task_state"));
        r.put("power_state", own ? power.value
                : vm != null && !vm.isEmpty() ? rules.meaning(vm).powerState : null);
        r.put("tenant_id", s.register("tenant_id"));
        r.put("user_id", s.register("user_id"));
        r.put("flavor_id", f.flavorId.isEmpty() ? null : f.flavorId);
        r.put("flavor_name", f.flavorName);
        r.put("vcpus", f.vcpus);
        r.put("memory_mb", f.memoryMb);
        r.put("root_gb", f.rootGb);
        r.put("ephemeral_gb", f.ephemeralGb);
        r.put("image_ref", i.imageRef);
        r.put("os_type", i.osType);
        r.put("host", s.register("host"));
        r.put("launched_at", launched);
        r.put("deleted_at", s.deletedAt);
        r.put("last_event_type", last == null ? null : last.value);
        r.put("last_event_at", last == null ? null : last.at);
        r.put("updated_at", last == null ? null : last.at);
        return r;
    }

    /** The {@code instance_events} history row of {@code obs}; null for audits and no-ops. */
    public static Map<String, Object> event(Observation obs) {
        if (obs.effect.audit || obs.effect.sets.isEmpty()) {
            return null;
        }
        Map<String, Object> v = obs.values;
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("message_id", obs.messageId);
        r.put("cell", obs.cell);
        r.put("instance_id", obs.instanceId);
        r.put("at", obs.at);
        r.put("event_type", obs.eventType);
        r.put("old_state", v.get("old_state"));
        r.put("state", v.get("state"));
        r.put("old_task_state", v.get("old_task_state"));
        r.put("task_state", v.get("task_state"));
        r.put("flavor_id", v.get("flavor_id"));
        r.put("request_id", obs.requestId);
        return r;
    }

    /** The {@code instance_usage} row. */
    public static Map<String, Object> usage(InstanceState s, Usage.Row row, long revision) {
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("cell", s.cell);
        r.put("instance_id", s.instanceId);
        r.put("tenant_id", row.tenantId);
        r.put("period_start", row.periodStart);
        r.put("period_end", row.periodEnd);
        r.put("flavor_id", row.flavorId);
        r.put("vcpus", row.vcpus);
        r.put("memory_mb", row.memoryMb);
        r.put("disk_gb", row.diskGb);
        r.put("seconds", row.microseconds / 1e6);
        r.put("running_seconds", row.runningMicroseconds / 1e6);
        r.put("microseconds", row.microseconds);
        r.put("running_microseconds", row.runningMicroseconds);
        r.put("launched_at", row.launchedAt);
        r.put("deleted_at", row.deletedAt);
        r.put("revision", revision);
        return r;
    }

    /** The {@code usage_audit} row. */
    public static Map<String, Object> audit(Audit.Result result, long revision) {
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("message_id", result.messageId);
        r.put("cell", result.cell);
        r.put("instance_id", result.instanceId);
        r.put("audit_period_beginning", result.begin);
        r.put("audit_period_ending", result.end);
        r.put("status", result.status);
        r.put("mismatches", result.mismatchesJson());
        r.put("revision", revision);
        return r;
    }
}
