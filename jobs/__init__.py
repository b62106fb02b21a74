"""PyFlink jobs reading the stacktide Kafka topics and writing Iceberg tables."""
