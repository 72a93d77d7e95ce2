"""headers hstore to jsonb

Both header columns of datadump from hstore to JSONB, matching the model
APIResponse. Every key and value is kept: hstore values are text or NULL, so
they become JSON strings or JSON null. The downgrade converts back the same way.

Revision ID: 4f539123b6db
Revises: a854624b4068
Create Date: 2023-10-02 09:00:00

"""
from typing import Sequence, Union

from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "4f539123b6db"
down_revision: Union[str, Sequence[str], None] = "a854624b4068"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

HEADER_COLUMNS = ("request_header", "response_header")


def upgrade() -> None:
    for column in HEADER_COLUMNS:
        op.alter_column(
            "datadump",
            column,
            existing_type=postgresql.HSTORE(),
            type_=postgresql.JSONB(),
            existing_nullable=True,
            postgresql_using=f"hstore_to_jsonb({column})",
        )


def downgrade() -> None:
    # JSONB back to hstore, keeping every key and value: JSON null becomes an hstore NULL value,
    # any other JSON value its text form. A NULL column stays NULL (the function is STRICT) and an
    # empty object becomes an empty hstore. A USING expression cannot hold a subquery, hence the
    # helper; it lives in pg_temp, so it leaves nothing behind.
    op.execute(
        """
        CREATE FUNCTION pg_temp.jsonb_to_hstore(j JSONB) RETURNS hstore
            LANGUAGE sql IMMUTABLE STRICT
            AS $$
                SELECT hstore(
                    COALESCE(array_agg(key ORDER BY key), '{}'::text[]),
                    COALESCE(array_agg(value ORDER BY key), '{}'::text[])
                )
                FROM jsonb_each_text(j)
            $$
        """
    )
    for column in HEADER_COLUMNS:
        op.alter_column(
            "datadump",
            column,
            existing_type=postgresql.JSONB(),
            type_=postgresql.HSTORE(),
            existing_nullable=True,
            postgresql_using=f"pg_temp.jsonb_to_hstore({column})",
        )
    op.execute("DROP FUNCTION pg_temp.jsonb_to_hstore(JSONB)")
