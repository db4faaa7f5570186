-- Per-connection staging table that COPY fills with one JSON document per
-- record (the DecisionRecord as encoded by msgspec); emptied at each commit.
-- Run once per connection (the writer remembers it). EXTERNAL storage: a
-- document is read once per batch by decision_insert, and a compressed one
-- (PostgreSQL compresses values over ~2 kB, as most records with a prompt are)
-- cost a decompression there; uncompressed, COPY and the move take about a
-- third less of the server's CPU (docs/benchmarks.md, "Single-node tail").
CREATE TEMP TABLE IF NOT EXISTS decision_log_staging (doc jsonb NOT NULL) ON COMMIT DELETE ROWS;
ALTER TABLE decision_log_staging ALTER COLUMN doc SET STORAGE EXTERNAL
