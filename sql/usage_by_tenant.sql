-- Usage per tenant and period, from the current instance_usage rows: instances, seconds of
-- existence and of running, and vCPU-seconds, exact to the microsecond (the integer columns;
-- `seconds` and `running_seconds` are the same values as doubles, for display).
-- ${current_usage} is sql/current_rows.sql over instance_usage.
SELECT `tenant_id`, `period_start`,
       COUNT(DISTINCT `instance_id`) AS `instances`,
       SUM(`microseconds`) AS `microseconds`,
       SUM(`running_microseconds`) AS `running_microseconds`,
       SUM(`microseconds` * COALESCE(`vcpus`, 0)) AS `vcpu_microseconds`
FROM (${current_usage})
WHERE `microseconds` > 0 OR `running_microseconds` > 0
GROUP BY `tenant_id`, `period_start`
