-- Current revisions of live policies, filtered; keyset pagination on id.
SELECT p.id, r.namespace, r.revision, r.status, r.document::text, r.text, r.hash, r.author,
       r.tags, p.created_at, r.created_at, false
  FROM policies p
  JOIN policy_revisions r ON r.policy_id = p.id AND r.revision = p.current_revision
 WHERE p.deleted_at IS NULL
   AND (%(after)s::text IS NULL OR p.id COLLATE "C" > %(after)s)
   AND (%(namespace)s::text IS NULL OR p.namespace = %(namespace)s)
   AND (%(status)s::text IS NULL OR p.status = %(status)s)
   AND (%(tag)s::text IS NULL OR p.tags @> ARRAY[%(tag)s::text])
 ORDER BY p.id COLLATE "C"
 LIMIT %(limit)s
