-- Move the staged batch into the log, skipping request ids already stored
-- (a replay, or the same id twice in one batch): idempotent by construction.
-- A skipped record that is not a replay of a stored link keeps its link in
-- decision_log_duplicates, so that its writer's chain has no gap.
WITH staged AS (
    SELECT DISTINCT ON (doc ->> 'request_id') doc ->> 'request_id' AS request_id, doc
      FROM decision_log_staging
     ORDER BY doc ->> 'request_id', (doc -> 'chain' ->> 'seq')::bigint NULLS LAST
), fresh AS (
    INSERT INTO decision_log_ids (request_id)
    SELECT request_id FROM staged
    ON CONFLICT (request_id) DO NOTHING
    RETURNING request_id
), stored AS (
    INSERT INTO decision_log
        (request_id, created_at, policy_set, decision, matched_policies, matched_rules,
         reason, context_digest, context, detail, latency_ms,
         chain_writer, chain_seq, chain_prev, chain_hash)
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
           (s.doc ->> 'latency_ms')::double precision,
           s.doc -> 'chain' ->> 'writer',
           (s.doc -> 'chain' ->> 'seq')::bigint,
           s.doc -> 'chain' ->> 'prev',
           s.doc -> 'chain' ->> 'hash'
      FROM staged s
      JOIN fresh USING (request_id)
    RETURNING chain_writer, chain_seq
)
INSERT INTO decision_log_duplicates (chain_writer, chain_seq, request_id, doc)
SELECT d.doc -> 'chain' ->> 'writer', (d.doc -> 'chain' ->> 'seq')::bigint,
       d.doc ->> 'request_id', d.doc
  FROM decision_log_staging d
 WHERE jsonb_typeof(d.doc -> 'chain') = 'object'
   AND NOT EXISTS (SELECT 1 FROM stored s
                    WHERE s.chain_writer = d.doc -> 'chain' ->> 'writer'
                      AND s.chain_seq = (d.doc -> 'chain' ->> 'seq')::bigint)
   AND NOT EXISTS (SELECT 1 FROM decision_log l
                    WHERE l.chain_writer = d.doc -> 'chain' ->> 'writer'
                      AND l.chain_seq = (d.doc -> 'chain' ->> 'seq')::bigint)
ON CONFLICT (chain_writer, chain_seq) DO NOTHING
