package stacktide.lifecycle;

import java.io.IOException;
import java.time.Instant;
import java.util.Map;

import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeutils.TypeSerializer;
import org.apache.flink.metrics.Counter;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.types.Row;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import stacktide.flink.KeyedCoreFunction;

/**
 * The keyed instance job's function in the JVM: {@link InstanceCore} driven by Flink, the same
 * inputs, state, timers and side outputs as {@code jobs.instance_state.InstanceFunction}
 * without a Python worker; one side output per table ({@code row_type} in Python hands the
 * types over). The Flink side is {@link KeyedCoreFunction}'s.
 */
public final class InstanceFunction extends KeyedCoreFunction<Observation, Keep> {
    private static final long serialVersionUID = 1L;
    private static final Logger LOG = LoggerFactory.getLogger(InstanceFunction.class);
    /** Late events logged one by one per subtask; after that every {@code LOG_EVERY}th. */
    private static final long LOG_FIRST = 20;
    private static final long LOG_EVERY = 1000;
    private static final String[] WANTED = {"message_id", "cell", "event_type", "generated",
        "request_id", "instance_id", "format", "payload"};

    private final String rulesJson;
    private final long[] timing;  // period, out of order, lateness, settle, silence, audit (0/1)
    private final long base;

    private transient InstanceCore core;
    private transient Counter late;

    public InstanceFunction(String rulesJson, long[] timing, long base,
                            Map<String, TypeInformation<Row>> tables, String[] columns) {
        super("instance", WANTED, tables, columns);
        this.rulesJson = rulesJson;
        this.timing = timing.clone();
        this.base = base;
    }

    @Override
    protected TypeSerializer<Keep> serializer() {
        return new KeepSerializer();
    }

    @Override
    protected void prepare(ObjectMapper json) throws Exception {
        core = new InstanceCore(new InstanceCore.Timing(timing[0], timing[1], timing[2], timing[3],
                timing[4], timing[5] != 0), base, new Rules(json.readTree(rulesJson)));
    }

    @Override
    protected void setUp() {
        late = getRuntimeContext().getMetricGroup().counter("late_events");
    }

    /** Observations cross from the source as they are: a few leaves, not the payload. */
    @Override
    public TypeInformation<Observation> eventType() {
        return ObservationSerializer.type();
    }

    @Override
    protected Observation observe(String[] f) throws IOException {
        return Observation.observe(core.rules(), f[1], f[5], f[0], f[2], f[3], f[6], f[4], f[7]);
    }

    @Override
    protected long timeOf(Observation obs) {
        return obs.at;
    }

    @Override
    protected Keep process(Keep stored, Observation obs, ReadOnlyContext ctx) {
        return core.process(stored, obs, new Driver(ctx));
    }

    @Override
    protected Keep fire(Keep stored, long timestamp, OnTimerContext ctx) {
        return core.onTimer(stored, timestamp, new Driver(ctx));
    }

    private final class Driver extends Driven implements InstanceCore.Context {
        Driver(ReadOnlyContext ctx) {
            super(ctx);
        }

        /** Counted, and logged (a bounded number of times): a skipped event is usage nobody
         * is billed for, and its time against the watermark's tells an operator why. */
        @Override
        public void late(Observation obs, long watermark) {
            late.inc();
            long n = late.getCount();
            if (n <= LOG_FIRST || n % LOG_EVERY == 0) {
                LOG.warn("late event skipped ({} so far): {} of instance {}/{} at {}, message {};"
                        + " watermark {}", n, obs.eventType, obs.cell, obs.instanceId,
                        time(obs.at), obs.messageId, time(watermark));
            }
        }
    }

    private static String time(long us) {
        return Instant.ofEpochSecond(Math.floorDiv(us, 1_000_000L),
                Math.floorMod(us, 1_000_000L) * 1000).toString();
    }
}
