-- The stacktide.notifications Kafka topic as a Flink table (CONTRACT.md §1).
-- Columns come from stacktide.schema.ENVELOPE_COLUMNS; ${columns} is filled from it.
-- `payload` is declared STRING: Flink's JSON format hands a nested object over as its JSON text.
CREATE TEMPORARY TABLE ${table} (
  ${columns},
  proc_time AS PROCTIME()
) WITH (
  'connector' = 'kafka',
  'topic' = ${topic},
  'properties.bootstrap.servers' = ${bootstrap_servers},
  'properties.group.id' = ${group_id},
  'properties.auto.offset.reset' = 'earliest',
  'scan.startup.mode' = 'group-offsets',
  'scan.bounded.mode' = ${bounded_mode},
  'format' = 'json',
  'json.timestamp-format.standard' = 'ISO-8601',
  'json.fail-on-missing-field' = 'false',
  'json.ignore-parse-errors' = 'false'
)
