-- Per-connection staging table that COPY fills with one JSON document per
-- record (the DecisionRecord as encoded by msgspec); emptied at each commit.
CREATE TEMP TABLE IF NOT EXISTS decision_log_staging (doc jsonb NOT NULL) ON COMMIT DELETE ROWS
