"""Performance once labels have matured: past scores against what the rules later showed.

For every quarter-end t of the current dataset whose horizon has run out
(t + H <= data_end), the model scores the households eligible at t using only
data up to t, and the rules say which of them fired within H months. recall@k,
precision@k (k = ceil(visit_share x eligible)) and the expected calibration
error are compared, month by month, with the model's own test metrics.
``relapse monitor`` passes the current side's sampled villages when the county
is larger than ``max_rows_per_side`` (:mod:`.sampling`), so k is then the
visit share of the sample's eligible households.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from relapse_risk.features.contract import format_month
from relapse_risk.features.dataset import Dataset
from relapse_risk.features.history import build_features
from relapse_risk.features.rules import labels_for_months
from relapse_risk.features.training_table import quarter_ends
from relapse_risk.models.metrics import (
    expected_calibration_error,
    precision_at_k,
    rank,
    recall_at_k,
    visit_count,
)
from relapse_risk.models.model import RiskModel

from .checks import RETRAIN, Check, judged
from .config import MonitorThresholds

PERFORMANCE_COLUMNS = ("as_of", "eligible", "positives", "k", "recall_at_k", "precision_at_k", "ece")


@dataclass(frozen=True)
class ExpectedPerformance:
    """The model's test metrics (averaged over its test months), where known."""

    recall_at_k: float | None = None
    precision_at_k: float | None = None
    ece: float | None = None


def matured_months(dataset: Dataset, horizon: int, last: int = 4) -> list[dt.date]:
    """The latest ``last`` quarter-ends whose label window ends inside the data."""
    return quarter_ends(dataset.policy, horizon)[-last:]


def performance_by_month(
    dataset: Dataset, model: RiskModel, horizon: int, months: list[dt.date] | None = None
) -> pd.DataFrame:
    """One row per matured month: eligible, positives, k, recall@k, precision@k, ECE."""
    chosen = matured_months(dataset, horizon) if months is None else months
    if not chosen:
        return pd.DataFrame(columns=list(PERFORMANCE_COLUMNS))
    labels = labels_for_months(dataset, chosen, horizon)
    rows = []
    for month in chosen:
        at_month = labels[labels["as_of"] == pd.Timestamp(month)]
        features = build_features(dataset, month)
        eligible = at_month["eligible"].to_numpy(dtype=bool)
        households = features.loc[eligible].reset_index(drop=True)
        outcome = at_month.loc[eligible, "label"].to_numpy(dtype=np.int8)
        risk = model.predict_proba(households)
        k = visit_count(dataset.policy.visit_share, len(households))
        in_top = rank(risk, households["household_id"].to_numpy()) <= k
        rows.append(
            {
                "as_of": format_month(month),
                "eligible": int(len(households)),
                "positives": int(outcome.sum()),
                "k": int(k),
                "recall_at_k": recall_at_k(outcome, in_top),
                "precision_at_k": precision_at_k(outcome, in_top),
                "ece": expected_calibration_error(outcome, risk),
            }
        )
    return pd.DataFrame(rows, columns=list(PERFORMANCE_COLUMNS))


def performance_checks(
    per_month: pd.DataFrame, expected: ExpectedPerformance, thresholds: MonitorThresholds
) -> list[Check]:
    """Drops of recall@k and precision@k below the model's test values, and calibration error."""
    if per_month.empty:
        return []
    months = ", ".join(per_month["as_of"])
    recall, precision, ece = (_mean(per_month[column]) for column in ("recall_at_k", "precision_at_k", "ece"))
    checks = []
    for name, observed, reference, level in (
        ("recall_at_k_drop", recall, expected.recall_at_k, thresholds.recall_drop),
        ("precision_at_k_drop", precision, expected.precision_at_k, thresholds.precision_drop),
    ):
        drop = None if reference is None or math.isnan(observed) else reference - observed
        metric = name.removesuffix("_drop")
        message = (
            f"{metric} {observed:.3f} over matured months {months}"
            + (f" against {reference:.3f} in the model's test months" if reference is not None else "")
            + ("" if reference is not None else " (the model's test value is unknown: not judged)")
        )
        checks.append(judged(name, "performance", drop, level, message, RETRAIN))
    checks.append(
        judged(
            "calibration_error",
            "performance",
            ece,
            thresholds.calibration_error,
            f"expected calibration error {ece:.3f} over matured months {months}"
            + (f" (test {expected.ece:.3f})" if expected.ece is not None else ""),
            RETRAIN + "; the calibrator no longer matches how often rules fire",
        )
    )
    return checks


def _mean(values: pd.Series) -> float:
    """Mean over the months where the metric is defined (a month without positives has no recall)."""
    finite = values.to_numpy(np.float64)
    finite = finite[np.isfinite(finite)]
    return float(finite.mean()) if finite.size else math.nan
