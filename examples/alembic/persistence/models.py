"""SQLAlchemy models, matching the schema that `alembic upgrade head` produces.

`alembic check` compares `Base.metadata` with a migrated database (types and server defaults
included, see alembic/env.py), so a change here needs a revision under alembic/versions/.
"""

from datetime import datetime
from typing import Any, Optional

from sqlalchemy import Boolean, DateTime, Integer, String, Text, UniqueConstraint, false, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class APIResponse(Base):
    """One recorded call to an upstream API: the request, the raw response, and whether it was parsed."""

    __tablename__ = "datadump"
    __table_args__ = (UniqueConstraint("url", "service", "method", name="uq_api_response"),)

    # SERIAL PRIMARY KEY: an integer primary key gets its sequence default from PostgreSQL.
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(String, nullable=False)
    service: Mapped[str] = mapped_column(String, nullable=False)
    method: Mapped[str] = mapped_column(String, nullable=False)
    request_header: Mapped[Optional[dict[str, Any]]] = mapped_column(JSONB, nullable=True)
    response_body: Mapped[Optional[str]] = mapped_column(Text, nullable=True)
    response_header: Mapped[Optional[dict[str, Any]]] = mapped_column(JSONB, nullable=True)
    parsed: Mapped[Optional[bool]] = mapped_column(Boolean, nullable=True, server_default=false())
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=False), nullable=False, server_default=func.current_timestamp()
    )

    def __repr__(self) -> str:
        return f"APIResponse(id={self.id!r}, service={self.service!r}, method={self.method!r}, url={self.url!r})"
