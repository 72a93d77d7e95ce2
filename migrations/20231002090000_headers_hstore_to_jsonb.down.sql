-- Back to hstore, keeping every key and value: JSON null becomes an hstore NULL value, any
-- other JSON value its text form. A NULL column stays NULL (the function is STRICT); an empty
-- object becomes an empty hstore. The helper lives in pg_temp, so it leaves nothing behind.
CREATE FUNCTION pg_temp.pgfresh_jsonb_to_hstore(j JSONB) RETURNS hstore
    LANGUAGE sql IMMUTABLE STRICT
    AS $$
        SELECT hstore(
            COALESCE(array_agg(key ORDER BY key), '{}'::text[]),
            COALESCE(array_agg(value ORDER BY key), '{}'::text[])
        )
        FROM jsonb_each_text(j)
    $$;

ALTER TABLE datadump
    ALTER COLUMN request_header TYPE hstore USING pg_temp.pgfresh_jsonb_to_hstore(request_header),
    ALTER COLUMN response_header TYPE hstore USING pg_temp.pgfresh_jsonb_to_hstore(response_header);

DROP FUNCTION pg_temp.pgfresh_jsonb_to_hstore(JSONB);
