INSERT INTO policy_revisions
    (policy_id, revision, namespace, status, tags, text, document, hash, author, summary, created_at)
VALUES
    (%(id)s, %(revision)s, %(namespace)s, %(status)s, %(tags)s, %(text)s, %(document)s,
     %(hash)s, %(author)s, %(summary)s, %(now)s)
