"""Headline metrics of docs/rules-and-labels.md for one as-of month, and their average over months.

Everything here is a pure function of labels and scores. A method is anything
that gives each eligible household a score where higher means "visit first":
the model's calibrated probability, the oracle's p_true, or the rule baseline's
negated margin (models/baseline.py).

- Ranking (:func:`rank`): score descending, ties broken by household_id
  ascending, undefined (NaN) scores last; the same inputs always give the same
  order, so the top k is reproducible.
- k = ceil(visit_share x eligible households), computed in decimal so that,
  e.g., 0.07 x 100 is 7 and not 8 (:func:`visit_count`).
- recall@k, precision@k and the median lead time of the label-1 households in
  the top k; ROC AUC and average precision (scikit-learn) over all eligible
  households, with NaN scores treated as tied below every defined score.
- Expected calibration error (:func:`expected_calibration_error`): ten
  equal-width bins on [0, 1]; probability p falls in bin floor(10 p), p = 1 in
  the last; ECE = sum over bins of (households in bin / households) x
  |share of label 1 in bin - mean p in bin|. Only for methods whose scores are
  probabilities; NaN for the rule baseline.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Collection, Mapping
from fractions import Fraction

import numpy as np
import pandas as pd
from scipy import optimize
from sklearn.metrics import average_precision_score, roc_auc_score

MODEL = "model"
"""Method name of the risk model's own ranking."""
BASELINE = "rule_baseline"
"""Method name of the rule baseline; it has no probabilities, so no ECE."""
ORACLE = "oracle"
"""Method name of the ranking by the generator's p_true."""
ECE_BINS = 10

METRIC_COLUMNS: tuple[str, ...] = (
    "eligible",
    "positives",
    "k",
    "hits_at_k",
    "recall_at_k",
    "precision_at_k",
    "median_lead_time_months",
    "roc_auc",
    "average_precision",
    "ece",
)
"""Metric columns of :func:`evaluate`, after ``as_of`` and ``method``."""


def visit_count(visit_share: float, eligible: int) -> int:
    """k = ceil(visit_share x eligible): how many households staff visit in one round.

    The product is taken in decimal (the share as written, e.g. 0.07) so binary
    rounding cannot push an exact product up to the next integer.
    """
    if not 0 < visit_share <= 1:
        raise ValueError(f"visit_share must be in (0, 1], got {visit_share}")
    if eligible < 0:
        raise ValueError(f"eligible must be >= 0, got {eligible}")
    return math.ceil(Fraction(str(visit_share)) * eligible)


def rank(scores: np.ndarray | pd.Series, household_ids: np.ndarray | pd.Series) -> np.ndarray:
    """1-based rank of each household (aligned with the inputs): score descending, ties by
    household_id ascending, NaN scores last (also ordered by household_id)."""
    values = np.asarray(scores, dtype=np.float64)
    ids = np.asarray(household_ids).astype(str)
    if values.shape != ids.shape or values.ndim != 1:
        raise ValueError(
            f"scores {values.shape} and household_ids {ids.shape} must be 1-d and of equal length"
        )
    undefined = np.isnan(values)
    descending = np.where(undefined, 0.0, -values)
    order = np.lexsort((ids, descending, undefined))  # last key sorts first
    ranks = np.empty(len(values), dtype=np.int64)
    ranks[order] = np.arange(1, len(values) + 1)
    return ranks


def recall_at_k(labels: np.ndarray, in_top_k: np.ndarray) -> float:
    """Share of label-1 households that are in the top k; NaN when there are none."""
    labels, in_top_k = _binary(labels), np.asarray(in_top_k, dtype=bool)
    positives = int(labels.sum())
    return float((labels & in_top_k).sum() / positives) if positives else math.nan


def precision_at_k(labels: np.ndarray, in_top_k: np.ndarray) -> float:
    """Share of the top k with label 1; NaN when k is 0."""
    labels, in_top_k = _binary(labels), np.asarray(in_top_k, dtype=bool)
    k = int(in_top_k.sum())
    return float((labels & in_top_k).sum() / k) if k else math.nan


def median_lead_time(labels: np.ndarray, lead_times: np.ndarray, in_top_k: np.ndarray) -> float:
    """Median months from the as-of month to the first firing, over label-1 households in the top k."""
    selected = _binary(labels) & np.asarray(in_top_k, dtype=bool)
    leads = np.asarray(lead_times, dtype=np.float64)[selected]
    if np.isnan(leads).any():
        raise ValueError("a label-1 household has no lead time")
    return float(np.median(leads)) if len(leads) else math.nan


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC over all given households; NaN when only one class is present."""
    labels = _binary(labels)
    if labels.all() or not labels.any():
        return math.nan
    return float(roc_auc_score(labels, _finite_scores(scores)))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision (area under precision-recall, step-wise); NaN without positives."""
    labels = _binary(labels)
    if not labels.any():
        return math.nan
    return float(average_precision_score(labels, _finite_scores(scores)))


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error with ``bins`` equal-width bins on [0, 1] (see module docstring)."""
    labels = _binary(labels).astype(np.float64)
    p = np.asarray(probabilities, dtype=np.float64)
    if len(p) == 0:
        return math.nan
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError("calibration error needs probabilities in [0, 1] for every household")
    bin_of = np.minimum(np.floor(p * bins).astype(np.int64), bins - 1)
    label_sum = np.bincount(bin_of, weights=labels, minlength=bins)
    probability_sum = np.bincount(bin_of, weights=p, minlength=bins)
    # |mean label - mean p| x count / N, written with sums so empty bins add exactly zero.
    return float(np.abs(label_sum - probability_sum).sum() / len(p))


def calibration_level_shift(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The constant added to every score's log-odds that makes the mean score equal the observed rate.

    Calibration-in-the-large: 0 when the scores are right on average. A shock (a lockdown, a
    bad harvest) moves it for every household at once, whatever the model.
    """
    labels = _binary(labels).astype(np.float64)
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-9, 1 - 1e-9)
    observed = labels.mean() if len(labels) else math.nan
    if not 0 < observed < 1:
        return math.nan
    logit = np.log(p) - np.log1p(-p)

    def excess(shift: float) -> float:
        return float((1.0 / (1.0 + np.exp(-(logit + shift)))).mean() - observed)

    return float(optimize.brentq(excess, -20.0, 20.0, xtol=1e-10))


def level_adjusted_ece(labels: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error after :func:`calibration_level_shift`: the calibration's shape.

    What remains once the average level is set right: whether the model orders and spreads its
    probabilities as the outcomes do. The level itself is re-estimated on the latest months at
    every refit; its drift on the test months is a fact about the county, reported beside this.
    """
    shift = calibration_level_shift(labels, probabilities)
    if math.isnan(shift):
        return math.nan
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-9, 1 - 1e-9)
    adjusted = 1.0 / (1.0 + np.exp(-(np.log(p) - np.log1p(-p) + shift)))
    return expected_calibration_error(labels, adjusted, bins)


def evaluate(
    as_of: dt.date,
    eligible_labels_frame: pd.DataFrame,
    scores_by_method: Mapping[str, pd.Series],
    *,
    visit_share: float,
    probabilistic: Collection[str] | None = None,
) -> pd.DataFrame:
    """The headline metrics of every method at one as-of month, one row per method.

    ``eligible_labels_frame`` is a labels frame (features/rules.py columns:
    household_id, as_of, eligible, label, lead_time_months); rows of other
    as-of months and ineligible households are ignored. ``scores_by_method``
    maps a method name to scores indexed by household_id (higher = visit
    first); every eligible household needs a score (NaN ranks last). ECE is
    computed for the methods in ``probabilistic`` (default: all but
    :data:`BASELINE`) and NaN for the others.

    Raises ValueError when labels at ``as_of`` are undefined (horizon past the
    end of data) or a method lacks scores for eligible households.
    """
    as_of = as_of.replace(day=1)
    rows = eligible_labels_frame[
        (eligible_labels_frame["as_of"] == pd.Timestamp(as_of))
        & eligible_labels_frame["eligible"].astype(bool)
    ]
    if rows["label"].isna().any():
        undefined = int(rows["label"].isna().sum())
        raise ValueError(
            f"labels at {as_of:%Y-%m} are undefined for {undefined} eligible households "
            "(the horizon runs past the end of the data)"
        )
    if rows["household_id"].duplicated().any():
        raise ValueError(f"household_id repeats among the eligible rows of {as_of:%Y-%m}")
    ids = rows["household_id"].to_numpy()
    labels = rows["label"].to_numpy(dtype=np.int8)
    lead_times = rows["lead_time_months"].to_numpy(dtype=np.float64, na_value=np.nan)
    k = visit_count(visit_share, len(ids))
    with_probabilities = set(scores_by_method) - {BASELINE} if probabilistic is None else set(probabilistic)

    records = []
    for method, method_scores in scores_by_method.items():
        scores = _aligned_scores(method, method_scores, ids, as_of)
        in_top_k = rank(scores, ids) <= k
        records.append(
            {
                "as_of": pd.Timestamp(as_of),
                "method": method,
                "eligible": len(ids),
                "positives": int(labels.sum()),
                "k": k,
                "hits_at_k": int((labels.astype(bool) & in_top_k).sum()),
                "recall_at_k": recall_at_k(labels, in_top_k),
                "precision_at_k": precision_at_k(labels, in_top_k),
                "median_lead_time_months": median_lead_time(labels, lead_times, in_top_k),
                "roc_auc": roc_auc(labels, scores),
                "average_precision": average_precision(labels, scores),
                "ece": expected_calibration_error(labels, scores)
                if method in with_probabilities
                else math.nan,
            }
        )
    return pd.DataFrame.from_records(records, columns=["as_of", "method", *METRIC_COLUMNS])


def average_over_months(per_month: pd.DataFrame) -> pd.DataFrame:
    """Mean of each metric per method over the as-of months of :func:`evaluate` rows.

    Months where a metric is undefined (NaN) are left out of its mean;
    ``months`` counts the as-of months of each method. Methods keep their
    first-seen order.
    """
    metrics = [c for c in METRIC_COLUMNS if c in per_month.columns]
    grouped = per_month.groupby("method", sort=False)
    averaged = grouped[metrics].mean()
    averaged.insert(0, "months", grouped["as_of"].nunique())
    return averaged.reset_index()


def _binary(labels: np.ndarray) -> np.ndarray:
    values = np.asarray(labels)
    if values.dtype != bool and not np.isin(values, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    return values.astype(bool)


def _finite_scores(scores: np.ndarray) -> np.ndarray:
    """NaN scores become one value just below every defined score: tied at the bottom, as in :func:`rank`."""
    values = np.asarray(scores, dtype=np.float64).copy()
    undefined = np.isnan(values)
    if undefined.any():
        floor = np.nextafter(values[~undefined].min(), -np.inf) if (~undefined).any() else 0.0
        values[undefined] = floor
    return values


def _aligned_scores(method: str, scores: pd.Series, household_ids: np.ndarray, as_of: dt.date) -> np.ndarray:
    if scores.index.has_duplicates:
        raise ValueError(f"{method}: household_id repeats in the scores")
    aligned = scores.reindex(household_ids)
    missing = ~pd.Index(household_ids).isin(scores.index)
    if missing.any():
        examples = ", ".join(map(str, household_ids[missing][:3]))
        raise ValueError(
            f"{method}: no score for {int(missing.sum())} eligible households at {as_of:%Y-%m} "
            f"(e.g. {examples})"
        )
    return aligned.to_numpy(dtype=np.float64, na_value=np.nan)
