-- The database schema at the newest migration, read from the PostgreSQL catalogs by pgfresh.
-- Generated: `pgfresh check --update` rewrites this file, and `pgfresh check` fails when the
-- migrations stop producing it. Review its diff like code; do not edit it by hand.

-- extensions

CREATE EXTENSION hstore WITH SCHEMA public;

-- sequences

CREATE SEQUENCE public.datadump_id_seq AS integer INCREMENT 1 MINVALUE 1 MAXVALUE 2147483647 START 1 CACHE 1 OWNED BY public.datadump.id;

-- tables

CREATE TABLE public.datadump (
    id integer NOT NULL DEFAULT nextval('public.datadump_id_seq'::regclass),
    url character varying NOT NULL,
    service character varying NOT NULL,
    method character varying NOT NULL,
    request_header jsonb,
    response_body text,
    response_header jsonb,
    parsed boolean DEFAULT false,
    created_at timestamp without time zone NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- constraints

ALTER TABLE public.datadump ADD CONSTRAINT datadump_pkey PRIMARY KEY (id);

ALTER TABLE public.datadump ADD CONSTRAINT uq_api_response UNIQUE (url, service, method);
