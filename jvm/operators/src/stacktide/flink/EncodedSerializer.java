package stacktide.flink;

import java.io.IOException;

import org.apache.flink.api.common.typeutils.base.TypeSerializerSingleton;
import org.apache.flink.core.memory.DataInputView;
import org.apache.flink.core.memory.DataOutputView;

/**
 * A Flink serializer for a keyed operator's state object that has an explicit byte encoding of
 * its own ({@code toBytes}/{@code fromBytes}).
 *
 * Why not {@code ValueState<byte[]>}: with the heap state backend (the jobs' default) a state
 * object is kept as it is and encoded only when a checkpoint is written, while a byte array
 * state makes every element decode and encode its key's whole state (measured: 42 % of the
 * instance job's JVM time). The bytes written are the encoding, behind its length.
 */
public abstract class EncodedSerializer<T> extends TypeSerializerSingleton<T> {
    private static final long serialVersionUID = 1L;

    protected abstract byte[] encode(T value);

    protected abstract T decode(byte[] bytes);

    @Override
    public boolean isImmutableType() {
        return false;
    }

    @Override
    public T createInstance() {
        return null;
    }

    /** A deep copy (the heap backend copies a state object a running snapshot still holds,
     * the first time its key is touched while the snapshot runs): by default through the
     * encoding; a state that can copy itself faster says so in {@link #duplicate}. */
    @Override
    public T copy(T from) {
        return from == null ? null : duplicate(from);
    }

    /** A copy of {@code from} that shares nothing a later change to either could reach. */
    protected T duplicate(T from) {
        return decode(encode(from));
    }

    @Override
    public T copy(T from, T reuse) {
        return copy(from);
    }

    @Override
    public int getLength() {
        return -1;
    }

    @Override
    public void serialize(T record, DataOutputView target) throws IOException {
        byte[] bytes = encode(record);
        target.writeInt(bytes.length);
        target.write(bytes);
    }

    @Override
    public T deserialize(DataInputView source) throws IOException {
        byte[] bytes = new byte[source.readInt()];
        source.readFully(bytes);
        return decode(bytes);
    }

    @Override
    public T deserialize(T reuse, DataInputView source) throws IOException {
        return deserialize(source);
    }

    @Override
    public void copy(DataInputView source, DataOutputView target) throws IOException {
        int length = source.readInt();
        target.writeInt(length);
        target.write(source, length);
    }
}
