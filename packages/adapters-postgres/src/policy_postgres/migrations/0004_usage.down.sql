DROP FUNCTION IF EXISTS usage_settle(text, double precision, date);
DROP FUNCTION IF EXISTS usage_fetch(jsonb);
DROP TABLE IF EXISTS usage_reservations;
DROP TABLE IF EXISTS usage_spend;
DROP TABLE IF EXISTS usage_hits;
DROP TABLE IF EXISTS usage_keys;
