package stacktide.requests;

import java.io.IOException;
import java.util.Map;

import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeutils.TypeSerializer;
import org.apache.flink.metrics.Counter;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.types.Row;

import stacktide.flink.KeyedCoreFunction;

/**
 * The request job's function in the JVM: {@link RequestCore} driven by Flink, with the inputs,
 * timers and outputs of {@code jobs.request_state.RequestFunction} and no Python worker. The
 * {@code requests} and {@code errors} rows go to side outputs typed as the tables, alerts to
 * the side output {@code alerts} as {@code Row(key, value)}. The Flink side is
 * {@link KeyedCoreFunction}'s.
 */
public final class RequestFunction extends KeyedCoreFunction<Event, RequestKeep> {
    private static final long serialVersionUID = 1L;
    private static final String[] WANTED = {"message_id", "cell", "event_type", "priority",
        "service", "host", "generated", "request_id", "global_request_id", "instance_id",
        "tenant_id", "payload"};

    private final String rulesJson;
    private final long outOfOrder;
    private final long lateness;
    private final long base;

    private transient RequestCore core;
    private transient Counter alerted;

    /** {@code tables}: the row type of each side output ({@code requests}, {@code errors},
     * {@code alerts}); {@code columns}: the input value's column names. Times in µs. */
    public RequestFunction(String rulesJson, long outOfOrder, long lateness, long base,
                           Map<String, TypeInformation<Row>> tables, String[] columns) {
        super("request", WANTED, tables, columns);
        this.rulesJson = rulesJson;
        this.outOfOrder = outOfOrder;
        this.lateness = lateness;
        this.base = base;
    }

    @Override
    protected TypeSerializer<RequestKeep> serializer() {
        return new RequestKeepSerializer();
    }

    @Override
    protected void prepare(ObjectMapper json) throws Exception {
        core = new RequestCore(outOfOrder, lateness, base,
                new RequestRules(json.readTree(rulesJson)));
    }

    @Override
    protected void setUp() {
        alerted = getRuntimeContext().getMetricGroup().counter("alerts");
    }

    @Override
    protected Event observe(String[] f) throws IOException {
        return Event.observe(core.rules(), f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8],
                f[9], f[10], tree(f[11]));
    }

    @Override
    protected long timeOf(Event event) {
        return event.at;
    }

    @Override
    protected RequestKeep process(RequestKeep stored, Event event, ReadOnlyContext ctx) {
        return core.process(stored, event, new Driver(ctx));
    }

    @Override
    protected RequestKeep fire(RequestKeep stored, long timestamp, OnTimerContext ctx) {
        return core.onTimer(stored, timestamp, new Driver(ctx));
    }

    private final class Driver extends Driven implements RequestCore.Context {
        Driver(ReadOnlyContext ctx) {
            super(ctx);
        }

        @Override
        public long newest() {
            return Math.max(super.newest(), RequestCore.NEVER);
        }

        @Override
        public void alert(String key, String value) {
            alerted.inc();
            output("alerts", Row.of(key, value));
        }
    }
}
