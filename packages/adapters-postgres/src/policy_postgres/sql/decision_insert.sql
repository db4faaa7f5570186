-- Move the staged batch into the log, skipping request ids already stored
-- (a replay, or the same id twice in one batch): idempotent by construction.
WITH staged AS (
    SELECT DISTINCT ON (doc ->> 'request_id') doc ->> 'request_id' AS request_id, doc
      FROM decision_log_staging
     ORDER BY doc ->> 'request_id'
), fresh AS (
    INSERT INTO decision_log_ids (request_id)
    SELECT request_id FROM staged
    ON CONFLICT (request_id) DO NOTHING
    RETURNING request_id
)
INSERT INTO decision_log
    (request_id, created_at, policy_set, decision, matched_policies, matched_rules,
     reason, context_digest, context, detail, latency_ms)
SELECT s.request_id,
       (s.doc ->> 'created_at')::timestamptz,
       s.doc ->> 'policy_set',
       s.doc ->> 'decision',
       ARRAY(SELECT jsonb_array_elements_text(s.doc -> 'matched_policies')),
       ARRAY(SELECT jsonb_array_elements_text(s.doc -> 'matched_rules')),
       s.doc ->> 'reason',
       s.doc ->> 'context_digest',
       s.doc -> 'context',
       s.doc -> 'detail',
       (s.doc ->> 'latency_ms')::double precision
  FROM staged s
  JOIN fresh USING (request_id)
