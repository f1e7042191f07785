"""The county outlook of a scoring run: how many households will reach a threshold, where, and by which rule.

Read from a run folder of ``relapse score`` (``scores.parquet`` and
``manifest.json``), nothing else: the expected count of an area is the sum of
its scored households' calibrated risk scores, with the 90 % interval of
:mod:`relapse_risk.models.expected_counts`. The calibration error that widens
the interval, and the shares that split the count by rule, are what training
measured on the model's test months and the run's manifest carries
(``model.count_calibration``); a model trained before training recorded them
gets the documented fallback error and no split by rule, and the outlook says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from relapse_risk.features.errors import RelapseRiskError
from relapse_risk.models.expected_counts import (
    DRIFT_WIDENING,
    FALLBACK_RELATIVE_ERROR,
    INTERVAL_LEVEL,
    MEASURED_COVERAGE,
    ExpectedCount,
    count_change,
    expected_by_rule,
    expected_count,
)

from ..batch.outputs import MANIFEST_JSON, SCORES_PARQUET

OUTLOOK_COLUMNS = (
    "household_id",
    "county_code",
    "township_code",
    "village_code",
    "status",
    "risk_score",
    "risk_band",
)


class OutlookInputError(RelapseRiskError, ValueError):
    """A run folder that the outlook cannot read."""


@dataclass(frozen=True)
class ScoredRun:
    """The parts of a run folder the outlook reads."""

    folder: Path
    manifest: dict[str, object]
    scores: pd.DataFrame

    @property
    def as_of(self) -> str:
        return str(self.manifest.get("as_of", ""))

    @property
    def count_calibration(self) -> dict[str, object] | None:
        model = self.manifest.get("model")
        calibration = model.get("count_calibration") if isinstance(model, dict) else None
        return calibration if isinstance(calibration, dict) else None


def read_run(folder: Path) -> ScoredRun:
    """``manifest.json`` and the outlook's columns of ``scores.parquet``; :class:`OutlookInputError` naming
    the file when either is missing or lacks a column."""
    manifest_path, scores_path = folder / MANIFEST_JSON, folder / SCORES_PARQUET
    for path in (manifest_path, scores_path):
        if not path.is_file():
            raise OutlookInputError(f"{path}: not found; --run takes the OUT folder of `relapse score`")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OutlookInputError(f"{manifest_path}: cannot be read as JSON: {exc}") from None
    try:
        scores = pd.read_parquet(scores_path, columns=list(OUTLOOK_COLUMNS))
    except (OSError, ValueError, KeyError) as exc:
        raise OutlookInputError(
            f"{scores_path}: cannot read the columns {', '.join(OUTLOOK_COLUMNS)}: {exc}"
        ) from None
    return ScoredRun(folder, manifest, scores)


@dataclass(frozen=True)
class Outlook:
    """Expected threshold crossings of one run, by area, as written to the outlook's JSON."""

    document: dict[str, object]
    notes: list[str] = field(default_factory=list)


def area_outlook(
    rows: pd.DataFrame, relative_error: float, shares: dict[str, dict[str, float]] | None
) -> dict[str, object]:
    """One area's expected count, interval, split by rule and status counts, from its scores-table rows."""
    scored = rows[rows["status"] == "scored"]
    count = expected_count(scored["risk_score"].to_numpy(np.float64), relative_error)
    described: dict[str, object] = dict(count.as_json())
    if shares is not None:
        described["by_rule"] = {
            rule: round(value, 1)
            for rule, value in expected_by_rule(scored["risk_score"], scored["risk_band"], shares).items()
        }
    statuses = rows["status"].value_counts()
    described["triggered_now"] = int(statuses.get("triggered_now", 0))
    described["under_monitoring"] = int(statuses.get("under_monitoring", 0))
    described["high_band"] = int((scored["risk_band"] == "high").sum())
    return described


def run_outlook(current: ScoredRun, previous: ScoredRun | None = None) -> Outlook:
    """The outlook document of ``current`` (and its change against ``previous``, area by area)."""
    notes: list[str] = []
    calibration = current.count_calibration
    relative_error = _relative_error(calibration)
    if relative_error is None:
        relative_error = FALLBACK_RELATIVE_ERROR
        notes.append(
            "the model's training run did not record its count error: the interval uses "
            f"{FALLBACK_RELATIVE_ERROR}, about the largest measured; retrain to get the model's own"
        )
    shares = _shares(calibration)
    if shares is None:
        notes.append("no split by rule: the model's training run did not record which rule caught whom")

    def areas(run: ScoredRun, column: str) -> dict[str, dict[str, object]]:
        rows = run.scores.dropna(subset=[column])
        return {
            str(code): area_outlook(group, relative_error, shares)
            for code, group in rows.groupby(column, sort=True)
        }

    county = area_outlook(current.scores, relative_error, shares)
    county["codes"] = sorted(str(c) for c in current.scores["county_code"].dropna().unique())
    document: dict[str, object] = {
        "run": str(current.folder),
        "as_of": current.as_of,
        "horizon_months": current.manifest.get("horizon_months"),
        "model": current.manifest.get("model"),
        "interval": {
            "level": INTERVAL_LEVEL,
            "relative_error": relative_error,
            "widening": DRIFT_WIDENING,
            "measured_coverage": MEASURED_COVERAGE,
            "basis": "sum of calibrated scores of the scored households; chance (Poisson-binomial) plus "
            "calibration drift (widening x relative error x expected), normal approximation",
        },
        "county": county,
        "townships": areas(current, "township_code"),
        "villages": areas(current, "village_code"),
    }
    if previous is not None:
        document["previous"] = {"run": str(previous.folder), "as_of": previous.as_of}
        _add_changes(document, current, previous, relative_error)
        if previous.as_of and current.as_of and previous.as_of >= current.as_of:
            notes.append(
                f"the previous run ({previous.as_of}) is not earlier than this one ({current.as_of})"
            )
    document["notes"] = notes
    return Outlook(document, notes)


def _add_changes(document: dict[str, object], current: ScoredRun, previous: ScoredRun, error: float) -> None:
    """``change`` of the county and of each township and village both runs hold."""
    previous_error = _relative_error(previous.count_calibration) or error

    def count_of(rows: pd.DataFrame, relative_error: float) -> ExpectedCount:
        scored = rows.loc[rows["status"] == "scored", "risk_score"]
        return expected_count(scored.to_numpy(np.float64), relative_error)

    def change(before: pd.DataFrame, after: pd.DataFrame) -> dict[str, float]:
        return count_change(count_of(before, previous_error), count_of(after, error)).as_json()

    county = document["county"]
    assert isinstance(county, dict)
    county["change"] = change(previous.scores, current.scores)
    for level, column in (("townships", "township_code"), ("villages", "village_code")):
        described = document[level]
        assert isinstance(described, dict)
        before = {str(code): rows for code, rows in previous.scores.dropna(subset=[column]).groupby(column)}
        for code, rows in current.scores.dropna(subset=[column]).groupby(column):
            if str(code) in before:
                described[str(code)]["change"] = change(before[str(code)], rows)


def _relative_error(calibration: dict[str, object] | None) -> float | None:
    value = calibration.get("relative_error") if calibration else None
    return float(value) if isinstance(value, int | float) and np.isfinite(value) else None


def _shares(calibration: dict[str, object] | None) -> dict[str, dict[str, float]] | None:
    shares = calibration.get("first_rule_shares") if calibration else None
    if not isinstance(shares, dict):
        return None
    return {str(band): {str(rule): float(v) for rule, v in split.items()} for band, split in shares.items()}
