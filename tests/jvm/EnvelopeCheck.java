import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;

import org.apache.flink.formats.common.TimestampFormat;
import org.apache.flink.formats.json.JsonParserRowDataDeserializationSchema;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.node.ArrayNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.node.ObjectNode;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.runtime.typeutils.InternalTypeInfo;
import org.apache.flink.table.types.logical.LogicalType;
import org.apache.flink.table.types.logical.RowType;
import org.apache.flink.table.types.logical.VarCharType;
import org.apache.flink.util.Collector;

import stacktide.flink.EnvelopeDeserializer;

/**
 * What tests/jobs/test_envelope_format.py compares: reads JSON lines on stdin, each
 * {"message": base64 bytes or null, "columns": [names]}, and writes one JSON line per input
 * line, {"ours": [text or null...] or {"error": message}, "flink": the same from Flink's
 * {@code json} format (fail-on-missing-field and ignore-parse-errors off)}.
 */
public final class EnvelopeCheck {
    private static final ObjectMapper JSON = new ObjectMapper();

    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        PrintStream out = new PrintStream(System.out, false, "UTF-8");
        String line;
        while ((line = in.readLine()) != null) {
            JsonNode query = JSON.readTree(line);
            List<String> names = new ArrayList<>();
            query.get("columns").forEach(c -> names.add(c.asText()));
            List<LogicalType> types = new ArrayList<>();
            for (int i = 0; i < names.size(); i++) {
                types.add(new VarCharType(VarCharType.MAX_LENGTH));
            }
            RowType rowType = RowType.of(types.toArray(new LogicalType[0]), names.toArray(new String[0]));
            byte[] message = query.get("message").isNull() ? null
                    : Base64.getDecoder().decode(query.get("message").asText());
            ObjectNode answer = JSON.createObjectNode();
            try {
                EnvelopeDeserializer ours = new EnvelopeDeserializer(names.toArray(new String[0]),
                        InternalTypeInfo.of(rowType));
                answer.set("ours", values(ours.deserialize(message), names.size()));
            } catch (Exception e) {
                answer.putObject("ours").put("error", String.valueOf(e.getMessage()));
            }
            if (message != null) {
                JsonParserRowDataDeserializationSchema flink = new JsonParserRowDataDeserializationSchema(
                        rowType, InternalTypeInfo.of(rowType), false, false, TimestampFormat.ISO_8601);
                List<RowData> rows = new ArrayList<>();
                try {
                    flink.open(null);  // its object mapper; the context is not read
                    flink.deserialize(message, new Collector<RowData>() {
                        @Override
                        public void collect(RowData row) {
                            rows.add(row);
                        }

                        @Override
                        public void close() {}
                    });
                    answer.set("flink", values(rows.isEmpty() ? null : rows.get(0), names.size()));
                } catch (Exception e) {
                    answer.putObject("flink").put("error", String.valueOf(e.getMessage()));
                }
            }
            out.println(JSON.writeValueAsString(answer));
        }
        out.flush();
    }

    private static JsonNode values(RowData row, int arity) {
        if (row == null) {
            return JSON.nullNode();
        }
        ArrayNode values = JSON.createArrayNode();
        for (int i = 0; i < arity; i++) {
            if (row.isNullAt(i)) {
                values.addNull();
            } else {
                values.add(row.getString(i).toString());
            }
        }
        return values;
    }
}
