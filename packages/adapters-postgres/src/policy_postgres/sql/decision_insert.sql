-- Move the staged batch into the log, skipping request ids already stored
-- (a replay, or the same id twice in one batch): idempotent by construction.
-- A skipped record that is not a replay of a stored link keeps its link in
-- decision_log_duplicates, so that its writer's chain has no gap.
-- Each document is taken apart once (jsonb_to_record), not once per column: an
-- operator per column read the whole document again, about 40 % of this
-- statement's CPU with a prompt in the context.
WITH rows AS (
    SELECT r.*, s.doc
      FROM decision_log_staging s,
           jsonb_to_record(s.doc) AS r(
               request_id text, created_at timestamptz, policy_set text, decision text,
               matched_policies text[], matched_rules text[], reason text,
               context_digest text, context jsonb, detail jsonb,
               latency_ms double precision, chain jsonb)
), staged AS (
    SELECT DISTINCT ON (request_id) *
      FROM rows
     ORDER BY request_id, (chain ->> 'seq')::bigint NULLS LAST
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
    SELECT s.request_id, s.created_at, s.policy_set, s.decision,
           coalesce(s.matched_policies, '{}'), coalesce(s.matched_rules, '{}'),
           s.reason, s.context_digest, s.context, s.detail, s.latency_ms,
           s.chain ->> 'writer', (s.chain ->> 'seq')::bigint,
           s.chain ->> 'prev', s.chain ->> 'hash'
      FROM staged s
      JOIN fresh USING (request_id)
    RETURNING chain_writer, chain_seq
)
INSERT INTO decision_log_duplicates (chain_writer, chain_seq, request_id, doc)
SELECT d.chain ->> 'writer', (d.chain ->> 'seq')::bigint, d.request_id, d.doc
  FROM rows d
 WHERE jsonb_typeof(d.chain) = 'object'
   AND NOT EXISTS (SELECT 1 FROM stored s
                    WHERE s.chain_writer = d.chain ->> 'writer'
                      AND s.chain_seq = (d.chain ->> 'seq')::bigint)
   AND NOT EXISTS (SELECT 1 FROM decision_log l
                    WHERE l.chain_writer = d.chain ->> 'writer'
                      AND l.chain_seq = (d.chain ->> 'seq')::bigint)
ON CONFLICT (chain_writer, chain_seq) DO NOTHING
