"""SQLAlchemy store: ``open_database`` + ``Database.session()``; queries live in ``store.repo_*``.

The only package that imports SQLAlchemy or the schema. ``Session`` is re-exported so that code
outside the store can type-hint the session it is handed without importing SQLAlchemy itself.
"""

from sqlalchemy.orm import Session

from fundus_review.store.db import Database, open_database

__all__ = ["Database", "Session", "open_database"]
