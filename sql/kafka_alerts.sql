-- The alerts topic (<prefix>.alerts): one JSON object per correlated error, keyed by its
-- request, written as soon as the request job sees the error. At-least-once: records go out
-- when the producer sends them, not when a checkpoint completes (an exactly-once sink would
-- hold them in a transaction until the checkpoint), so an alert may repeat after a restart;
-- its `message_id` tells a repeat.
CREATE TEMPORARY TABLE ${table} (
  `key` STRING,
  `value` STRING
) WITH (
  'connector' = 'kafka',
  'topic' = ${topic},
  'properties.bootstrap.servers' = ${bootstrap_servers},
  'properties.linger.ms' = '0',
  'sink.delivery-guarantee' = 'at-least-once',
  'key.format' = 'raw',
  'key.fields' = 'key',
  'value.format' = 'raw',
  'value.fields-include' = 'EXCEPT_KEY'
)
