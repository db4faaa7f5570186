-- Per-connection staging table that COPY fills; emptied at each commit.
CREATE TEMP TABLE IF NOT EXISTS decision_log_staging (
    request_id       text,
    created_at       timestamptz,
    policy_set       text,
    decision         text,
    matched_policies text[],
    matched_rules    text[],
    reason           text,
    context_digest   text,
    context          jsonb,
    detail           jsonb,
    latency_ms       double precision
) ON COMMIT DELETE ROWS
