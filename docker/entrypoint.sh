#!/bin/sh
# The entry point of the stacktide image (docker/Dockerfile):
#   jobmanager | taskmanager   a Flink JobManager or TaskManager, in the foreground
#   anything else              a stacktide command: bridge, jobs run, sql, usage, ...
set -eu

flink_classpath() {
    # Hadoop's client and the JDBC drivers on the JVM's system classpath, as for the jobs run
    # locally (the jar cache is verified against jvm/checksums.sha256 on the way), and PyFlink's
    # runtime, which a Flink distribution keeps in opt/: PyFlink's local MiniCluster loads it
    # by itself, a cluster needs it to run (and even accept) a job with Python operators.
    HADOOP_CLASSPATH="$(stacktide local jars --classpath):$(ls "$FLINK_HOME"/opt/flink-python-*.jar)"
    export HADOOP_CLASSPATH
}

case "${1:-}" in
    jobmanager)
        shift
        flink_classpath
        exec "$FLINK_HOME/bin/jobmanager.sh" start-foreground "$@"
        ;;
    taskmanager)
        shift
        flink_classpath
        # Registered under the container's host name: its health check finds itself by it
        # in the JobManager's list of TaskManagers.
        exec "$FLINK_HOME/bin/taskmanager.sh" start-foreground \
            -Dtaskmanager.resource-id="$(hostname)" "$@"
        ;;
    *)
        exec stacktide "$@"
        ;;
esac
