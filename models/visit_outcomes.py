"""Visit outcomes that staff record in the workbench, as the file `relapse outcomes export` writes.

The export is the one way outcomes reach monitoring and evaluation: `relapse
monitor --outcomes FILE` and `relapse evaluate --outcomes FILE` read it, and
nothing else does. Outcomes are never training labels: the rules' labels stay
the target (docs/rules-and-labels.md), and a visit's finding is a second,
human opinion on the list, reported beside the model's metrics.

One row per household on a list (docs/workbench.md): its list, rank, band and
first reason, and the latest outcome recorded for it, or none.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..features.errors import RelapseRiskError

OUTCOMES: tuple[str, ...] = ("confirmed", "no_risk", "not_home", "moved_away")
"""Risk confirmed and proposed for monitoring / no risk found / not at home / moved away."""

CONCLUSIVE_OUTCOMES: tuple[str, ...] = ("confirmed", "no_risk", "moved_away")
"""Outcomes that settle a listed household: it was visited. ``not_home`` asks for another visit."""

JUDGED_OUTCOMES: tuple[str, ...] = ("confirmed", "no_risk")
"""Outcomes that judge the list: staff met the household and said whether the risk is real."""

EXPORT_COLUMNS: tuple[str, ...] = (
    "as_of",
    "listed_on",
    "model",
    "household_id",
    "county_code",
    "township_code",
    "village_code",
    "rank_county",
    "rank_township",
    "risk_score",
    "risk_band",
    "first_reason",
    "first_reason_code",
    "visits",
    "outcome",
    "visit_date",
    "visitor",
    "measures",
    "note",
    "version",
    "updated_by",
    "updated_at",
)
"""Columns of the export, in file order."""


class OutcomesFileError(RelapseRiskError):
    """The outcomes file cannot be read or is not an export of `relapse outcomes export`."""


def read_outcomes(path: Path) -> pd.DataFrame:
    """The export at ``path``, identifiers as text; raises :class:`OutcomesFileError` naming the fault."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise OutcomesFileError(f"{path}: cannot be read: {exc}") from None
    missing = [c for c in EXPORT_COLUMNS if c not in frame.columns]
    if missing:
        raise OutcomesFileError(
            f"{path}: not an export of `relapse outcomes export` (missing {', '.join(missing)})"
        )
    unknown = sorted(set(frame["outcome"]) - {"", *OUTCOMES})
    if unknown:
        raise OutcomesFileError(f"{path}: unknown outcomes {unknown}; expected one of {list(OUTCOMES)}")
    return frame


def feedback_by(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per value of ``column``: listed, visited, confirmed, the share never visited and the share confirmed.

    ``visited`` counts households with a conclusive outcome; ``confirmed_share``
    is confirmed / (confirmed + no risk found), NaN where nobody was judged.
    """
    outcome = frame["outcome"]
    counts = pd.DataFrame(
        {
            column: frame[column].replace("", "(none)"),
            "listed": 1,
            "visited": outcome.isin(CONCLUSIVE_OUTCOMES).astype(int),
            "never_visited": (outcome == "").astype(int),
            "judged": outcome.isin(JUDGED_OUTCOMES).astype(int),
            "confirmed": (outcome == "confirmed").astype(int),
        }
    )
    table = counts.groupby(column, sort=True).sum()
    table["never_visited_share"] = table["never_visited"] / table["listed"]
    table["confirmed_share"] = (table["confirmed"] / table["judged"].where(table["judged"] > 0)).astype(float)
    return table.reset_index()


def precision_on_visited(frame: pd.DataFrame) -> dict[str, float | int | None]:
    """The list's precision as staff judged it: confirmed / (confirmed + no risk found) among the listed."""
    judged = int(frame["outcome"].isin(JUDGED_OUTCOMES).sum())
    confirmed = int((frame["outcome"] == "confirmed").sum())
    return {
        "listed": len(frame),
        "judged": judged,
        "confirmed": confirmed,
        "precision": confirmed / judged if judged else None,
    }
