-- The rows a keyed Python job processes, keyed in SQL: `key` (${key}, what the job's state
-- is partitioned by) and `value`, the row of ${source}'s columns (${columns}) that the
-- Python function reads by position. The stream is keyed by `key` in the JVM, so no Python
-- operator stands between the Kafka source and the job.
SELECT ${key} AS `key`, ROW(${columns}) AS `value`
FROM ${source}
