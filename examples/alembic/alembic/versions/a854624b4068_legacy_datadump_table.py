"""legacy datadump table

The datadump table exactly as the application's hand-written schema script
(create_datadump_table()) created it before the project moved to Alembic:
request and response headers stored as hstore. A database that already has
this table is brought under Alembic with `alembic stamp a854624b4068`.

Revision ID: a854624b4068
Revises:
Create Date: 2023-09-15 12:00:00

"""
from typing import Sequence, Union

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "a854624b4068"
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # The schema script's own statements, verbatim.
    op.execute("CREATE EXTENSION IF NOT EXISTS hstore")
    op.execute(
        """
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
        )
        """
    )


def downgrade() -> None:
    op.drop_table("datadump")
    op.execute("DROP EXTENSION IF EXISTS hstore")
