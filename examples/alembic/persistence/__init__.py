"""The application's persistence layer: SQLAlchemy models whose metadata Alembic compares against."""

from persistence.models import APIResponse, Base

__all__ = ["APIResponse", "Base"]
