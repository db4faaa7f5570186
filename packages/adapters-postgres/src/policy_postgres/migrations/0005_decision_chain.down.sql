DROP TABLE decision_log_duplicates;
DROP INDEX decision_log_chain_idx;
ALTER TABLE decision_log
    DROP COLUMN chain_writer,
    DROP COLUMN chain_seq,
    DROP COLUMN chain_prev,
    DROP COLUMN chain_hash;
