package stacktide.flink;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;

import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;
import org.apache.flink.table.data.GenericRowData;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.data.StringData;

/**
 * One envelope (a JSON object, CONTRACT.md §1) into a row of text columns, by field name, in
 * one streaming pass: a string value as its text, a number or boolean as its JSON text, an
 * object or array (the payload) as its bytes on the topic, unparsed, absent or null as null.
 * Fields no column names are skipped, never materialized. A message that is not one JSON
 * object fails the source, as the {@code json} format with {@code ignore-parse-errors} off
 * does: the bridge writes only objects, and what it cannot parse goes to the dead letters.
 */
public final class EnvelopeDeserializer implements DeserializationSchema<RowData> {
    private static final long serialVersionUID = 1L;
    private static final int SHOWN = 200;  // bytes of a bad message quoted in the error

    private final String[] columns;
    private final TypeInformation<RowData> produced;
    private transient JsonFactory factory;
    private transient Map<String, Integer> index;

    public EnvelopeDeserializer(String[] columns, TypeInformation<RowData> produced) {
        this.columns = columns.clone();
        this.produced = produced;
    }

    @Override
    public void open(InitializationContext context) {
        setUp();
    }

    private void setUp() {
        factory = new JsonFactory();
        index = new HashMap<>();
        for (int i = 0; i < columns.length; i++) {
            index.put(columns[i], i);
        }
    }

    @Override
    public RowData deserialize(byte[] message) throws IOException {
        if (message == null) {
            return null;  // a tombstone: no envelope
        }
        if (factory == null) {
            setUp();
        }
        GenericRowData row = new GenericRowData(columns.length);
        try (JsonParser parser = factory.createParser(message)) {
            if (parser.nextToken() != JsonToken.START_OBJECT) {
                throw new IOException("not a JSON object");
            }
            JsonToken token;
            while ((token = parser.nextToken()) == JsonToken.FIELD_NAME) {
                Integer at = index.get(parser.currentName());
                JsonToken value = parser.nextToken();
                if (at == null) {
                    parser.skipChildren();
                } else if (value == JsonToken.START_OBJECT || value == JsonToken.START_ARRAY) {
                    int start = (int) parser.currentTokenLocation().getByteOffset();
                    parser.skipChildren();
                    int end = (int) parser.currentLocation().getByteOffset();
                    row.setField(at, StringData.fromBytes(message, start, end - start));
                } else if (value != JsonToken.VALUE_NULL) {
                    row.setField(at, StringData.fromString(parser.getText()));
                } else {
                    row.setField(at, null);
                }
            }
            if (token != JsonToken.END_OBJECT || parser.nextToken() != null) {
                throw new IOException("not one JSON object");
            }
        } catch (IOException e) {
            int shown = Math.min(message.length, SHOWN);
            throw new IOException("envelope-json: cannot read a notification (" + e.getMessage()
                    + "): " + new String(message, 0, shown, StandardCharsets.UTF_8)
                    + (shown < message.length ? "..." : ""), e);
        }
        return row;
    }

    @Override
    public boolean isEndOfStream(RowData next) {
        return false;
    }

    @Override
    public TypeInformation<RowData> getProducedType() {
        return produced;
    }
}
