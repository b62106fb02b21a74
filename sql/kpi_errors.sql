-- Error counts grouped by masked message, as StackTach's error report grouped them: request
-- ids, UUIDs, IP addresses and numbers masked, so "No valid host for instance <uuid>" of many
-- instances is one line. DuckDB SQL over `errors` (current rows, as pyiceberg reads them).
WITH masked AS (
  SELECT *,
    regexp_replace(regexp_replace(regexp_replace(regexp_replace(
      coalesce(message, exception, event_type),
      'req-[0-9a-fA-F-]{36}', 'REQ_ID', 'g'),
      '[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}', 'UUID', 'g'),
      '([0-9]{1,3}\.){3}[0-9]{1,3}|([0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{0,4}', 'HOST_ADDRESS', 'g'),
      '[0-9]+', 'NUM', 'g') AS masked_message
  FROM errors
)
SELECT masked_message, exception, count(*) AS n,
       count(DISTINCT request_id) AS requests,
       min("at") AS first_at, max("at") AS last_at,
       string_agg(DISTINCT event_type, ', ' ORDER BY event_type) AS event_types,
       string_agg(DISTINCT cell, ', ' ORDER BY cell) AS cells
FROM masked
GROUP BY masked_message, exception
ORDER BY n DESC, masked_message
