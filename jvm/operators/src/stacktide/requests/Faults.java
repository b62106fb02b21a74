package stacktide.requests;

import java.util.LinkedHashMap;
import java.util.Map;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.node.JsonNodeFactory;

import stacktide.text.PyJson;

/** {@code jobs.requests.fault_of}: exception, message and code of an error payload, whichever
 * form nova used (see the Python for the forms). */
public final class Faults {
    private Faults() {}

    /** {@code _text}: null for null or "", a string as it is, anything else as JSON. */
    static String text(JsonNode v) {
        if (v == null || v.isNull() || v.isMissingNode()) {
            return null;
        }
        if (v.isTextual()) {
            return v.textValue().isEmpty() ? null : v.textValue();
        }
        return PyJson.dumps(v, true);
    }

    private static JsonNode get(JsonNode obj, String name) {
        return obj != null && obj.isObject() ? obj.get(name) : null;
    }

    private static String or(String... values) {
        for (String v : values) {
            if (Event.truthy(v)) {
                return v;
            }
        }
        return null;
    }

    public static String[] of(JsonNode payload, RequestRules rules) {
        if (payload == null || !payload.isObject()) {
            return new String[] {null, text(payload), null};
        }
        JsonNode data = payload.has("nova_object.data") ? payload.get("nova_object.data") : payload;
        if (!data.isObject()) {
            data = JsonNodeFactory.instance.objectNode();
        }
        JsonNode[] candidates = {data, get(data, "fault"), get(data, "reason"),
            get(data, "exception")};
        for (JsonNode obj : candidates) {
            JsonNode inner = obj != null && obj.isObject()
                    ? (obj.has("nova_object.data") ? obj.get("nova_object.data") : obj) : null;
            if (inner != null && inner.isObject() && inner.has("exception")
                    && inner.get("exception").isTextual() && inner.has("exception_message")) {
                return new String[] {inner.get("exception").textValue(),
                    text(inner.get("exception_message")), text(data.get("code"))};
            }
        }
        JsonNode exc = data.get("exception");
        JsonNode reason = data.get("reason");
        Map<String, JsonNode> kwargs = new LinkedHashMap<>();
        for (JsonNode holder : new JsonNode[] {exc, reason}) {
            JsonNode kw = get(holder, "kwargs");
            if (kw != null && kw.isObject()) {
                kw.fields().forEachRemaining(e -> kwargs.putIfAbsent(e.getKey(), e.getValue()));
            }
        }
        String message = or(text(data.get("message")), text(kwargs.get("reason")),
                text(kwargs.get("value")), reason != null && reason.isTextual()
                        ? reason.textValue() : null, text(data.get("exception_message")));
        String name = exc != null && exc.isTextual() && !exc.textValue().isEmpty()
                ? exc.textValue() : text(kwargs.get("exc_type"));
        if (name == null && message != null) {
            name = rules.legacyException(message);
        }
        JsonNode code = data.has("code") ? data.get("code") : kwargs.get("code");
        return new String[] {name, message, text(code)};
    }
}
