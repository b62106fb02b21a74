package stacktide.lifecycle;

import java.io.IOException;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;

import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeutils.SimpleTypeSerializerSnapshot;
import org.apache.flink.api.common.typeutils.TypeSerializerSnapshot;
import org.apache.flink.api.common.typeutils.base.TypeSerializerSingleton;
import org.apache.flink.core.memory.DataInputView;
import org.apache.flink.core.memory.DataOutputView;
import org.apache.flink.types.StringValue;

import stacktide.flink.SerializerType;

/**
 * An {@link Observation} on the wire between the instance job's source (where it is read from
 * its notification) and its keyed operator: the fields as they are, a few hundred bytes
 * instead of the notification's payload. Observations are never changed once made, so chained
 * operators hand them on without copies.
 */
public final class ObservationSerializer extends TypeSerializerSingleton<Observation> {
    private static final long serialVersionUID = 1L;
    private static final byte NULL = 0;
    private static final byte TIME = 1;
    private static final byte TEXT = 2;

    public static TypeInformation<Observation> type() {
        return new SerializerType<>(Observation.class, new ObservationSerializer());
    }

    @Override
    public boolean isImmutableType() {
        return true;
    }

    @Override
    public Observation createInstance() {
        return null;
    }

    @Override
    public Observation copy(Observation from) {
        return from;
    }

    @Override
    public Observation copy(Observation from, Observation reuse) {
        return from;
    }

    @Override
    public int getLength() {
        return -1;
    }

    @Override
    public void serialize(Observation o, DataOutputView out) throws IOException {
        writeText(out, o.cell);
        writeText(out, o.instanceId);
        writeText(out, o.messageId);
        writeText(out, o.eventType);
        out.writeLong(o.at);
        out.writeLong(o.key);
        writeText(out, o.requestId);
        out.writeBoolean(o.effect.audit);
        out.writeInt(o.effect.sets.size());
        for (String leaf : o.effect.sets) {
            writeName(out, leaf);
        }
        out.writeInt(o.values.size());
        for (Map.Entry<String, Object> e : o.values.entrySet()) {
            writeName(out, e.getKey());
            Object v = e.getValue();
            if (v == null) {
                out.writeByte(NULL);
            } else if (v instanceof Long) {
                out.writeByte(TIME);
                out.writeLong((Long) v);
            } else {
                out.writeByte(TEXT);
                StringValue.writeString((String) v, out);
            }
        }
    }

    @Override
    public Observation deserialize(DataInputView in) throws IOException {
        String cell = readText(in);
        String instanceId = readText(in);
        String messageId = readText(in);
        String eventType = readText(in);
        long at = in.readLong();
        long key = in.readLong();
        String requestId = readText(in);
        boolean audit = in.readBoolean();
        int n = in.readInt();
        Set<String> sets = new HashSet<>(n * 2);
        for (int k = 0; k < n; k++) {
            sets.add(readName(in));
        }
        n = in.readInt();
        Map<String, Object> values = new HashMap<>(n * 2);
        for (int k = 0; k < n; k++) {
            String name = readName(in);
            byte kind = in.readByte();
            values.put(name, kind == NULL ? null : kind == TIME ? (Object) in.readLong()
                    : StringValue.readString(in));
        }
        return new Observation(cell, instanceId, messageId, eventType, at, key,
                new Rules.Effect(sets, audit), values, requestId);
    }

    @Override
    public Observation deserialize(Observation reuse, DataInputView in) throws IOException {
        return deserialize(in);
    }

    @Override
    public void copy(DataInputView in, DataOutputView out) throws IOException {
        serialize(deserialize(in), out);
    }

    @Override
    public TypeSerializerSnapshot<Observation> snapshotConfiguration() {
        return new Snapshot();
    }

    /** Null or text of any length (Flink's string form). */
    private static void writeText(DataOutputView out, String s) throws IOException {
        StringValue.writeString(s, out);
    }

    private static String readText(DataInputView in) throws IOException {
        return StringValue.readString(in);
    }

    /** A leaf's name by its place in {@link Observation#NAMES}, else as text after a 0: read
     * back as the constant itself, which the keyed operator's lookups match at once. */
    private static void writeName(DataOutputView out, String name) throws IOException {
        int place = Observation.place(name);
        out.writeByte(place);
        if (place == 0) {
            StringValue.writeString(name, out);
        }
    }

    private static String readName(DataInputView in) throws IOException {
        int place = in.readByte();
        return place == 0 ? StringValue.readString(in) : Observation.named(place);
    }

    /** What a checkpoint records of the serializer (observations are never in state as
     * such; the type is named for the stream graph). */
    public static final class Snapshot extends SimpleTypeSerializerSnapshot<Observation> {
        public Snapshot() {
            super(ObservationSerializer::new);
        }
    }
}
