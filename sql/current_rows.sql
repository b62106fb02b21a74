-- The current rows of a table the keyed instance job revises (instances, instance_usage,
-- usage_audit): rows are appended, each change of a key's row with a higher `revision`, so
-- the current row of a key (${key}) is its highest revision. Any Iceberg reader does the same
-- (stacktide/usage_report.py does it with pyarrow).
SELECT ${columns}
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY ${key} ORDER BY `revision` DESC) AS `row_rank`
  FROM ${table}
)
WHERE `row_rank` = 1
