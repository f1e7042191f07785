"""One assessment of a scored set of as-of months: the headline metrics (docs/rules-and-labels.md) for model,
baseline and oracle.

Training (on its test months), ``relapse evaluate`` (on any folder) and
``relapse promote`` (challenger against champion) all judge a model with this
one function, so a number in the MLflow run, in the evaluation JSON and in the
promotion table means the same thing. Metric definitions live in
``models/metrics.py``; the baseline and oracle rankings in ``models/baseline.py``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

import numpy as np
import pandas as pd
from relapse_risk.features.contract import format_month
from relapse_risk.models.baseline import oracle_scores, truth_months
from relapse_risk.models.metrics import (
    BASELINE,
    METRIC_COLUMNS,
    MODEL,
    ORACLE,
    average_over_months,
    calibration_level_shift,
    evaluate,
    expected_calibration_error,
    level_adjusted_ece,
    rank,
    visit_count,
)
from scipy import stats

from .figures import rank_column
from .subgroups import GateLimits, subgroup_table

METHODS: tuple[str, ...] = (MODEL, BASELINE, ORACLE)
HEADLINE = "recall_at_k"


class AssessmentJson(TypedDict):
    """An assessment as plain JSON (:meth:`Assessment.to_json_dict`): tables as lists of records."""

    months: list[str]
    visit_share: float
    averaged: list[dict[str, object]]
    per_month: list[dict[str, object]]
    recall_ratios: dict[str, object]
    subgroups: list[dict[str, object]]
    flagged_groups: list[str]


@dataclass(frozen=True)
class Assessment:
    """Metrics of each method per as-of month and averaged, the rankings, and the subgroup table."""

    months: tuple[dt.date, ...]
    visit_share: float
    per_month: pd.DataFrame
    """``models.metrics.evaluate`` rows: as_of, method, then METRIC_COLUMNS."""
    averaged: pd.DataFrame
    """One row per method: method, months, then the mean of each metric."""
    ranked: pd.DataFrame
    """household_id, as_of, label, lead_time_months, risk_score, rank_<method> (NaN where absent)."""
    subgroups: pd.DataFrame
    """:func:`training.subgroups.subgroup_table`: the fairness gate's table of the model's visit lists."""
    groups: pd.DataFrame
    """:func:`training.subgroups.household_groups` of the assessed months."""

    @property
    def methods(self) -> list[str]:
        return list(self.averaged["method"])

    def mean(self, method: str, metric: str = HEADLINE) -> float:
        rows = self.averaged.loc[self.averaged["method"] == method, metric]
        return float(rows.iloc[0]) if len(rows) else math.nan

    def ratio(self, method: str, reference: str, metric: str = HEADLINE) -> float:
        """Mean of ``metric`` for ``method`` over the mean for ``reference``, on the months both have."""
        both = self.per_month[self.per_month["method"].isin([method, reference])]
        shared = both.groupby("as_of")["method"].nunique()
        months = shared[shared == 2].index
        if len(months) == 0 or method == reference:
            return math.nan if method != reference else 1.0
        means = both[both["as_of"].isin(months)].groupby("method")[metric].mean()
        return float(means[method] / means[reference]) if means[reference] > 0 else math.nan

    def recall_interval(self, method: str = MODEL, confidence: float = 0.9) -> tuple[float, float]:
        """Wilson interval of ``method``'s recall@k pooled over the months: how much a short test can say."""
        ranked = self.ranked
        positive = ranked["label"].to_numpy(dtype=bool)
        caught = int((positive & ranked[f"in_top_k_{method}"].to_numpy(dtype=bool)).sum())
        low, high = stats.binomtest(caught, max(int(positive.sum()), 1)).proportion_ci(
            confidence_level=confidence, method="wilson"
        )
        return float(low), float(high)

    def ranking_with_groups(self) -> pd.DataFrame:
        """The ranked rows with each row's group facts: what a household-by-household comparison needs."""
        ranking = self.ranked.assign(as_of=pd.to_datetime(self.ranked["as_of"]))
        return ranking.merge(self.groups, on=["household_id", "as_of"], how="left", validate="one_to_one")

    @property
    def flagged_groups(self) -> list[str]:
        """Groups the fairness gate refuses: below the rule baseline or miscalibrated, beyond noise."""
        return list(self.subgroups.loc[self.subgroups["flagged"], "group"])

    def to_json_dict(self) -> AssessmentJson:
        """Plain JSON (NaN as null, months as YYYY-MM)."""
        per_month = self.per_month.copy()
        per_month["as_of"] = [format_month(ts.date()) for ts in per_month["as_of"]]
        ratios = {
            f"{MODEL}_vs_{reference}": self.ratio(MODEL, reference)
            for reference in (BASELINE, ORACLE)
            if reference in self.methods
        }
        return {
            "months": [format_month(m) for m in self.months],
            "visit_share": self.visit_share,
            "averaged": _records(self.averaged),
            "per_month": _records(per_month),
            "recall_ratios": {k: _plain(v) for k, v in ratios.items()},
            "subgroups": _records(self.subgroups),
            "flagged_groups": self.flagged_groups,
        }


def assess(
    table: pd.DataFrame,
    risk_score: np.ndarray,
    *,
    visit_share: float,
    groups: pd.DataFrame,
    truth: pd.DataFrame | None = None,
    limits: GateLimits | None = None,
) -> Assessment:
    """Judge ``risk_score`` (aligned with ``table``'s rows) against the rule baseline and the oracle.

    ``table`` holds eligible, labelled rows (a training table slice: household_id, as_of,
    eligible, label, lead_time_months, margin). The oracle is included for the as-of
    months ``truth`` covers; every eligible household of such a month needs a p_true.
    ``groups`` comes from :func:`training.subgroups.household_groups` for the same months.
    """
    risk_score = np.asarray(risk_score, dtype=np.float64)
    if risk_score.shape != (len(table),):
        raise ValueError(f"{risk_score.size} scores for {len(table)} rows")
    if table["label"].isna().any():
        raise ValueError("every assessed row needs a label (t + horizon <= data_end)")
    months = tuple(ts.date() for ts in sorted(table["as_of"].unique()))
    covered = set(truth_months(truth)) if truth is not None else set()

    per_month_frames = []
    ranked_frames = []
    for month in months:
        at = table["as_of"] == pd.Timestamp(month)
        rows = table.loc[at]
        ids = rows["household_id"].to_numpy()
        index = pd.Index(ids, name="household_id")
        scores = {
            MODEL: pd.Series(risk_score[at.to_numpy()], index=index),
            BASELINE: pd.Series(-rows["margin"].to_numpy(dtype=np.float64), index=index),
        }
        if month in covered:
            scores[ORACLE] = oracle_scores(truth, month)  # type: ignore[arg-type]
        per_month_frames.append(evaluate(month, rows, scores, visit_share=visit_share))
        ranked = pd.DataFrame(
            {
                "household_id": ids,
                "as_of": rows["as_of"].to_numpy(),
                "label": rows["label"].to_numpy(dtype=np.int8),
                "lead_time_months": rows["lead_time_months"].to_numpy(dtype=np.float64, na_value=np.nan),
                "risk_score": scores[MODEL].to_numpy(),
                "k": visit_count(visit_share, len(ids)),
            }
        )
        for method in METHODS:
            if method in scores:
                aligned = scores[method].reindex(index).to_numpy(dtype=np.float64)
                ranked[rank_column(method)] = rank(aligned, ids).astype(np.float64)
            else:
                ranked[rank_column(method)] = np.nan
        ranked_frames.append(ranked)

    per_month = pd.concat(per_month_frames, ignore_index=True)
    ranked = pd.concat(ranked_frames, ignore_index=True)
    for method in METHODS:
        ranked[f"in_top_k_{method}"] = ranked[rank_column(method)] <= ranked["k"]
    subgroups = subgroup_table(ranked, groups, limits or GateLimits())
    return Assessment(
        months=months,
        visit_share=visit_share,
        per_month=per_month,
        averaged=average_over_months(per_month),
        ranked=ranked,
        subgroups=subgroups,
        groups=groups,
    )


def calibration_by_month(ranking: pd.DataFrame) -> pd.DataFrame:
    """Each month's calibration split into its level and its shape, from ranked rows (label, risk_score).

    Columns: as_of, observed_over_predicted (the county's outcome rate over its mean score),
    level_shift (log-odds that set the level right), ece, ece_after_level_shift. A shock or a
    trend moves the level for every household at once; the refit re-estimates it on the latest
    months, so promotion judges the shape and reports the level.
    """
    rows = []
    for as_of, month in ranking.groupby("as_of", sort=True):
        label = month["label"].to_numpy()
        score = month["risk_score"].to_numpy(dtype=np.float64)
        rows.append(
            {
                "as_of": as_of,
                "observed_over_predicted": label.mean() / score.mean() if score.mean() > 0 else math.nan,
                "level_shift": calibration_level_shift(label, score),
                "ece": expected_calibration_error(label, score),
                "ece_after_level_shift": level_adjusted_ece(label, score),
            }
        )
    return pd.DataFrame(rows)


def metric_table(assessment: Assessment, metrics: Sequence[str] = METRIC_COLUMNS) -> pd.DataFrame:
    """Averaged metrics with one row per method, for printing."""
    return assessment.averaged[["method", "months", *[m for m in metrics if m in assessment.averaged]]]


def _plain(value: object) -> object:
    if isinstance(value, float | np.floating):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, pd.Timestamp):
        return format_month(value.date())
    return value


def _records(frame: pd.DataFrame) -> list[dict[str, object]]:
    return [{str(k): _plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]
