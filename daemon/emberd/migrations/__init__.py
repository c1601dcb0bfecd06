"""The registry's schema history as Alembic revisions (``versions/``), run by
``emberd.registry`` when a registry opens (SQLite) or by ``emberd registry upgrade``."""
