DROP FUNCTION decision_log_ensure_partition(timestamptz);
DROP TABLE decision_log_ids;
DROP TABLE decision_log;
