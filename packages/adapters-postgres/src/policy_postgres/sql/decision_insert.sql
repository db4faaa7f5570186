-- Move the staged batch into the log, skipping request ids already stored
-- (a replay, or the same id twice in one batch): idempotent by construction.
WITH fresh AS (
    INSERT INTO decision_log_ids (request_id)
    SELECT DISTINCT request_id FROM decision_log_staging
    ON CONFLICT (request_id) DO NOTHING
    RETURNING request_id
)
INSERT INTO decision_log
    (request_id, created_at, policy_set, decision, matched_policies, matched_rules,
     reason, context_digest, context, detail, latency_ms)
SELECT DISTINCT ON (s.request_id)
       s.request_id, s.created_at, s.policy_set, s.decision, s.matched_policies,
       s.matched_rules, s.reason, s.context_digest, s.context, s.detail, s.latency_ms
  FROM decision_log_staging s
  JOIN fresh USING (request_id)
 ORDER BY s.request_id, s.created_at
