"""The console side of `relapse web`, `relapse users` and `relapse outcomes`."""

from __future__ import annotations

import csv
import datetime as dt
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from relapse_risk.models.visit_outcomes import EXPORT_COLUMNS
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import auth, store
from .db import DB_URL_VARIABLE, DEFAULT_DB_URL, User, make_engine, session_factory, upgrade
from .importer import ImportResult, import_run


def resolve_db_url(url: str | None) -> str:
    """``--db``, else ``RELAPSE_WORKBENCH_DB``, else a SQLite file ``workbench.db`` here."""
    return url or os.environ.get(DB_URL_VARIABLE) or DEFAULT_DB_URL


@contextmanager
def _session(url: str) -> Iterator[Session]:
    """A session on the migrated database at ``url``; its connections are closed afterwards."""
    upgrade(url)
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            yield session
    finally:
        engine.dispose()


def add_user(url: str, username: str, role: str, area: str, password: str) -> None:
    with _session(url) as session, session.begin():
        auth.add_user(session, username, role, area, password)


def set_active(url: str, username: str, active: bool) -> None:
    with _session(url) as session, session.begin():
        auth.set_active(session, username, active)


def list_users(url: str) -> list[dict[str, object]]:
    with _session(url) as session:
        users = session.scalars(select(User).order_by(User.username))
        return [
            {
                "username": u.username,
                "role": u.role,
                "area": u.area_code,
                "active": u.active,
                "locked_until": u.locked_until.isoformat(timespec="minutes") if u.locked_until else "",
                "created_at": u.created_at.isoformat(timespec="minutes"),
            }
            for u in users
        ]


def import_runs(url: str, run: Path, data: Path | None, listed_on: dt.date | None) -> ImportResult:
    with _session(url) as session, session.begin():
        return import_run(session, run, data, listed_on)


def export_outcomes(url: str, out: Path, as_of: str | None = None) -> int:
    """Write the export (EXPORT_COLUMNS, UTF-8 with BOM for spreadsheet programs); the number of rows."""
    with _session(url) as session:
        rows = store.export_rows(session, as_of)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    with partial.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=EXPORT_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    partial.replace(out)
    return len(rows)


def serve(url: str, host: str, port: int, secure_cookies: bool) -> None:
    """Migrate, then serve the app with uvicorn until stopped; uvicorn's own access log stays off."""
    import uvicorn

    from .app import create_app

    upgrade(url)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    uvicorn.run(
        create_app(url, secure_cookies=secure_cookies),
        host=host,
        port=port,
        access_log=False,
        log_level="info",
        proxy_headers=False,
    )
