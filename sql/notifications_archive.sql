-- Raw archive: every notification once, into the Iceberg table `notifications`.
-- The bridge is at-least-once, so a redelivered notification arrives again with the
-- same message_id; keeping the first row per message_id (processing time) is an
-- append-only deduplication in Flink, so the Iceberg sink only appends, and the
-- sink commits on each checkpoint: exactly once end to end.
INSERT INTO ${target}
SELECT ${columns}
FROM (
  SELECT *,
         ROW_NUMBER() OVER (PARTITION BY message_id ORDER BY proc_time ASC) AS row_num
  FROM ${source}
)
WHERE row_num = 1
