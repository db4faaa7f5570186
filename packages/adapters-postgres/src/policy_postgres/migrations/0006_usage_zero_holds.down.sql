-- Back to 0004: every reservation locks its keys and is summed.
DROP INDEX IF EXISTS usage_reservations_held;
CREATE INDEX usage_reservations_key ON usage_reservations (key, expires_at);

CREATE OR REPLACE FUNCTION usage_fetch(p jsonb) RETURNS jsonb
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
