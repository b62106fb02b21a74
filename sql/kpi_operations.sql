-- Operation KPIs: success ratio and duration percentiles (p50, p90, p97, max) of each
-- operation, overall and per cell, host, image and hour (one grouping set each; `dimension` names
-- it, the other dimensions are NULL on its rows). DuckDB SQL over the tables as pyiceberg reads them: `requests`
-- (current rows, `operations` as its JSON text) and `instances` (current rows, for the image).
-- An operation counts once it ended (ok or error); open and unfinished ones are left out.
-- One seen only as its error (no start) counts in the ratio, not in the durations.
-- `stacktide kpi` runs it; any engine with JSON and quantiles can run its equivalent.
WITH operations AS (
  SELECT o.operation, o.cell, o.host, o.instance_id, o.outcome, o.duration_s,
         CAST(o."end" AS TIMESTAMPTZ) AS ended
  FROM (
    SELECT unnest(from_json(operations,
      '[{"operation":"VARCHAR","instance_id":"VARCHAR","cell":"VARCHAR","host":"VARCHAR",
         "start":"VARCHAR","end":"VARCHAR","duration_s":"DOUBLE","outcome":"VARCHAR"}]')) AS o
    FROM requests
  )
  WHERE o.outcome IN ('ok', 'error')
)
SELECT
  CASE WHEN grouping(op.cell) = 0 THEN 'cell' WHEN grouping(op.host) = 0 THEN 'host'
       WHEN grouping(i.image_ref) = 0 THEN 'image'
       WHEN grouping(date_trunc('hour', op.ended)) = 0 THEN 'hour' ELSE 'operation' END AS dimension,
  op.operation,
  op.cell,
  op.host,
  i.image_ref AS image,
  date_trunc('hour', op.ended) AS hour,
  count(*) AS n,
  avg(CASE WHEN op.outcome = 'ok' THEN 1.0 ELSE 0.0 END) AS success_ratio,
  quantile_cont(op.duration_s, 0.50) AS p50_s,
  quantile_cont(op.duration_s, 0.90) AS p90_s,
  quantile_cont(op.duration_s, 0.97) AS p97_s,
  max(op.duration_s) AS max_s
FROM operations op
LEFT JOIN instances i ON i.instance_id = op.instance_id
GROUP BY GROUPING SETS ((op.operation), (op.operation, op.cell), (op.operation, op.host),
                        (op.operation, i.image_ref), (op.operation, date_trunc('hour', op.ended)))
ORDER BY dimension, operation, cell, host, image, hour
