package stacktide.flink;

import java.util.Objects;

import org.apache.flink.api.common.serialization.SerializerConfig;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeutils.TypeSerializer;

/**
 * The type of a stream of objects that have a serializer of their own: what lets a keyed
 * function's events (read from the rows upstream, in the source's thread) cross to the keyed
 * operator as they are, written field by field, instead of through Kryo.
 *
 * @param <T> the objects
 */
public final class SerializerType<T> extends TypeInformation<T> {
    private static final long serialVersionUID = 1L;

    private final Class<T> type;
    private final TypeSerializer<T> serializer;

    public SerializerType(Class<T> type, TypeSerializer<T> serializer) {
        this.type = type;
        this.serializer = serializer;
    }

    @Override
    public boolean isBasicType() {
        return false;
    }

    @Override
    public boolean isTupleType() {
        return false;
    }

    @Override
    public int getArity() {
        return 1;
    }

    @Override
    public int getTotalFields() {
        return 1;
    }

    @Override
    public Class<T> getTypeClass() {
        return type;
    }

    @Override
    public boolean isKeyType() {
        return false;
    }

    @Override
    public TypeSerializer<T> createSerializer(SerializerConfig config) {
        return serializer.duplicate();
    }

    @Override
    public String toString() {
        return "SerializerType(" + type.getName() + ")";
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof SerializerType && ((SerializerType<?>) o).type.equals(type)
                && ((SerializerType<?>) o).serializer.equals(serializer);
    }

    @Override
    public int hashCode() {
        return Objects.hash(type, serializer);
    }

    @Override
    public boolean canEqual(Object o) {
        return o instanceof SerializerType;
    }
}
