-- Compare-and-set of the current revision; the row lock serialises concurrent
-- writers and READ COMMITTED re-checks the WHERE after the lock is granted.
UPDATE policies
   SET namespace = %(namespace)s,
       status = %(status)s,
       tags = %(tags)s,
       current_revision = current_revision + 1,
       updated_at = %(now)s
 WHERE id = %(id)s
   AND deleted_at IS NULL
   AND current_revision = %(expected)s
RETURNING current_revision, created_at
