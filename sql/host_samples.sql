-- Samples into `host_samples`, with a per-window rate for counters.
-- Each series' row is paired with its previous row (an OVER window of two rows per host,
-- resource and meter, in event time): the counter's increase is `last` minus the previous
-- `last`, or `last` itself when the counter went down (the domain restarted or migrated and its
-- counter began again at zero); the rate is that increase over the seconds between the two
-- readings. The first row of a series, and gauges, have no rate. The sums run in DECIMAL so
-- that nanosecond counters stay exact. Append only: each window is a row of its own.
INSERT INTO ${target}
SELECT `host`, `resource_id`, `instance_id`, `device`, `meter`, `unit`, `kind`, `window_start`,
       `window_end`, `last_at`, `count`, `min`, `max`, `sum`, `last`,
       CASE
         WHEN `kind` <> 'counter' OR pair_rows < 2 OR t - prev_t <= 0 THEN CAST(NULL AS DOUBLE)
         WHEN `last` >= prev_last THEN CAST((`last` - prev_last) / (t - prev_t) AS DOUBLE)
         ELSE CAST(`last` / (t - prev_t) AS DOUBLE)
       END AS `rate`
FROM (
  SELECT p.*, pair_last - CAST(`last` AS DECIMAL(38, 6)) AS prev_last, pair_t - t AS prev_t
  FROM (
    SELECT s.*,
           COUNT(*) OVER w AS pair_rows,
           SUM(CAST(`last` AS DECIMAL(38, 6))) OVER w AS pair_last,
           SUM(t) OVER w AS pair_t
    FROM (
      SELECT k.*,
             CAST(TIMESTAMPDIFF(SECOND, TO_TIMESTAMP_LTZ(0, 3), event_time) AS DECIMAL(38, 6))
               + CAST(MOD(EXTRACT(MILLISECOND FROM event_time), 1000) AS DECIMAL(38, 6)) / 1000 AS t
      FROM ${source} k
    ) s
    WINDOW w AS (PARTITION BY `host`, `resource_id`, `meter` ORDER BY event_time
                 ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
  ) p
)
