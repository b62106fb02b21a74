package stacktide.flink;

import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.streaming.api.functions.python.DataStreamPythonFunctionInfo;
import org.apache.flink.streaming.api.operators.python.process.ExternalPythonKeyedCoProcessOperator;
import org.apache.flink.types.Row;

/**
 * PyFlink's keyed two-input (and keyed broadcast) operator, with the timers that the Python
 * function registered in the last bundle before a checkpoint in that checkpoint.
 *
 * <p>The Python worker's timer registrations reach the operator on a gRPC thread, which queues
 * them on the task's mailbox. The bundle that a checkpoint barrier flushes queues its
 * registrations while the checkpoint runs, so the snapshot holds the keyed state those calls
 * wrote but not the timers they registered: after a restore such a key waits for timers that do
 * not exist. PyFlink applies the queue before it advances the watermark; this operator also
 * applies it after the flush before the barrier.
 */
public class CheckpointedTimersCoProcessOperator<OUT>
        extends ExternalPythonKeyedCoProcessOperator<OUT> {

    private static final long serialVersionUID = 1L;

    public CheckpointedTimersCoProcessOperator(
            Configuration config,
            DataStreamPythonFunctionInfo function,
            TypeInformation<Row> regularInput,
            TypeInformation<Row> broadcastInput,
            TypeInformation<OUT> output) {
        super(config, function, regularInput, broadcastInput, output);
    }

    @Override
    public void prepareSnapshotPreBarrier(long checkpointId) throws Exception {
        super.prepareSnapshotPreBarrier(checkpointId);
        drainUnregisteredTimers();
    }
}
