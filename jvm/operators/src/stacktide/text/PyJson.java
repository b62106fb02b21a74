package stacktide.text;

import java.math.BigDecimal;
import java.math.MathContext;
import java.math.RoundingMode;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;

/**
 * Text exactly as Python's {@code json.dumps} writes it with its defaults ({@code ", "} and
 * {@code ": "} between items, non-ASCII escaped, floats as {@code repr}): the request job's
 * JSON columns ({@code operations}, {@code preceding}, {@code cells}, ...) and the fault
 * texts taken from payloads must read the same whichever implementation wrote them.
 */
public final class PyJson {
    private PyJson() {}

    /** {@code json.dumps(value, sort_keys=sortKeys)} of a payload node. */
    public static String dumps(JsonNode node, boolean sortKeys) {
        StringBuilder b = new StringBuilder();
        write(b, node, sortKeys);
        return b.toString();
    }

    /** {@code json.dumps} of plain values: null, String, Long/Integer, Double, Boolean, List, Map
     * (in the map's own order, as a Python dict keeps its insertion order). */
    public static String dumps(Object value) {
        StringBuilder b = new StringBuilder();
        writeObject(b, value);
        return b.toString();
    }

    private static void writeObject(StringBuilder b, Object value) {
        if (value == null) {
            b.append("null");
        } else if (value instanceof String) {
            string(b, (String) value);
        } else if (value instanceof Double || value instanceof Float) {
            b.append(repr(((Number) value).doubleValue()));
        } else if (value instanceof Number || value instanceof Boolean) {
            b.append(value);
        } else if (value instanceof List) {
            b.append('[');
            String sep = "";
            for (Object item : (List<?>) value) {
                b.append(sep);
                writeObject(b, item);
                sep = ", ";
            }
            b.append(']');
        } else if (value instanceof Map) {
            b.append('{');
            String sep = "";
            for (Map.Entry<?, ?> e : ((Map<?, ?>) value).entrySet()) {
                b.append(sep);
                string(b, (String) e.getKey());
                b.append(": ");
                writeObject(b, e.getValue());
                sep = ", ";
            }
            b.append('}');
        } else {
            throw new IllegalArgumentException("no JSON form for " + value.getClass());
        }
    }

    private static void write(StringBuilder b, JsonNode node, boolean sortKeys) {
        if (node == null || node.isNull() || node.isMissingNode()) {
            b.append("null");
        } else if (node.isTextual()) {
            string(b, node.textValue());
        } else if (node.isBoolean()) {
            b.append(node.booleanValue() ? "true" : "false");
        } else if (node.isIntegralNumber()) {
            b.append(node.bigIntegerValue());
        } else if (node.isNumber()) {
            b.append(repr(node.doubleValue()));
        } else if (node.isArray()) {
            b.append('[');
            for (int k = 0; k < node.size(); k++) {
                b.append(k == 0 ? "" : ", ");
                write(b, node.get(k), sortKeys);
            }
            b.append(']');
        } else {
            List<String> names = new ArrayList<>();
            for (Iterator<String> it = node.fieldNames(); it.hasNext(); ) {
                names.add(it.next());
            }
            if (sortKeys) {
                names.sort(PyJson::compare);
            }
            b.append('{');
            String sep = "";
            for (String name : names) {
                b.append(sep);
                string(b, name);
                b.append(": ");
                write(b, node.get(name), sortKeys);
                sep = ", ";
            }
            b.append('}');
        }
    }

    /** Python's order of str: by code point (Java's compareTo goes by UTF-16 unit). */
    public static int compare(String a, String b) {
        int i = 0;
        int j = 0;
        while (i < a.length() && j < b.length()) {
            int x = a.codePointAt(i);
            int y = b.codePointAt(j);
            if (x != y) {
                return Integer.compare(x, y);
            }
            i += Character.charCount(x);
            j += Character.charCount(y);
        }
        return Integer.compare(a.length() - i, b.length() - j);
    }

    public static void string(StringBuilder b, String s) {
        b.append('"');
        for (int k = 0; k < s.length(); k++) {
            char c = s.charAt(k);
            switch (c) {
                case '"': b.append("\\\""); break;
                case '\\': b.append("\\\\"); break;
                case '\n': b.append("\\n"); break;
                case '\r': b.append("\\r"); break;
                case '\t': b.append("\\t"); break;
                case '\b': b.append("\\b"); break;
                case '\f': b.append("\\f"); break;
                default:
                    if (c < 0x20 || c > 0x7e) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
            }
        }
        b.append('"');
    }

    /** Python's {@code repr} of a float: the shortest digits that read back to it, fixed
     * notation for exponents -4 to 15, else {@code d.ddde+XX}. */
    public static String repr(double v) {
        if (Double.isNaN(v)) {
            return "NaN";
        }
        if (Double.isInfinite(v)) {
            return v > 0 ? "Infinity" : "-Infinity";
        }
        if (v == 0) {
            return (1 / v < 0) ? "-0.0" : "0.0";
        }
        BigDecimal exact = new BigDecimal(v);
        BigDecimal shortest = exact;
        for (int p = 1; p <= 17; p++) {
            BigDecimal r = exact.round(new MathContext(p, RoundingMode.HALF_EVEN));
            if (r.doubleValue() == v) {
                shortest = r;
                break;
            }
        }
        String digits = shortest.unscaledValue().abs().toString().replaceAll("0+$", "");
        if (digits.isEmpty()) {
            digits = "0";
        }
        // value = 0.d1d2d3... * 10^(exp10 + 1), with exp10 the exponent of the first digit
        int exp10 = shortest.precision() - shortest.scale() - 1;
        String sign = v < 0 ? "-" : "";
        if (exp10 >= -4 && exp10 < 16) {
            String text;
            if (exp10 < 0) {
                text = "0." + "0".repeat(-exp10 - 1) + digits;
            } else if (digits.length() <= exp10 + 1) {
                text = digits + "0".repeat(exp10 + 1 - digits.length()) + ".0";
            } else {
                text = digits.substring(0, exp10 + 1) + "." + digits.substring(exp10 + 1);
            }
            return sign + text;
        }
        String mantissa = digits.length() == 1 ? digits : digits.charAt(0) + "." + digits.substring(1);
        String e = String.format("%02d", Math.abs(exp10));
        return sign + mantissa + "e" + (exp10 < 0 ? "-" : "+") + e;
    }
}
