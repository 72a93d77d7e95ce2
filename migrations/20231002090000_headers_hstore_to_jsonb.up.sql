-- The first managed migration: both header columns from hstore to JSONB, matching the ORM
-- model ApiResponse. Every key and value is kept; hstore values are text or NULL, so they
-- become JSON strings or JSON null.
ALTER TABLE datadump
    ALTER COLUMN request_header TYPE JSONB USING hstore_to_jsonb(request_header),
    ALTER COLUMN response_header TYPE JSONB USING hstore_to_jsonb(response_header);
