"""The list's precision as the visits judged it, beside `relapse evaluate`'s metrics on the rules' labels.

`relapse evaluate --outcomes FILE` (an export of `relapse outcomes export`)
adds, for each model version whose list is in FILE: listed households, those
staff judged (risk confirmed or no risk found), those confirmed, and the
precision confirmed / judged with a 95 % Wilson interval. It is written under
``visit_outcomes`` in the evaluation's JSON report and printed after the
metrics.

This is a second opinion, not a label: the metrics above it still use the
rules' labels (docs/rules-and-labels.md), training never reads FILE, and the
households staff chose to visit first are not a random sample of the list.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from relapse_risk.models.visit_outcomes import precision_on_visited, read_outcomes
from rich.table import Table


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float] | None:
    """95 % Wilson score interval of a proportion; None without trials."""
    if trials == 0:
        return None
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def visit_precision(outcomes: Path) -> list[dict[str, Any]]:
    """One row per (model, list month) in the export: listed, judged, confirmed, precision, its interval."""
    frame = read_outcomes(outcomes)
    rows = []
    for (model, as_of), group in frame.groupby(["model", "as_of"], sort=True):
        counts = precision_on_visited(group)
        interval = wilson_interval(int(counts["confirmed"] or 0), int(counts["judged"] or 0))
        rows.append(
            {"model": model, "as_of": as_of, **counts, "interval_95": list(interval) if interval else None}
        )
    return rows


def add_to_report(report: Path, outcomes: Path) -> list[dict[str, Any]]:
    """Add ``visit_outcomes`` to the evaluation's JSON report; the rows added."""
    rows = visit_precision(outcomes)
    content = json.loads(report.read_text(encoding="utf-8"))
    content["visit_outcomes"] = {"file": str(outcomes), "lists": rows}
    report.write_text(json.dumps(content, indent=2, ensure_ascii=False), encoding="utf-8")
    return rows


def precision_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Precision on visited households (staff's findings; not the rules' labels)")
    for name in ("model", "list of", "listed", "judged", "confirmed", "precision (95 % interval)"):
        table.add_column(name, justify="left" if name in ("model", "list of") else "right")
    for row in rows:
        interval = row["interval_95"]
        shown = (
            "n/a"
            if row["precision"] is None
            else f"{row['precision']:.2f} ({interval[0]:.2f}-{interval[1]:.2f})"
        )
        table.add_row(
            row["model"], row["as_of"], str(row["listed"]), str(row["judged"]), str(row["confirmed"]), shown
        )
    return table
