"""SQLAlchemy store: ``open_database`` + ``Database.session()``; queries live in ``store.repo``."""

from fundus_review.store.db import Database, open_database

__all__ = ["Database", "open_database"]
