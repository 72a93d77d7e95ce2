-- The datadump table as the application's hand-written schema script created it, before the
-- project moved to managed migrations: request and response headers stored as hstore.
CREATE EXTENSION IF NOT EXISTS hstore;

CREATE TABLE datadump (
    id SERIAL PRIMARY KEY,
    url VARCHAR NOT NULL,
    service VARCHAR NOT NULL,
    method VARCHAR NOT NULL,
    request_header hstore,
    response_body TEXT,
    response_header hstore,
    parsed BOOLEAN DEFAULT FALSE,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT uq_api_response UNIQUE (url, service, method)
);
