-- A simple migration of the set `tests/migrate_macro.rs` embeds.
CREATE TABLE users (id BIGINT PRIMARY KEY, name TEXT NOT NULL);
