"""Import a scoring run's visit list into the workbench database, with each household's facts.

``relapse outcomes import --run RUN`` reads RUN/manifest.json and
RUN/scores.parquet (docs/outputs.md) and the dataset folder the run was scored
from (the manifest's ``input.folder``, or ``--data``). For every household on
the visit list it keeps what the household page shows, as of the run's month:
income by source for the last :data:`HISTORY_MONTHS` months, per-capita
income against the monitoring line month by month, members, events, loans and
assistance. The web pages then need only the database, never the folders.

Importing the same run again changes nothing; a different run for a county and
month already imported is refused (its visits belong to the first one). A new
quarter's run adds a new list beside the earlier ones.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from relapse_risk.features.contract import (
    EMPLOYED_STATUSES,
    format_month,
    month_index,
    month_start,
    parse_month,
)
from relapse_risk.features.dataset import Dataset
from relapse_risk.features.errors import RelapseRiskError
from relapse_risk.features.loading import load_dataset
from relapse_risk.features.rules import build_panel, rule_state
from relapse_risk.models.reasons import TEMPLATES_BY_CODE
from sqlalchemy import select
from sqlalchemy.orm import Session

from .db import ListEntry, VisitListRecord, utcnow

HISTORY_MONTHS = 36
"""Months of income and per-capita history kept for each listed household."""


class ImportRefused(RelapseRiskError):
    """The run cannot be imported: unreadable, or another run of the same county and month is there."""


@dataclass(frozen=True)
class ImportResult:
    list_id: int
    county_code: str
    as_of: str
    households: int
    created: bool
    """False when this very run had been imported before (nothing changed)."""


def _read_run(run: Path) -> tuple[dict[str, Any], pd.DataFrame, str]:
    manifest_path, scores_path = run / "manifest.json", run / "scores.parquet"
    for path in (manifest_path, scores_path):
        if not path.is_file():
            raise ImportRefused(f"{path}: not found; RUN must be an OUT folder of `relapse score`")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ImportRefused(f"{manifest_path}: cannot be read: {exc}") from None
    digest = hashlib.sha256(scores_path.read_bytes()).hexdigest()
    scores = pd.read_parquet(scores_path)
    return manifest, scores, digest


def import_run(
    session: Session, run: Path, data: Path | None = None, listed_on: dt.date | None = None
) -> ImportResult:
    """Add RUN's visit list to the database in one transaction; see the module docstring."""
    manifest, scores, digest = _read_run(run)
    listed = scores[scores["in_visit_list"].fillna(False).astype(bool)]
    if listed.empty:
        raise ImportRefused(f"{run}: the run lists no household for a visit")
    counties = sorted(listed["county_code"].dropna().unique())
    if len(counties) != 1:
        raise ImportRefused(f"{run}: a list must be of one county, this run has {counties}")
    county, as_of = str(counties[0]), str(manifest.get("as_of") or listed["as_of"].iloc[0])
    existing = session.scalars(
        select(VisitListRecord).where(VisitListRecord.county_code == county, VisitListRecord.as_of == as_of)
    ).one_or_none()
    if existing is not None:
        if existing.scores_sha256 == digest:
            return ImportResult(existing.id, county, as_of, existing.households, created=False)
        raise ImportRefused(
            f"{run}: county {county} already has a list for {as_of} from another run "
            f"(scores sha256 {existing.scores_sha256[:12]}...); its visits belong to that list"
        )
    folder = data if data is not None else Path(str((manifest.get("input") or {}).get("folder", "")))
    if not folder or not folder.is_dir():
        raise ImportRefused(f"{run}: the dataset folder {folder} is not there; name it with --data")
    dataset = load_dataset(folder)
    details = household_details(dataset, list(listed["household_id"]), parse_month(as_of))
    model = manifest.get("model") or {}
    record = VisitListRecord(
        county_code=county,
        as_of=as_of,
        scores_sha256=digest,
        model_name=str(model.get("name") or listed["model_name"].iloc[0]),
        model_version=str(model.get("version") or listed["model_version"].iloc[0]),
        input_fingerprint=str((manifest.get("input") or {}).get("fingerprint", "")),
        listed_on=listed_on or dt.date.today(),
        imported_at=utcnow(),
        households=len(listed),
    )
    session.add(record)
    session.flush()
    for row in listed.itertuples(index=False):
        reasons = _reasons(row)
        session.add(
            ListEntry(
                list_id=record.id,
                household_id=str(row.household_id),
                county_code=str(row.county_code),
                township_code=str(row.township_code),
                village_code=str(row.village_code),
                # itertuples types every field as any scalar; these columns are numeric (SCORES_SCHEMA)
                rank_county=int(row.rank_county),  # type: ignore[arg-type]
                rank_township=int(row.rank_township),  # type: ignore[arg-type]
                risk_score=float(row.risk_score),  # type: ignore[arg-type]
                risk_band=str(row.risk_band),
                reasons=reasons,
                first_reason=reasons[0]["family"] if reasons else None,
                detail=details[str(row.household_id)],
            )
        )
    session.flush()
    return ImportResult(record.id, county, as_of, len(listed), created=True)


def _reasons(row: Any) -> list[dict[str, str]]:  # noqa: ANN401 - a pandas namedtuple row
    reasons = []
    for slot in (1, 2, 3):
        code = getattr(row, f"reason_{slot}_code")
        if code is None or (isinstance(code, float) and math.isnan(code)):
            continue
        template = TEMPLATES_BY_CODE.get(str(code))
        reasons.append(
            {
                "code": str(code),
                "family": template.family if template else "other",
                "zh": str(getattr(row, f"reason_{slot}_zh") or ""),
                "en": str(getattr(row, f"reason_{slot}_en") or ""),
                "measure": str(getattr(row, f"reason_{slot}_measure") or ""),
            }
        )
    return reasons


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 2)


def household_details(
    dataset: Dataset, household_ids: list[str], as_of: dt.date
) -> dict[str, dict[str, Any]]:
    """What the household page shows, for each of ``household_ids``, from data up to ``as_of``."""
    panel = build_panel(dataset, through=as_of)
    state = rule_state(panel, dataset.policy)
    last = state.column(as_of)
    first = max(0, last - HISTORY_MONTHS + 1)
    months = [format_month(month_start(month_index(panel.first_month) + c)) for c in range(first, last + 1)]
    position = {str(h): i for i, h in enumerate(panel.household_ids)}
    ids = pd.DataFrame({"household_id": household_ids})
    dataset.connection.register("listed_households", ids)
    start = parse_month(months[0])
    try:
        income = dataset.sql(
            """SELECT household_id, strftime(month, '%Y-%m') AS month, source, sum(amount) AS amount
               FROM income JOIN listed_households USING (household_id)
               WHERE month BETWEEN ? AND ? GROUP BY ALL""",
            [start, as_of],
        ).df()
        members = dataset.sql(
            """SELECT m.household_id, m.member_id, m.birth_year, m.sex, m.relation, m.labor_capacity,
                      m.disability_grade, m.chronic_disease,
                      (SELECT count(*) FROM employment e WHERE e.member_id = m.member_id
                         AND e.status IN (SELECT unnest(?)) AND e.month > ? AND e.month <= ?) AS work_months
               FROM members m JOIN listed_households USING (household_id)
               WHERE (m.joined_month IS NULL OR m.joined_month <= ?)
                 AND (m.left_month IS NULL OR m.left_month > ?)
               ORDER BY m.household_id, m.birth_year, m.member_id""",
            [list(EMPLOYED_STATUSES), month_start(month_index(as_of) - 12), as_of, as_of, as_of],
        ).df()
        events = dataset.sql(
            """SELECT household_id, strftime(date, '%Y-%m-%d') AS date, kind, severity, value
               FROM events JOIN listed_households USING (household_id)
               WHERE date BETWEEN ? AND last_day(?) ORDER BY household_id, date""",
            [start, as_of],
        ).df()
        loans = dataset.sql(
            """SELECT l.household_id, l.loan_id, l.kind, strftime(l.issued_month, '%Y-%m') AS issued,
                      l.principal, l.term_months,
                      (SELECT arg_max(s.balance, s.month) FROM loan_status s
                        WHERE s.loan_id = l.loan_id AND s.month <= ?) AS balance,
                      (SELECT arg_max(s.overdue_days, s.month) FROM loan_status s
                        WHERE s.loan_id = l.loan_id AND s.month <= ?) AS overdue_days
               FROM loans l JOIN listed_households USING (household_id)
               WHERE l.issued_month <= ? ORDER BY l.household_id, l.issued_month""",
            [as_of, as_of, as_of],
        ).df()
        assistance = dataset.sql(
            """SELECT household_id, measure, strftime(start_month, '%Y-%m') AS start,
                      strftime(end_month, '%Y-%m') AS "end", monthly_amount
               FROM assistance JOIN listed_households USING (household_id)
               WHERE start_month <= ? ORDER BY household_id, start_month""",
            [as_of],
        ).df()
    finally:
        dataset.connection.unregister("listed_households")
    month_position = {m: i for i, m in enumerate(months)}
    by_household: dict[str, dict[str, Any]] = {}
    for hid in household_ids:
        row = position[hid]
        columns = slice(first, last + 1)
        size = panel.size[row, columns].astype(float)
        by_household[hid] = {
            "as_of": format_month(as_of),
            "months": months,
            "reported": [bool(v) for v in panel.reported[row, columns]],
            "income": {},
            "per_capita": [_finite(v) for v in state.I[row, columns] / size],
            "per_capita_after_rigid": [
                _finite(v) for v in (state.I[row, columns] - state.E[row, columns]) / size
            ],
            "line": [_finite(v) for v in state.L[columns]],
            "members": [],
            "events": [],
            "loans": [],
            "assistance": [],
        }
    for hid, rows in income.groupby("household_id"):
        series: dict[str, list[float | None]] = {}
        for source, by_source in rows.groupby("source"):
            values: list[float | None] = [None] * len(months)
            for month, amount in zip(by_source["month"], by_source["amount"], strict=True):
                values[month_position[month]] = round(float(amount), 2)
            series[str(source)] = values
        by_household[str(hid)]["income"] = dict(sorted(series.items()))
    for frame, key in (
        (members, "members"),
        (events, "events"),
        (loans, "loans"),
        (assistance, "assistance"),
    ):
        for record in frame.to_dict(orient="records"):
            hid = str(record.pop("household_id"))
            by_household[hid][key].append({k: _plain(v) for k, v in record.items()})
    for detail in by_household.values():
        for member in detail["members"]:
            member["age"] = as_of.year - int(member.pop("birth_year"))
    return by_household


def _plain(value: Any) -> Any:  # noqa: ANN401 - a cell of a DuckDB result
    """A JSON-ready value: numpy scalars to Python, NaN and NaT to None."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
