package stacktide.flink;

import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.python.PythonOptions;
import org.apache.flink.streaming.api.graph.StreamGraphGenerator;
import org.apache.flink.streaming.api.operators.SimpleOperatorFactory;
import org.apache.flink.streaming.api.transformations.python.DelegateOperatorTransformation;
import org.apache.flink.streaming.api.transformations.python.PythonKeyedBroadcastStateTransformation;
import org.apache.flink.streaming.runtime.translators.python.PythonKeyedBroadcastStateTransformationTranslator;
import org.apache.flink.types.Row;

import java.lang.reflect.Field;
import java.util.Collection;
import java.util.Map;

/**
 * Translates a PyFlink keyed broadcast process (process mode, streaming) into a
 * {@link CheckpointedTimersCoProcessOperator}; everything else as PyFlink does.
 *
 * <p>PyFlink registers its own translator each time it configures its operators, so
 * {@link #register()} must run after that and before the stream graph is generated.
 */
public class CheckpointedTimersTranslator<OUT>
        extends PythonKeyedBroadcastStateTransformationTranslator<OUT> {

    @Override
    protected Collection<Integer> translateForStreamingInternal(
            PythonKeyedBroadcastStateTransformation<OUT> transformation, Context context) {
        if ("thread".equals(transformation.getConfiguration().get(PythonOptions.PYTHON_EXECUTION_MODE))) {
            return super.translateForStreamingInternal(transformation, context);
        }
        @SuppressWarnings("unchecked")
        TypeInformation<Row> regular =
                (TypeInformation<Row>) transformation.getRegularInput().getOutputType();
        @SuppressWarnings("unchecked")
        TypeInformation<Row> broadcast =
                (TypeInformation<Row>) transformation.getBroadcastInput().getOutputType();
        CheckpointedTimersCoProcessOperator<OUT> operator =
                new CheckpointedTimersCoProcessOperator<>(
                        transformation.getConfiguration(),
                        transformation.getDataStreamPythonFunctionInfo(),
                        regular,
                        broadcast,
                        transformation.getOutputType());
        DelegateOperatorTransformation.configureOperator(transformation, operator);
        return translateInternal(
                transformation,
                transformation.getRegularInput(),
                transformation.getBroadcastInput(),
                SimpleOperatorFactory.of(operator),
                transformation.getStateKeyType(),
                transformation.getKeySelector(),
                null,
                context);
    }

    /** Puts this translator in place of PyFlink's for keyed broadcast transformations. */
    @SuppressWarnings({"unchecked", "rawtypes"})
    public static void register() throws Exception {
        Field field = StreamGraphGenerator.class.getDeclaredField("translatorMap");
        field.setAccessible(true);
        Object map = field.get(null);
        Field inner = map.getClass().getDeclaredField("m"); // behind Collections.unmodifiableMap
        inner.setAccessible(true);
        ((Map) inner.get(map))
                .put(PythonKeyedBroadcastStateTransformation.class, new CheckpointedTimersTranslator<>());
    }
}
