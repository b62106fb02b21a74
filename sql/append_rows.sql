-- Append the rows a Python operator produced (a view over its output stream) to an Iceberg
-- table. Append only, never upsert: each change of a keyed row is a new row with a higher
-- `revision`, and readers keep the highest revision per key (sql/current_*.sql), because
-- pyiceberg 0.8 cannot read the equality deletes Iceberg's upsert mode writes.
-- ${columns} casts Python's nanosecond instants to the table's microsecond timestamps.
INSERT INTO ${target}
SELECT ${columns}
FROM ${source}
