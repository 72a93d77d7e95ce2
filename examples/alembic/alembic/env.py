"""Alembic environment: the database is DB_URL, the target metadata is persistence.models.

DB_URL is a libpq-style URL (`postgres://` or `postgresql://`, URL-escaped user and password,
query parameters such as `sslmode=require` passed through to libpq); it defaults to
postgresql://postgres:postgres@localhost:5432/qualer. It is handed to SQLAlchemy as a URL object,
never through alembic.ini, so `%` escapes in the password need no doubling, and it is never logged.
"""

import os
import sys
from logging.config import fileConfig
from pathlib import Path

from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from alembic import context

# The project directory (the one holding alembic.ini and persistence/), whatever the working directory.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from persistence.models import Base  # noqa: E402

DEFAULT_DB_URL = "postgresql://postgres:postgres@localhost:5432/qualer"
DRIVER = "postgresql+psycopg"

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def database_url() -> URL:
    """DB_URL (else the default) as a SQLAlchemy URL on the psycopg 3 driver."""
    raw = os.environ.get("DB_URL") or DEFAULT_DB_URL
    try:
        url = make_url(raw)
    except ArgumentError:
        # SQLAlchemy's message repeats the whole string, password included.
        raise SystemExit("DB_URL is not a valid URL (expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE)") from None
    backend, _, driver = url.drivername.partition("+")
    if backend not in ("postgres", "postgresql"):
        raise SystemExit(f"DB_URL must be a postgres:// or postgresql:// URL, not {backend}://")
    if driver not in ("", "psycopg"):
        raise SystemExit(f"DB_URL names the driver {driver!r}; this project uses psycopg 3 (postgresql+psycopg://)")
    return url.set(drivername=DRIVER)


def compare_options() -> dict:
    # `alembic check` also compares column types and server defaults, not only tables and columns.
    return {"target_metadata": target_metadata, "compare_type": True, "compare_server_default": True}


def run_migrations_offline() -> None:
    """`--sql` mode: print the SQL instead of running it."""
    context.configure(
        url=database_url().render_as_string(hide_password=False),
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **compare_options(),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Connect to DB_URL and migrate; the whole run is one transaction (PostgreSQL has transactional DDL)."""
    engine = create_engine(database_url(), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, **compare_options())
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
