-- Policies: a current pointer per id, and immutable revisions.
CREATE TABLE policies (
    id               text PRIMARY KEY,
    namespace        text        NOT NULL,
    status           text        NOT NULL CHECK (status IN ('active', 'draft', 'deprecated')),
    tags             text[]      NOT NULL DEFAULT '{}',
    current_revision integer     NOT NULL CHECK (current_revision > 0),
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    deleted_at       timestamptz,
    deleted_by       text
);

CREATE INDEX policies_live_namespace_idx ON policies (namespace, id) WHERE deleted_at IS NULL;
CREATE INDEX policies_tags_idx ON policies USING gin (tags);

CREATE TABLE policy_revisions (
    policy_id  text        NOT NULL REFERENCES policies (id),
    revision   integer     NOT NULL CHECK (revision > 0),
    namespace  text        NOT NULL,
    status     text        NOT NULL,
    tags       text[]      NOT NULL DEFAULT '{}',
    text       text        NOT NULL,   -- the document exactly as submitted
    document   jsonb       NOT NULL,   -- the document as JSON (normalised)
    hash       text        NOT NULL,   -- sha256 of the canonical JSON
    author     text,
    summary    text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL,
    PRIMARY KEY (policy_id, revision)
);

-- Revisions are an audit trail: refuse to rewrite or remove one.
CREATE FUNCTION policy_revisions_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'policy revisions are immutable (%.%)', OLD.policy_id, OLD.revision;
END;
$$;

CREATE TRIGGER policy_revisions_no_rewrite
    BEFORE UPDATE OR DELETE ON policy_revisions
    FOR EACH ROW EXECUTE FUNCTION policy_revisions_immutable();
