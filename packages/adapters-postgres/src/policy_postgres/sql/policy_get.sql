-- One revision (the current one when %(revision)s is null), deleted policies included.
SELECT p.id, r.namespace, r.revision, r.status, r.document::text, r.text, r.hash, r.author,
       r.tags, p.created_at, r.created_at, p.deleted_at IS NOT NULL
  FROM policies p
  JOIN policy_revisions r
    ON r.policy_id = p.id AND r.revision = coalesce(%(revision)s::integer, p.current_revision)
 WHERE p.id = %(id)s
