-- Requests that took longer than $threshold_s seconds (first to last notification), the
-- slowest first: what StackTach's report counted as "too long". DuckDB SQL over `requests`.
SELECT request_id, global_request_id, first_at, last_at, duration_s, outcome, event_count,
       error_count, services, instance_ids
FROM requests
WHERE duration_s > $threshold_s
ORDER BY duration_s DESC, request_id
