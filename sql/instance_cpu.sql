-- CPU used against vCPU allocated, per instance and usage period (usage.period: an hour unless
-- configured otherwise), for a batch run over the tables.
-- Used: the increase of each instance's `cpu` counter (nanoseconds) in host_samples, between
-- consecutive readings in `last_at` order. A counter that went down began again at zero (the
-- domain restarted, or migrated: the series is the instance's, whatever host reported it), so
-- its increase is its new value; an instance's first reading has no baseline and adds nothing.
-- An increase counts in the period its reading falls in (at most one poll interval early).
-- Allocated: vCPU-seconds of the current instance_usage rows, `microseconds * vcpus / 1e6`,
-- summed over the flavors of the period (a resize). ${current_usage} is sql/current_rows.sql
-- over instance_usage; ${period_s} the period in seconds. Periods start at multiples of it
-- from the epoch (UTC), as the instance job cuts them.
-- Either side may be missing: an instance with samples and no nova usage (a domain nova does not
-- know of) has no allocation; an instance nova bills without samples has no CPU used.
-- `period_start` comes out as a TIMESTAMP in the session's time zone (PyFlink cannot hand a
-- TIMESTAMP_LTZ computed here back to Python).
WITH readings AS (
  SELECT `instance_id`, `last`,
         LAG(`last`) OVER (PARTITION BY `instance_id` ORDER BY `last_at`) AS prev_last,
         TIMESTAMPDIFF(SECOND, TO_TIMESTAMP_LTZ(0, 3), `last_at`) AS at_s
  FROM ${samples}
  WHERE `meter` = 'cpu' AND `last` IS NOT NULL
),
used AS (
  SELECT `instance_id`,
         CAST(TO_TIMESTAMP_LTZ(CAST(at_s - MOD(at_s, ${period_s}) AS BIGINT), 0)
              AS TIMESTAMP_LTZ(6)) AS `period_start`,
         COUNT(*) AS readings,
         COALESCE(SUM(CASE
           WHEN prev_last IS NULL THEN CAST(NULL AS DOUBLE)
           WHEN `last` >= prev_last THEN `last` - prev_last
           ELSE `last`
         END), 0) AS used_ns
  FROM readings
  GROUP BY `instance_id`, at_s - MOD(at_s, ${period_s})
),
allocated AS (
  SELECT `instance_id`, `period_start`, MAX(`tenant_id`) AS `tenant_id`,
         SUM(CAST(`microseconds` AS DOUBLE) * COALESCE(`vcpus`, 0)) / 1000000 AS vcpu_s
  FROM (${current_usage})
  WHERE `microseconds` > 0
  GROUP BY `instance_id`, `period_start`
)
SELECT COALESCE(a.`instance_id`, u.`instance_id`) AS `instance_id`,
       CAST(COALESCE(a.`period_start`, u.`period_start`) AS TIMESTAMP(6)) AS `period_start`,
       a.`tenant_id` AS `tenant_id`,
       u.readings AS `cpu_readings`,
       u.used_ns / 1000000000 AS `cpu_seconds`,
       a.vcpu_s AS `vcpu_seconds`,
       CASE WHEN a.vcpu_s > 0 AND u.used_ns IS NOT NULL
            THEN u.used_ns / 1000000000 / a.vcpu_s END AS `cpu_ratio`
FROM allocated a
FULL OUTER JOIN used u
  ON a.`instance_id` = u.`instance_id` AND a.`period_start` = u.`period_start`
