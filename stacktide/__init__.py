"""stacktide: OpenStack notifications to Kafka, Flink and Iceberg."""
