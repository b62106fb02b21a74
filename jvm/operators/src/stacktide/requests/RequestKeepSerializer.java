package stacktide.requests;

import org.apache.flink.api.common.typeutils.SimpleTypeSerializerSnapshot;
import org.apache.flink.api.common.typeutils.TypeSerializerSnapshot;

import stacktide.flink.EncodedSerializer;

/** The request job's state in Flink: a {@link RequestKeep} object, checkpointed as its bytes. */
public final class RequestKeepSerializer extends EncodedSerializer<RequestKeep> {
    private static final long serialVersionUID = 1L;

    @Override
    protected byte[] encode(RequestKeep value) {
        return value.toBytes();
    }

    @Override
    protected RequestKeep decode(byte[] bytes) {
        return RequestKeep.fromBytes(bytes);
    }

    @Override
    public TypeSerializerSnapshot<RequestKeep> snapshotConfiguration() {
        return new Snapshot();
    }

    /** What a checkpoint records of the serializer: its class (the encoding versions itself). */
    public static final class Snapshot extends SimpleTypeSerializerSnapshot<RequestKeep> {
        public Snapshot() {
            super(RequestKeepSerializer::new);
        }
    }
}
