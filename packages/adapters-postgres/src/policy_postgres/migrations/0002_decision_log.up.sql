-- The decision log, partitioned by month of created_at. Rows outside any
-- monthly partition land in the default one; the writer creates the month's
-- partition before inserting into it.
CREATE TABLE decision_log (
    request_id       text             NOT NULL,
    created_at       timestamptz      NOT NULL,
    policy_set       text             NOT NULL,
    decision         text             NOT NULL,
    matched_policies text[]           NOT NULL DEFAULT '{}',
    matched_rules    text[]           NOT NULL DEFAULT '{}',
    reason           text,
    context_digest   text             NOT NULL,
    context          jsonb            NOT NULL,  -- redact obligations already applied
    detail           jsonb            NOT NULL,  -- the full decision
    latency_ms       double precision NOT NULL,
    PRIMARY KEY (created_at, request_id)
) PARTITION BY RANGE (created_at);

CREATE TABLE decision_log_default PARTITION OF decision_log DEFAULT;

CREATE INDEX decision_log_request_idx ON decision_log (request_id);
CREATE INDEX decision_log_decision_idx ON decision_log (decision, created_at);
CREATE INDEX decision_log_policies_idx ON decision_log USING gin (matched_policies);

-- A partitioned table cannot have a unique index without the partition key,
-- so request-id idempotency is kept in this small table of ids.
CREATE TABLE decision_log_ids (
    request_id text PRIMARY KEY
);

CREATE FUNCTION decision_log_ensure_partition(at timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    month_start timestamptz := date_trunc('month', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    part_name   text := 'decision_log_' || to_char(at AT TIME ZONE 'UTC', 'YYYY_MM');
BEGIN
    IF to_regclass(quote_ident(current_schema()) || '.' || part_name) IS NOT NULL THEN
        RETURN;
    END IF;
    EXECUTE format(
        'CREATE TABLE IF NOT EXISTS %I.%I PARTITION OF %I.decision_log FOR VALUES FROM (%L) TO (%L)',
        current_schema(), part_name, current_schema(),
        month_start, month_start + interval '1 month'
    );
EXCEPTION WHEN duplicate_table THEN
    NULL;  -- another writer created it meanwhile
END;
$$;
