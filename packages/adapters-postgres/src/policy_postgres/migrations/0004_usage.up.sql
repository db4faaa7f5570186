-- Usage counters behind rate_limit.count and budget.spent (spec 5.6, 7.3), shared by
-- every worker of a node and kept across restarts.

-- One row per counted key: the row an evaluation locks, so that concurrent
-- evaluations of one key read, count and reserve one after the other.
CREATE TABLE usage_keys (
    kind    text             NOT NULL,            -- 'rate' or 'budget'
    key     text             NOT NULL,
    horizon double precision NOT NULL DEFAULT 0,  -- rate: the longest window asked (s)
    PRIMARY KEY (kind, key)
);

-- One row per counted request and key (epoch seconds); older than the horizon: pruned.
CREATE TABLE usage_hits (
    key text             NOT NULL,
    at  double precision NOT NULL
);
CREATE INDEX usage_hits_key_at ON usage_hits (key, at);

-- Settled spend per key and UTC day (a month is the sum of its days).
CREATE TABLE usage_spend (
    key text             NOT NULL,
    day date             NOT NULL,
    usd double precision NOT NULL,
    PRIMARY KEY (key, day)
);

-- Open reservations, one row per reservation and key; counted until expires_at,
-- remembered a day longer for a late settlement.
CREATE TABLE usage_reservations (
    id         text             NOT NULL,
    pos        integer          NOT NULL,
    key        text             NOT NULL,
    amount     double precision NOT NULL,
    expires_at double precision NOT NULL,
    PRIMARY KEY (id, key)
);
CREATE INDEX usage_reservations_key ON usage_reservations (key, expires_at);
CREATE INDEX usage_reservations_expiry ON usage_reservations (expires_at);

-- One UsageStore.fetch in one statement. p:
--   {"now": epoch s, "record": bool, "grace": s,
--    "rates": [{"key": k, "windows": [s, ...]}, ...],
--    "budgets": [{"key": k, "since": "YYYY-MM-DD"}, ...],
--    "reserve": null | {"id", "amount", "expires_at": epoch s, "keys": [k, ...]}}
-- Returns {"rates": [[count per window], ...], "budgets": [usd, ...]}: counts include
-- this request; budgets are settled spend plus open reservations, before this one's.
CREATE FUNCTION usage_fetch(p jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    now_s   double precision := (p->>'now')::double precision;
    rec     boolean := coalesce((p->>'record')::boolean, true);
    res     jsonb := p->'reserve';
    holding boolean := rec AND jsonb_typeof(p->'reserve') = 'object';
    r       jsonb;
    w       jsonb;
    b       jsonb;
    per     jsonb;
    counts  jsonb := '[]'::jsonb;
    spent   jsonb := '[]'::jsonb;
    longest double precision;
    locked  integer;
BEGIN
    IF rec THEN
        -- Lock every key this call counts or reserves on, in one order (no deadlock);
        -- each later statement sees what the previous holder committed.
        WITH wanted AS (
            SELECT 'rate' AS kind, x->>'key' AS key,
                   (SELECT coalesce(max(v::text::double precision), 0)
                      FROM jsonb_array_elements(x->'windows') AS v) AS horizon
              FROM jsonb_array_elements(coalesce(p->'rates', '[]'::jsonb)) AS x
            UNION ALL
            SELECT 'budget', k, 0
              FROM jsonb_array_elements_text(
                       CASE WHEN holding THEN res->'keys' ELSE '[]'::jsonb END) AS k
        ), ins AS (
            INSERT INTO usage_keys AS u (kind, key, horizon)
            SELECT kind, key, max(horizon) FROM wanted GROUP BY kind, key ORDER BY kind, key
            ON CONFLICT (kind, key) DO UPDATE SET horizon = greatest(u.horizon, excluded.horizon)
            RETURNING 1
        )
        SELECT count(*) INTO locked FROM ins;
    END IF;

    FOR r IN SELECT * FROM jsonb_array_elements(coalesce(p->'rates', '[]'::jsonb)) LOOP
        IF rec THEN
            INSERT INTO usage_hits (key, at) VALUES (r->>'key', now_s);
            SELECT horizon INTO longest FROM usage_keys WHERE kind = 'rate' AND key = r->>'key';
            DELETE FROM usage_hits WHERE key = r->>'key' AND at <= now_s - longest;
        END IF;
        per := '[]'::jsonb;
        FOR w IN SELECT * FROM jsonb_array_elements(r->'windows') LOOP
            per := per || to_jsonb((
                SELECT count(*) FROM usage_hits
                 WHERE key = r->>'key' AND at > now_s - w::text::double precision));
        END LOOP;
        counts := counts || jsonb_build_array(per);
    END LOOP;

    FOR b IN SELECT * FROM jsonb_array_elements(coalesce(p->'budgets', '[]'::jsonb)) LOOP
        spent := spent || to_jsonb(
            coalesce((SELECT sum(usd) FROM usage_spend
                       WHERE key = b->>'key' AND day >= (b->>'since')::date), 0)
          + coalesce((SELECT sum(amount) FROM usage_reservations
                       WHERE key = b->>'key' AND expires_at > now_s), 0));
    END LOOP;

    IF holding THEN
        DELETE FROM usage_reservations
         WHERE expires_at <= now_s - coalesce((p->>'grace')::double precision, 86400);
        INSERT INTO usage_reservations (id, pos, key, amount, expires_at)
        SELECT res->>'id', k.pos, k.key, (res->>'amount')::double precision,
               (res->>'expires_at')::double precision
          FROM jsonb_array_elements_text(res->'keys') WITH ORDINALITY AS k(key, pos)
        ON CONFLICT (id, key) DO NOTHING;
    END IF;

    RETURN jsonb_build_object('rates', counts, 'budgets', spent);
END
$$;

-- Settle a reservation: its rows become spend of `usd` on each key for `day`, at once.
-- Returns its keys in order, or NULL when it is unknown (or already settled).
CREATE FUNCTION usage_settle(p_id text, p_usd double precision, p_day date) RETURNS text[]
LANGUAGE sql VOLATILE AS $$
    WITH r AS (
        DELETE FROM usage_reservations WHERE id = p_id RETURNING pos, key
    ), s AS (
        INSERT INTO usage_spend AS u (key, day, usd)
        SELECT key, p_day, p_usd FROM r
        ON CONFLICT (key, day) DO UPDATE SET usd = u.usd + excluded.usd
    )
    SELECT array_agg(key ORDER BY pos) FROM r
$$;
