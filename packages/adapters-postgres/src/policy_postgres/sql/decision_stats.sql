-- One row per dimension value: (kind, key, count); kind 'latency' carries percentiles.
WITH w AS (
    SELECT decision, matched_policies, matched_rules, latency_ms
      FROM decision_log
     WHERE created_at >= %(since)s AND created_at < %(until)s
)
SELECT 'decision', decision, count(*)::float8, NULL::float8, NULL::float8 FROM w GROUP BY decision
UNION ALL
SELECT 'policy', p, count(*)::float8, NULL, NULL FROM w, unnest(w.matched_policies) AS p GROUP BY p
UNION ALL
SELECT 'rule', r, count(*)::float8, NULL, NULL FROM w, unnest(w.matched_rules) AS r GROUP BY r
UNION ALL
SELECT 'latency', NULL,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY latency_ms),
       percentile_disc(0.95) WITHIN GROUP (ORDER BY latency_ms),
       percentile_disc(0.99) WITHIN GROUP (ORDER BY latency_ms)
  FROM w
HAVING count(*) > 0
