DROP TABLE policy_revisions;
DROP FUNCTION policy_revisions_immutable();
DROP TABLE policies;
