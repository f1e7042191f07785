"""The reference rankings of docs/rules-and-labels.md: the rule baseline and, on generated data, the oracle.

Both return scores indexed by household_id in the convention of
models/metrics.py (higher = visit first), so they are evaluated exactly like a
model:

- rule baseline: the score is -margin, so ranking by it is margin ascending;
  an undefined margin (I(t) undefined) is NaN and ranks last; ties go by
  household_id. These scores are not probabilities.
- oracle: p_true from the generator's truth file (household_id, as_of,
  p_true), the probability that the rule fires within the horizon given the
  hidden state at t. The truth file is read as a frame; nothing here imports
  the generator.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

TRUTH_COLUMNS: tuple[str, ...] = ("household_id", "as_of", "p_true")


def rule_baseline_scores(labels: pd.DataFrame, as_of: dt.date | None = None) -> pd.Series:
    """-margin by household_id from a labels frame (features/rules.py), for one as-of month.

    With ``as_of`` the frame is first restricted to that month; without it the
    frame must hold a single as-of month.
    """
    rows = _one_month(labels, as_of, "labels")
    return pd.Series(
        -rows["margin"].to_numpy(dtype=np.float64),
        index=pd.Index(rows["household_id"].to_numpy(), name="household_id"),
        name="score",
    )


def read_truth(path: Path) -> pd.DataFrame:
    """Read and check a truth file: household_id (str), as_of (month start), p_true in [0, 1].

    Parquet or CSV by extension. Raises ValueError naming the file, and for a
    bad value the row and column.
    """
    if not path.is_file():
        raise ValueError(f"{path}: truth file is missing")
    csv = path.suffix == ".csv"
    frame = pd.read_csv(path, dtype={"household_id": str}) if csv else pd.read_parquet(path)
    missing = [c for c in TRUTH_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    as_of = pd.to_datetime(frame["as_of"], errors="coerce")
    p_true = pd.to_numeric(frame["p_true"], errors="coerce")
    checks = (
        ("household_id", frame["household_id"].isna(), "is empty"),
        ("as_of", as_of.isna() | (as_of.dt.day != 1), "is not the first day of a month"),
        ("p_true", ~p_true.between(0.0, 1.0), "is not a probability in [0, 1]"),
    )
    for column, bad, reason in checks:
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(f"{path}: row {row + 1}, column {column}: {frame[column].iloc[row]} {reason}")
    truth = pd.DataFrame(
        {
            "household_id": frame["household_id"].astype(str),
            "as_of": as_of,
            "p_true": p_true.astype(np.float64),
        }
    )
    if truth.duplicated(["household_id", "as_of"]).any():
        raise ValueError(f"{path}: a household appears twice for the same as_of")
    return truth


def truth_months(truth: pd.DataFrame) -> list[dt.date]:
    """The as-of months a truth frame covers, ascending."""
    return [ts.date() for ts in sorted(truth["as_of"].unique())]


def oracle_scores(truth: pd.DataFrame, as_of: dt.date) -> pd.Series:
    """p_true by household_id at one as-of month; ValueError when the truth lacks that month."""
    rows = truth[truth["as_of"] == pd.Timestamp(as_of.replace(day=1))]
    if rows.empty:
        covered = ", ".join(f"{m:%Y-%m}" for m in truth_months(truth)) or "none"
        raise ValueError(f"the truth has no p_true at {as_of:%Y-%m} (as-of months present: {covered})")
    return pd.Series(
        rows["p_true"].to_numpy(dtype=np.float64),
        index=pd.Index(rows["household_id"].to_numpy(), name="household_id"),
        name="score",
    )


def _one_month(frame: pd.DataFrame, as_of: dt.date | None, what: str) -> pd.DataFrame:
    if as_of is not None:
        return frame[frame["as_of"] == pd.Timestamp(as_of.replace(day=1))]
    if frame["as_of"].nunique() > 1:
        raise ValueError(f"{what} hold several as-of months; pass as_of")
    return frame
