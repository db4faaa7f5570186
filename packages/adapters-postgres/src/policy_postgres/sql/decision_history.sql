-- Newest first; keyset pagination on (created_at, request_id).
SELECT request_id, created_at, policy_set, decision, matched_policies, matched_rules, reason,
       context_digest, context::text, detail::text, latency_ms,
       chain_writer, chain_seq, chain_prev, chain_hash
  FROM decision_log
 WHERE (%(request_id)s::text IS NULL OR request_id = %(request_id)s)
   AND (%(policy_id)s::text IS NULL OR matched_policies @> ARRAY[%(policy_id)s::text])
   AND (%(decision)s::text IS NULL OR decision = %(decision)s)
   AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s)
   AND (%(until)s::timestamptz IS NULL OR created_at < %(until)s)
   AND (NOT %(shadow_differs)s::boolean OR detail->'shadow'->>'decision' <> decision)
   AND (%(after_at)s::timestamptz IS NULL
        OR (created_at, request_id COLLATE "C") < (%(after_at)s, %(after_id)s::text))
 ORDER BY created_at DESC, request_id COLLATE "C" DESC
 LIMIT %(limit)s
