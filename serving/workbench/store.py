"""What the pages and the JSON API read and write: one function per question, all in one place.

Every function takes the signed-in :class:`~.auth.Staff` and answers only within
their area: a household of another township is :class:`NotFound`, exactly as a
household that does not exist, and the attempt is recorded as a security event.
The JSON payloads returned here are what ``/api/...`` answers and what the
pages render.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from relapse_risk.features.errors import RelapseRiskError
from relapse_risk.models.reasons import MEASURES
from relapse_risk.models.visit_outcomes import CONCLUSIVE_OUTCOMES, OUTCOMES
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from .auth import Staff, record_event
from .db import ListEntry, Visit, VisitListRecord, VisitRevision, utcnow

OVERDUE_DAYS = 15
"""A listed household not visited this many days after the list was issued is overdue."""

MAX_NOTE = 2000
MAX_VISITOR = 100

log = logging.getLogger("relapse_risk.workbench")


class NotFound(RelapseRiskError):
    """No such household, visit or list within the user's area."""


class Invalid(RelapseRiskError):
    """An outcome that cannot be saved; ``fields`` names each field at fault."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields


class Conflict(RelapseRiskError):
    """The visit was changed by someone else since it was read (optimistic locking)."""

    def __init__(self, current: dict[str, Any]) -> None:
        super().__init__(f"visit {current['id']} is at version {current['version']} now")
        self.current = current


@dataclass(frozen=True)
class OutcomeInput:
    visit_date: str
    visitor: str
    outcome: str
    measures: tuple[str, ...]
    note: str


# -- lists -----------------------------------------------------------------------------------------


def latest_list(session: Session, county_code: str, as_of: str | None = None) -> VisitListRecord | None:
    query = select(VisitListRecord).where(VisitListRecord.county_code == county_code)
    if as_of:
        query = query.where(VisitListRecord.as_of == as_of)
    return session.scalars(query.order_by(VisitListRecord.as_of.desc()).limit(1)).first()


def list_infos(session: Session, county_code: str) -> list[dict[str, Any]]:
    lists = session.scalars(
        select(VisitListRecord)
        .where(VisitListRecord.county_code == county_code)
        .order_by(VisitListRecord.as_of.desc())
    )
    return [_list_payload(x) for x in lists]


def _list_payload(record: VisitListRecord) -> dict[str, Any]:
    return {
        "as_of": record.as_of,
        "county_code": record.county_code,
        "listed_on": record.listed_on.isoformat(),
        "households": record.households,
        "model": f"{record.model_name} v{record.model_version}",
    }


def townships(session: Session, staff: Staff, list_id: int) -> list[str]:
    codes = session.scalars(
        select(ListEntry.township_code)
        .where(ListEntry.list_id == list_id)
        .distinct()
        .order_by(ListEntry.township_code)
    )
    return [c for c in codes if staff.may_see(c)]


def latest_visits(session: Session, entry_ids: Iterable[int]) -> dict[int, Visit]:
    """The latest visit (by date, then by id) of each list entry that has one."""
    ids = list(entry_ids)
    latest: dict[int, Visit] = {}
    for chunk in _chunks(ids, 500):
        for visit in session.scalars(
            select(Visit).where(Visit.entry_id.in_(chunk)).order_by(Visit.visit_date, Visit.id)
        ):
            latest[visit.entry_id] = visit
    return latest


def _chunks(values: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def visit_status(entry: ListEntry, visit: Visit | None, listed_on: dt.date, today: dt.date) -> str:
    """``visited`` (a conclusive outcome), ``tried`` (not at home), ``overdue`` or ``open``."""
    if visit is not None and visit.outcome in CONCLUSIVE_OUTCOMES:
        return "visited"
    if (today - listed_on).days > OVERDUE_DAYS:
        return "overdue"
    return "tried" if visit is not None else "open"


def visit_list(
    session: Session,
    staff: Staff,
    township: str,
    *,
    as_of: str | None = None,
    village: str | None = None,
    band: str | None = None,
    reason: str | None = None,
    today: dt.date | None = None,
) -> dict[str, Any]:
    """``GET /api/visit_list``: a township's listed households, ranked, with reasons, measures and status."""
    if not staff.may_see(township):
        _refuse(session, staff, f"visit list of township {township}")
    record = latest_list(session, township[:6], as_of)
    if record is None:
        raise NotFound(f"no visit list for township {township}")
    query = select(ListEntry).where(ListEntry.list_id == record.id, ListEntry.township_code == township)
    entries = list(session.scalars(query.order_by(ListEntry.rank_township)))
    villages = sorted({e.village_code for e in entries})
    families = sorted({r["family"] for e in entries for r in e.reasons})
    if village:
        entries = [e for e in entries if e.village_code == village]
    if band:
        entries = [e for e in entries if e.risk_band == band]
    if reason:
        entries = [e for e in entries if any(r["family"] == reason for r in e.reasons)]
    visits = latest_visits(session, (e.id for e in entries))
    day = today or dt.date.today()
    households = []
    for entry in entries:
        visit = visits.get(entry.id)
        households.append(
            {
                "household_id": entry.household_id,
                "village_code": entry.village_code,
                "rank_township": entry.rank_township,
                "rank_county": entry.rank_county,
                "risk_score": round(entry.risk_score, 4),
                "risk_band": entry.risk_band,
                "reasons": [_reason_payload(r) for r in entry.reasons],
                "status": visit_status(entry, visit, record.listed_on, day),
                "last_outcome": visit.outcome if visit else None,
                "last_visit_date": visit.visit_date.isoformat() if visit else None,
            }
        )
    return {
        "list": _list_payload(record),
        "township_code": township,
        "filters": {"village": village, "band": band, "reason": reason},
        "villages": villages,
        "reason_families": families,
        "households": households,
    }


def _reason_payload(reason: dict[str, str]) -> dict[str, str]:
    measure = MEASURES.get(reason.get("measure", ""))
    return {
        **reason,
        "measure_zh": measure.zh if measure else "",
        "measure_en": measure.en if measure else "",
    }


# -- households ------------------------------------------------------------------------------------


def _entries_of(session: Session, staff: Staff, household_id: str) -> list[tuple[ListEntry, VisitListRecord]]:
    rows = session.execute(
        select(ListEntry, VisitListRecord)
        .join(VisitListRecord, VisitListRecord.id == ListEntry.list_id)
        .where(ListEntry.household_id == household_id)
        .order_by(VisitListRecord.as_of.desc())
    ).all()
    if not rows:
        raise NotFound(f"no household {household_id}")
    if not staff.may_see(rows[0][0].township_code):
        _refuse(session, staff, "a household of another area")
    return [(entry, record) for entry, record in rows]


def _refuse(session: Session, staff: Staff, what: str) -> None:
    """Record a read across areas and answer as if nothing were there (no household data in the log)."""
    record_event(session, "cross_area_read", staff.username, f"{staff.role} {staff.area_code}: {what}")
    session.commit()
    log.warning("refused %s (%s %s) a read outside their area", staff.username, staff.role, staff.area_code)
    raise NotFound("not found")


def household(session: Session, staff: Staff, household_id: str) -> dict[str, Any]:
    """``GET /api/households/ID``: the latest list's facts and reasons, earlier lists, every visit."""
    rows = _entries_of(session, staff, household_id)
    entry, record = rows[0]
    visits = session.scalars(
        select(Visit)
        .where(Visit.household_id == household_id)
        .order_by(Visit.visit_date.desc(), Visit.id.desc())
    ).all()
    revisions = dict(
        session.execute(
            select(VisitRevision.visit_id, func.count())
            .where(VisitRevision.visit_id.in_([v.id for v in visits] or [-1]))
            .group_by(VisitRevision.visit_id)
        ).all()
    )
    return {
        "household_id": entry.household_id,
        "county_code": entry.county_code,
        "township_code": entry.township_code,
        "village_code": entry.village_code,
        "list": _list_payload(record),
        "rank_township": entry.rank_township,
        "rank_county": entry.rank_county,
        "risk_score": round(entry.risk_score, 4),
        "risk_band": entry.risk_band,
        "reasons": [_reason_payload(r) for r in entry.reasons],
        "detail": entry.detail,
        "earlier_lists": [
            {"as_of": r.as_of, "rank_township": e.rank_township, "risk_band": e.risk_band}
            for e, r in rows[1:]
        ],
        "visits": [{**visit_payload(v), "revisions": int(revisions.get(v.id, 0))} for v in visits],
    }


def visit_payload(visit: Visit) -> dict[str, Any]:
    return {
        "id": visit.id,
        "household_id": visit.household_id,
        "visit_date": visit.visit_date.isoformat(),
        "visitor": visit.visitor,
        "outcome": visit.outcome,
        "measures": list(visit.measures),
        "note": visit.note,
        "version": visit.version,
        "created_by": visit.created_by,
        "created_at": visit.created_at.isoformat(timespec="seconds"),
        "updated_by": visit.updated_by,
        "updated_at": visit.updated_at.isoformat(timespec="seconds"),
    }


def visit_history(session: Session, staff: Staff, visit_id: int) -> dict[str, Any]:
    visit = _visit_in_area(session, staff, visit_id)
    revisions = session.scalars(
        select(VisitRevision).where(VisitRevision.visit_id == visit_id).order_by(VisitRevision.version)
    )
    return {
        "visit": visit_payload(visit),
        "revisions": [
            {
                "version": r.version,
                "changed_by": r.changed_by,
                "changed_at": r.changed_at.isoformat(),
                **r.values,
            }
            for r in revisions
        ],
    }


# -- outcomes --------------------------------------------------------------------------------------


def check_outcome(data: OutcomeInput, today: dt.date | None = None) -> dt.date:
    """The visit date of a valid outcome; :class:`Invalid` naming every field at fault otherwise."""
    faults: dict[str, str] = {}
    day = None
    try:
        day = dt.date.fromisoformat(data.visit_date)
    except ValueError:
        faults["visit_date"] = "a date YYYY-MM-DD"
    if day is not None and day > (today or dt.date.today()) + dt.timedelta(days=1):
        faults["visit_date"] = "not in the future"
    if not data.visitor.strip():
        faults["visitor"] = "required"
    elif len(data.visitor) > MAX_VISITOR:
        faults["visitor"] = f"at most {MAX_VISITOR} characters"
    if data.outcome not in OUTCOMES:
        faults["outcome"] = f"one of {', '.join(OUTCOMES)}"
    unknown = [m for m in data.measures if m not in MEASURES]
    if unknown:
        faults["measures"] = f"unknown measures {unknown}"
    if len(data.note) > MAX_NOTE:
        faults["note"] = f"at most {MAX_NOTE} characters"
    if faults or day is None:
        raise Invalid(faults)
    return day


def _values(visit: Visit) -> dict[str, Any]:
    return {
        "visit_date": visit.visit_date.isoformat(),
        "visitor": visit.visitor,
        "outcome": visit.outcome,
        "measures": list(visit.measures),
        "note": visit.note,
    }


def record_outcome(
    session: Session, staff: Staff, household_id: str, data: OutcomeInput, client_key: str | None = None
) -> tuple[dict[str, Any], bool]:
    """``POST /api/outcomes``: a new visit on the household's latest list; (visit, created).

    The same ``client_key`` sent twice records once: the second call returns the
    first visit with ``created`` False.
    """
    day = check_outcome(data)
    key = client_key or uuid.uuid4().hex
    existing = session.scalars(select(Visit).where(Visit.client_key == key)).first()
    if existing is not None:
        _visit_in_area(session, staff, existing.id)
        return visit_payload(existing), False
    entry, _ = _entries_of(session, staff, household_id)[0]
    now = utcnow()
    visit = Visit(
        client_key=key,
        entry_id=entry.id,
        household_id=household_id,
        township_code=entry.township_code,
        visit_date=day,
        visitor=data.visitor.strip(),
        outcome=data.outcome,
        measures=list(dict.fromkeys(data.measures)),
        note=data.note,
        created_by=staff.username,
        created_at=now,
        updated_by=staff.username,
        updated_at=now,
    )
    session.add(visit)
    try:
        session.flush()
        session.add(
            VisitRevision(
                visit_id=visit.id,
                version=visit.version,
                changed_by=staff.username,
                changed_at=now,
                values=_values(visit),
            )
        )
        session.commit()
    except IntegrityError:
        # The same form sent twice at once: the other request won; answer with its visit.
        session.rollback()
        existing = session.scalars(select(Visit).where(Visit.client_key == key)).first()
        if existing is None:
            raise
        return visit_payload(existing), False
    return visit_payload(visit), True


def _visit_in_area(session: Session, staff: Staff, visit_id: int) -> Visit:
    visit = session.get(Visit, visit_id)
    if visit is None:
        raise NotFound(f"no visit {visit_id}")
    if not staff.may_see(visit.township_code):
        _refuse(session, staff, "a visit of another area")
    return visit


def edit_outcome(
    session: Session, staff: Staff, visit_id: int, version: int, data: OutcomeInput
) -> dict[str, Any]:
    """Change a visit's outcome if it is still at ``version``; every version stays in the audit trail.

    Raises :class:`Conflict` (with the current values) when someone saved in between.
    """
    day = check_outcome(data)
    visit = _visit_in_area(session, staff, visit_id)
    if visit.version != version:
        raise Conflict(visit_payload(visit))
    visit.visit_date = day
    visit.visitor = data.visitor.strip()
    visit.outcome = data.outcome
    visit.measures = list(dict.fromkeys(data.measures))
    visit.note = data.note
    visit.updated_by = staff.username
    visit.updated_at = utcnow()
    try:
        session.flush()  # UPDATE ... WHERE id = ? AND version = ?: no row when another edit won
        session.add(
            VisitRevision(
                visit_id=visit.id,
                version=visit.version,
                changed_by=staff.username,
                changed_at=visit.updated_at,
                values=_values(visit),
            )
        )
        session.commit()
    except (StaleDataError, IntegrityError):
        session.rollback()
        current = session.get(Visit, visit_id)
        assert current is not None
        session.refresh(current)
        raise Conflict(visit_payload(current)) from None
    return visit_payload(visit)


# -- the county ------------------------------------------------------------------------------------


def county_summary(
    session: Session,
    staff: Staff,
    county: str | None = None,
    as_of: str | None = None,
    today: dt.date | None = None,
) -> dict[str, Any]:
    """Coverage and confirmation by township and by first reason; overdue households.

    Coverage = visited (a conclusive outcome) / listed; confirmation = confirmed /
    (confirmed + no risk found). Township staff see their township's rows only.
    """
    code = county or staff.area_code[:6]
    if code != staff.area_code[:6]:
        _refuse(session, staff, f"county {code}")
    record = latest_list(session, code, as_of)
    if record is None:
        raise NotFound(f"no visit list for county {code}")
    entries = [
        e
        for e in session.scalars(select(ListEntry).where(ListEntry.list_id == record.id))
        if staff.may_see(e.township_code)
    ]
    visits = latest_visits(session, (e.id for e in entries))
    day = today or dt.date.today()
    rows = []
    for entry in entries:
        visit = visits.get(entry.id)
        rows.append((entry, visit, visit_status(entry, visit, record.listed_on, day)))

    def table(key: str) -> list[dict[str, Any]]:
        groups: dict[str, list[tuple[ListEntry, Visit | None, str]]] = {}
        for row in rows:
            value = row[0].township_code if key == "township" else (row[0].first_reason or "")
            groups.setdefault(value, []).append(row)
        return [_coverage(name, members) for name, members in sorted(groups.items())]

    overdue = sorted((r for r in rows if r[2] == "overdue"), key=lambda r: r[0].rank_county)
    return {
        "list": _list_payload(record),
        "days_listed": (day - record.listed_on).days,
        "overdue_after_days": OVERDUE_DAYS,
        "total": _coverage("total", rows),
        "by_township": table("township"),
        "by_first_reason": table("reason"),
        "overdue": [
            {
                "household_id": e.household_id,
                "township_code": e.township_code,
                "village_code": e.village_code,
                "rank_county": e.rank_county,
                "risk_band": e.risk_band,
                "last_outcome": v.outcome if v else None,
            }
            for e, v, _ in overdue
        ],
    }


def _coverage(name: str, rows: list[tuple[ListEntry, Visit | None, str]]) -> dict[str, Any]:
    listed = len(rows)
    visited = sum(1 for _, _, s in rows if s == "visited")
    confirmed = sum(1 for _, v, _ in rows if v is not None and v.outcome == "confirmed")
    no_risk = sum(1 for _, v, _ in rows if v is not None and v.outcome == "no_risk")
    return {
        "name": name,
        "listed": listed,
        "visited": visited,
        "confirmed": confirmed,
        "no_risk": no_risk,
        "overdue": sum(1 for _, _, s in rows if s == "overdue"),
        "coverage": visited / listed if listed else None,
        "confirmation": confirmed / (confirmed + no_risk) if confirmed + no_risk else None,
    }


# -- export ----------------------------------------------------------------------------------------


def export_rows(session: Session, as_of: str | None = None) -> list[dict[str, Any]]:
    """A row per listed household of every list (or of ``as_of``), with its latest outcome: EXPORT_COLUMNS."""
    query = select(ListEntry, VisitListRecord).join(VisitListRecord, VisitListRecord.id == ListEntry.list_id)
    if as_of:
        query = query.where(VisitListRecord.as_of == as_of)
    pairs = session.execute(query.order_by(VisitListRecord.as_of, ListEntry.rank_county)).all()
    counts = dict(session.execute(select(Visit.entry_id, func.count()).group_by(Visit.entry_id)).all())
    latest = latest_visits(session, (e.id for e, _ in pairs))
    rows = []
    for entry, record in pairs:
        visit = latest.get(entry.id)
        rows.append(
            {
                "as_of": record.as_of,
                "listed_on": record.listed_on.isoformat(),
                "model": f"{record.model_name}/{record.model_version}",
                "household_id": entry.household_id,
                "county_code": entry.county_code,
                "township_code": entry.township_code,
                "village_code": entry.village_code,
                "rank_county": entry.rank_county,
                "rank_township": entry.rank_township,
                "risk_score": entry.risk_score,
                "risk_band": entry.risk_band,
                "first_reason": entry.first_reason or "",
                "first_reason_code": entry.reasons[0]["code"] if entry.reasons else "",
                "visits": int(counts.get(entry.id, 0)),
                "outcome": visit.outcome if visit else "",
                "visit_date": visit.visit_date.isoformat() if visit else "",
                "visitor": visit.visitor if visit else "",
                "measures": " ".join(visit.measures) if visit else "",
                "note": visit.note if visit else "",
                "version": visit.version if visit else "",
                "updated_by": visit.updated_by if visit else "",
                "updated_at": visit.updated_at.isoformat(timespec="seconds") if visit else "",
            }
        )
    return rows
