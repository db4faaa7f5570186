-- Every stored record in chain order (writer, seq), the links of skipped
-- duplicates among them; records without a chain (stored before chains) last.
SELECT * FROM (
    SELECT request_id, created_at, policy_set, decision, matched_policies, matched_rules, reason,
           context_digest, context::text, detail::text, latency_ms,
           chain_writer, chain_seq, chain_prev, chain_hash
      FROM decision_log
    UNION ALL
    SELECT doc ->> 'request_id', (doc ->> 'created_at')::timestamptz, doc ->> 'policy_set',
           doc ->> 'decision',
           ARRAY(SELECT jsonb_array_elements_text(doc -> 'matched_policies')),
           ARRAY(SELECT jsonb_array_elements_text(doc -> 'matched_rules')),
           doc ->> 'reason', doc ->> 'context_digest', (doc -> 'context')::text,
           (doc -> 'detail')::text, (doc ->> 'latency_ms')::double precision,
           chain_writer, chain_seq, doc -> 'chain' ->> 'prev', doc -> 'chain' ->> 'hash'
      FROM decision_log_duplicates
) AS r
 ORDER BY chain_writer IS NULL, chain_writer COLLATE "C", chain_seq, created_at,
          request_id COLLATE "C"
