-- no-transaction
CREATE INDEX CONCURRENTLY users_name ON users (name);
