"""The workbench's tables (SQLAlchemy 2) and how to reach a database by URL.

SQLite file by default, PostgreSQL by URL (``postgresql+psycopg://...``). The
schema itself is created and changed only by the Alembic migrations beside this
module (``migrations/``); :func:`upgrade` brings any database to the newest one.

What is kept, and why nothing is deleted:

- ``lists`` and ``list_entries``: each imported scoring run (one county, one
  as-of month) and its listed households, with the household's facts as of
  that month. A new quarter adds a list; earlier lists stay as they were.
- ``visits``: one row per home visit, the current version of its outcome;
  ``visit_revisions`` keeps every version (who, when, what), so an edit never
  loses what was recorded before. ``version`` is checked on every edit
  (optimistic locking).
- ``users``, ``sessions``: staff, their role and area, server-side sessions.
- ``security_events``: failed sign-ins, lock-outs, reads refused across areas.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

DEFAULT_DB_URL = "sqlite:///workbench.db"
"""A SQLite file in the working folder: `make demo` and a laptop need nothing started."""

DB_URL_VARIABLE = "RELAPSE_WORKBENCH_DB"
"""Environment variable read by the commands when ``--db`` is not given."""

ROLES = ("county", "township")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class VisitListRecord(Base):
    """One imported scoring run: a county's visit list at one as-of month."""

    __tablename__ = "lists"
    __table_args__ = (UniqueConstraint("county_code", "as_of", name="uq_lists_county_as_of"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    county_code: Mapped[str] = mapped_column(String(6))
    as_of: Mapped[str] = mapped_column(String(7))
    scores_sha256: Mapped[str] = mapped_column(String(64))
    model_name: Mapped[str] = mapped_column(String(100))
    model_version: Mapped[str] = mapped_column(String(40))
    input_fingerprint: Mapped[str] = mapped_column(String(100))
    listed_on: Mapped[dt.date] = mapped_column(Date)
    imported_at: Mapped[dt.datetime] = mapped_column(DateTime)
    households: Mapped[int] = mapped_column(Integer)


class ListEntry(Base):
    """A household on one list: its rank, band, reasons and its facts as of the list's month."""

    __tablename__ = "list_entries"
    __table_args__ = (UniqueConstraint("list_id", "household_id", name="uq_entries_list_household"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id"), index=True)
    household_id: Mapped[str] = mapped_column(String(64), index=True)
    county_code: Mapped[str] = mapped_column(String(6))
    township_code: Mapped[str] = mapped_column(String(9), index=True)
    village_code: Mapped[str] = mapped_column(String(12))
    rank_county: Mapped[int] = mapped_column(Integer)
    rank_township: Mapped[int] = mapped_column(Integer)
    risk_score: Mapped[float] = mapped_column(Float)
    risk_band: Mapped[str] = mapped_column(String(10))
    reasons: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    """Up to three reasons: ``code``, ``family``, ``zh``, ``en``, ``measure``."""
    first_reason: Mapped[str | None] = mapped_column(String(60), nullable=True)
    detail: Mapped[dict[str, object]] = mapped_column(JSON)
    """Income by source, per-capita income against the line, members, events, loans, assistance."""


class Visit(Base):
    """A home visit to a listed household; the row holds the outcome's current version."""

    __tablename__ = "visits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_key: Mapped[str] = mapped_column(String(64), unique=True)
    """Chosen by the form (or API client) before sending: a resent form does not record twice."""
    entry_id: Mapped[int] = mapped_column(ForeignKey("list_entries.id"), index=True)
    household_id: Mapped[str] = mapped_column(String(64), index=True)
    township_code: Mapped[str] = mapped_column(String(9), index=True)
    visit_date: Mapped[dt.date] = mapped_column(Date)
    visitor: Mapped[str] = mapped_column(String(100))
    outcome: Mapped[str] = mapped_column(String(20))
    measures: Mapped[list[str]] = mapped_column(JSON)
    note: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_by: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)

    __mapper_args__ = {"version_id_col": version}


class VisitRevision(Base):
    """Every version of every visit outcome, as it was saved: the audit trail."""

    __tablename__ = "visit_revisions"
    __table_args__ = (UniqueConstraint("visit_id", "version", name="uq_revisions_visit_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    changed_by: Mapped[str] = mapped_column(String(100))
    changed_at: Mapped[dt.datetime] = mapped_column(DateTime)
    values: Mapped[dict[str, object]] = mapped_column(JSON)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(10))
    area_code: Mapped[str] = mapped_column(String(12))
    """A county code (6 digits) for county analysts, a township code (9 digits) for township staff."""
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)


class SessionRecord(Base):
    """A signed-in browser or API client. Only the token's SHA-256 is stored."""

    __tablename__ = "sessions"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    ended: Mapped[bool] = mapped_column(Boolean, default=False)


class SecurityEvent(Base):
    __tablename__ = "security_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    kind: Mapped[str] = mapped_column(String(30))
    """``login_failed``, ``locked``, ``cross_area_read``, ``csrf_refused``."""
    username: Mapped[str] = mapped_column(String(100))
    detail: Mapped[str] = mapped_column(Text)


MIGRATIONS = Path(__file__).parent / "migrations"


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3, the driver the web extra installs."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and foreign keys on every connection."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection, _record):  # type: ignore[no-untyped-def]
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def upgrade(url: str) -> None:
    """Bring the database at ``url`` to the newest schema (Alembic ``upgrade head``); a no-op when current."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    command.upgrade(config, "head")


def session_factory(engine: Engine) -> sessionmaker:  # type: ignore[type-arg]
    return sessionmaker(engine, expire_on_commit=False)
