"""Alembic's entry point for the workbench database: run by :func:`..db.upgrade`, online only."""

from __future__ import annotations

from alembic import context
from relapse_risk.serving.workbench.db import Base, make_engine

config = context.config
engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
