-- The team's own schema, applied once into pgfresh's template and cloned for every test.
CREATE TABLE account (
    id BIGSERIAL PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
