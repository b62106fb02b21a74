-- The <prefix>.samples Kafka topic as a Flink table (CONTRACT.md §1): one aggregated series per
-- receiver window. ${columns} comes from stacktide.schema.SAMPLE_COLUMNS. `event_time` is when
-- the window's last value arrived (a row-time attribute has millisecond precision at most).
CREATE TEMPORARY TABLE ${table} (
  ${columns},
  event_time AS CAST(`last_at` AS TIMESTAMP_LTZ(3)),
  WATERMARK FOR event_time AS event_time - INTERVAL ${out_of_order_s} SECOND
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
