-- First revision of a new id, or the next revision of a deleted one (numbers continue).
-- Returns no row when a live policy already has the id.
INSERT INTO policies AS p
    (id, namespace, status, tags, current_revision, created_at, updated_at)
VALUES (%(id)s, %(namespace)s, %(status)s, %(tags)s, 1, %(now)s, %(now)s)
ON CONFLICT (id) DO UPDATE
    SET namespace = excluded.namespace,
        status = excluded.status,
        tags = excluded.tags,
        current_revision = p.current_revision + 1,
        created_at = excluded.created_at,
        updated_at = excluded.updated_at,
        deleted_at = NULL,
        deleted_by = NULL
    WHERE p.deleted_at IS NOT NULL
RETURNING current_revision, created_at
