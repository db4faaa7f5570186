-- The tamper-evident decision log: each record's place in its writer's hash
-- chain (see policy_core.services.decision_chain). NULL on rows stored before.
ALTER TABLE decision_log
    ADD COLUMN chain_writer text,
    ADD COLUMN chain_seq    bigint,
    ADD COLUMN chain_prev   text,
    ADD COLUMN chain_hash   text;

CREATE INDEX decision_log_chain_idx ON decision_log (chain_writer, chain_seq);

-- A record whose request_id was already stored is not stored again, but its
-- link is kept here (with the whole record) so that its writer's chain has no gap.
CREATE TABLE decision_log_duplicates (
    chain_writer text   NOT NULL,
    chain_seq    bigint NOT NULL,
    request_id   text   NOT NULL,
    doc          jsonb  NOT NULL,
    PRIMARY KEY (chain_writer, chain_seq)
);
