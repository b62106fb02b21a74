-- A keyed job's event clock: the newest `generated` of its input (${source}: the keyed rows
-- of sql/keyed_rows.sql with their event time as `rowtime`), once per
-- minute of event time, when the watermark passes the minute. The job keeps it in broadcast
-- state, which a checkpoint or savepoint holds: at the end of a bounded input the job takes
-- it (less the out-of-orderness) as "now", also in a run resumed after every event was read.
-- `generated` is the one timestamp form on Kafka (fixed width, UTC): the text's maximum is
-- the time's.
SELECT MAX(`value`.`generated`) AS `newest`
FROM TABLE(TUMBLE(TABLE ${source}, DESCRIPTOR(`rowtime`), INTERVAL '1' MINUTE))
GROUP BY `window_start`, `window_end`
