"""What the visits found, beside `relapse monitor`'s checks: `relapse monitor --outcomes FILE`.

FILE is an export of `relapse outcomes export` (models/visit_outcomes.py). For
one list (the current run's month when CURRENT is a run folder, else the
latest list in the file) it reports, by township and by first reason, the
share of visited households whose risk staff confirmed and the share never
visited, and writes them to OUT/visit_outcomes.json. It raises no alert: a
low confirmed share is a question for the county (were the right households
listed?), not a fault of the data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from relapse_risk.models.visit_outcomes import feedback_by, read_outcomes
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .inputs import MonitorInputError

FILE_NAME = "visit_outcomes.json"


def visit_feedback(outcomes: Path, current: str, out: Path) -> dict[str, Any]:
    """The feedback of the list CURRENT was scored for, written to OUT/visit_outcomes.json."""
    frame = read_outcomes(outcomes)
    if frame.empty:
        raise MonitorInputError(f"{outcomes}: the export holds no listed household")
    as_of = _run_month(Path(current)) or max(frame["as_of"])
    rows = frame[frame["as_of"] == as_of]
    if rows.empty:
        raise MonitorInputError(
            f"{outcomes}: no list of {as_of} (the current run's month); lists in the file: "
            f"{', '.join(sorted(set(frame['as_of'])))}"
        )
    summary = {
        "outcomes_file": str(outcomes),
        "as_of": as_of,
        "total": _records(feedback_by(rows.assign(all="all"), "all"))[0],
        "by_township": _records(feedback_by(rows, "township_code")),
        "by_first_reason": _records(feedback_by(rows, "first_reason")),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / FILE_NAME).write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    return summary


def _run_month(folder: Path) -> str | None:
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return None
    try:
        return str(json.loads(manifest.read_text(encoding="utf-8"))["as_of"])
    except (OSError, ValueError, KeyError):
        return None


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    records = table.astype(object).where(table.notna(), other=None).to_dict(orient="records")  # type: ignore[call-overload]
    return [{str(k): v for k, v in r.items()} for r in records]


def feedback_tables(summary: dict[str, Any]) -> list[Table]:
    """Two console tables: by township and by first reason."""
    tables = []
    for key, column, heading in (
        ("by_township", "township_code", "township"),
        ("by_first_reason", "first_reason", "first reason"),
    ):
        table = Table(title=f"Visit outcomes of the {summary['as_of']} list, by {heading}")
        for name in (heading, "listed", "visited", "confirmed / judged", "never visited"):
            table.add_column(name, justify="left" if name == heading else "right")
        for name, row in [*((r[column], r) for r in summary[key]), ("total", summary["total"])]:
            confirmed = row["confirmed_share"]
            table.add_row(
                str(name),
                str(row["listed"]),
                str(row["visited"]),
                "n/a" if confirmed is None else f"{confirmed:.0%} of {row['judged']}",
                f"{row['never_visited_share']:.0%}",
            )
        tables.append(table)
    return tables


def visit_feedback_command(outcomes: Path, current: str, out: Path, console: Console, errors: Console) -> int:
    """Print and write the feedback; 0, or FAILED (2) with one line when the file cannot be used."""
    from relapse_risk.features.errors import RelapseRiskError

    from .monitor import FAILED

    try:
        summary = visit_feedback(outcomes, current, out)
    except RelapseRiskError as exc:
        errors.print(
            f"[bold red]Visit outcomes could not be read:[/bold red] {escape(str(exc))}", highlight=False
        )
        return FAILED
    for table in feedback_tables(summary):
        console.print(table)
    console.print(f"Visit outcomes: {out / FILE_NAME}", highlight=False)
    return 0
