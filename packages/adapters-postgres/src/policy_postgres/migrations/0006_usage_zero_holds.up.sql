-- A reservation of 0 (a request whose cost cannot be estimated, e.g. an unknown model or
-- no llm fields at all) adds nothing to any budget: it neither waits for the key's row
-- lock nor is summed. Before, every such request locked the key's row and summed every
-- open hold of the key (10 minutes of them): at 170 evaluations/s on one team key the
-- sum covered ~100,000 rows inside the lock and the throughput of the key fell from 336
-- to 71 evaluations/s within three minutes (make reliability's soak, 2026-12-02).
-- The zero rows stay (a settlement needs their keys) but only holds > 0 are indexed.
DROP INDEX IF EXISTS usage_reservations_key;
CREATE INDEX usage_reservations_held ON usage_reservations (key, expires_at) INCLUDE (amount)
    WHERE amount > 0;

CREATE OR REPLACE FUNCTION usage_fetch(p jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    now_s   double precision := (p->>'now')::double precision;
    rec     boolean := coalesce((p->>'record')::boolean, true);
    res     jsonb := p->'reserve';
    holding boolean := rec AND jsonb_typeof(p->'reserve') = 'object';
    -- Only a hold > 0 changes what others read: only it takes the keys' row locks.
    locking boolean := holding AND coalesce((res->>'amount')::double precision, 0) > 0;
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
                       CASE WHEN locking THEN res->'keys' ELSE '[]'::jsonb END) AS k
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
                       WHERE key = b->>'key' AND expires_at > now_s AND amount > 0), 0));
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
