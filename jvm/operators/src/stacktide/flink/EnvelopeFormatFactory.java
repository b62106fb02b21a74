package stacktide.flink;

import java.util.Collections;
import java.util.List;
import java.util.Set;

import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.configuration.ConfigOption;
import org.apache.flink.configuration.ReadableConfig;
import org.apache.flink.table.api.ValidationException;
import org.apache.flink.table.connector.ChangelogMode;
import org.apache.flink.table.connector.Projection;
import org.apache.flink.table.connector.format.DecodingFormat;
import org.apache.flink.table.connector.format.ProjectableDecodingFormat;
import org.apache.flink.table.connector.source.DynamicTableSource;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.factories.DeserializationFormatFactory;
import org.apache.flink.table.factories.DynamicTableFactory;
import org.apache.flink.table.factories.FactoryUtil;
import org.apache.flink.table.types.DataType;
import org.apache.flink.table.types.logical.LogicalType;
import org.apache.flink.table.types.logical.LogicalTypeRoot;

/**
 * The {@code 'format' = 'envelope-json'} of the keyed jobs' Kafka sources
 * (sql/kafka_instance_notifications.sql): the notification envelope read into text columns in
 * one pass ({@link EnvelopeDeserializer}).
 *
 * <p>Flink's {@code json} format reads an object-valued column declared {@code STRING} (the
 * payload) by building its tree and writing the tree back out as text, which the keyed
 * functions then parse once more; that round trip was a third of the keyed source's time. This
 * format hands on the payload's own bytes, as they are on the topic. Only text columns:
 * the keyed jobs read the times as the envelope's text, exactly (see the SQL).
 */
public final class EnvelopeFormatFactory implements DeserializationFormatFactory {
    public static final String IDENTIFIER = "envelope-json";

    @Override
    public DecodingFormat<DeserializationSchema<RowData>> createDecodingFormat(
            DynamicTableFactory.Context context, ReadableConfig formatOptions) {
        FactoryUtil.validateFactoryOptions(this, formatOptions);
        return new Decoding();
    }

    @Override
    public String factoryIdentifier() {
        return IDENTIFIER;
    }

    @Override
    public Set<ConfigOption<?>> requiredOptions() {
        return Collections.emptySet();
    }

    @Override
    public Set<ConfigOption<?>> optionalOptions() {
        return Collections.emptySet();
    }

    /** Decodes only the columns the query reads (the Kafka source pushes its projection here). */
    private static final class Decoding implements ProjectableDecodingFormat<DeserializationSchema<RowData>> {
        @Override
        public DeserializationSchema<RowData> createRuntimeDecoder(
                DynamicTableSource.Context context, DataType physicalDataType, int[][] projections) {
            DataType produced = Projection.of(projections).project(physicalDataType);
            List<String> names = DataType.getFieldNames(produced);
            List<DataType> types = DataType.getFieldDataTypes(produced);
            for (int i = 0; i < names.size(); i++) {
                LogicalType type = types.get(i).getLogicalType();
                if (type.getTypeRoot() != LogicalTypeRoot.VARCHAR) {
                    throw new ValidationException("format '" + IDENTIFIER + "' reads text columns only; column `"
                            + names.get(i) + "` is " + type.asSummaryString());
                }
            }
            return new EnvelopeDeserializer(names.toArray(new String[0]),
                    context.createTypeInformation(produced));
        }

        @Override
        public ChangelogMode getChangelogMode() {
            return ChangelogMode.insertOnly();
        }
    }
}
