-- The stacktide.notifications Kafka topic as the keyed instance job reads it: the columns of
-- kafka_notifications.sql, but the times kept as the envelope's text (ISO-8601 UTC with
-- microseconds, which Python reads exactly; Flink hands a TIMESTAMP_LTZ(6) to Python not at
-- all), and `event_time`, the milliseconds of `generated` (watermarks take no finer), as
-- the event time. The watermark trails the newest time seen by
-- ${out_of_order_s} seconds: events that much out of order still count as on time; later
-- ones are late events, which the job still folds in (correcting rows it already wrote) up
-- to its allowed lateness. Without state to resume from, the job reads the topic from its
-- earliest offset (${startup_mode}): an instance's state is a function of its whole history.
-- A partition silent for ${idle_timeout} stops holding the watermark back ('0 ms': never; what
-- bounded runs use, see JobsConfig in stacktide/config.py).
-- The format, ${format}, reads each envelope in one pass and hands on the payload as the
-- JSON text it is on the topic (jvm/operators: stacktide.flink.EnvelopeFormatFactory); a
-- missing field is null, a message that is not a JSON object fails the source.
CREATE TEMPORARY TABLE ${table} (
  ${columns},
  `event_time` AS TO_TIMESTAMP(SUBSTRING(`generated` FROM 1 FOR 23), 'yyyy-MM-dd''T''HH:mm:ss.SSS'),
  WATERMARK FOR `event_time` AS `event_time` - INTERVAL ${out_of_order_s} SECOND
) WITH (
  'connector' = 'kafka',
  'topic' = ${topic},
  'properties.bootstrap.servers' = ${bootstrap_servers},
  'properties.group.id' = ${group_id},
  'properties.auto.offset.reset' = 'earliest',
  'scan.startup.mode' = ${startup_mode},
  'scan.bounded.mode' = ${bounded_mode},
  'scan.watermark.idle-timeout' = ${idle_timeout},
  'format' = ${format}
)
