"""防贫保 budgeting: expected claims and payout of an anti-poverty insurance trigger, and the insured share.

The trigger (:mod:`relapse_risk.features.triggers`) is a label like the
rules' own, so its probability is estimated the way the risk model's is: the
point-in-time features of every household at the labelled quarter-ends of the
dataset, a LightGBM model (:class:`~relapse_risk.models.model.RiskModel`)
trained on all but the last three, stopped early and calibrated on the third
last, and tested on the last two. The test says how far the estimate can be
trusted: its observed claims against the expected, and the relative error that
widens the interval at the run's as-of month (as for the outlook's counts,
:mod:`relapse_risk.models.expected_counts`).

Every household of the households table is in the insured population (防贫保
covers a base that is not named in advance); the insured share is the smallest
share of households, taken by descending claim probability, whose expected
claims reach ``claims_share`` of the county's.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
from relapse_risk.features.catalogue import CATEGORICAL_FEATURES, FEATURE_NAMES
from relapse_risk.features.contract import format_month, month_index
from relapse_risk.features.dataset import Dataset
from relapse_risk.features.errors import RelapseRiskError
from relapse_risk.features.history import build_features
from relapse_risk.features.training_table import quarter_ends
from relapse_risk.features.triggers import IncomeBelow, OutOfPocketAbove, trigger_labels
from relapse_risk.models.expected_counts import (
    DRIFT_WIDENING,
    expected_count,
    relative_count_error,
)
from relapse_risk.models.model import RiskModel

TEST_QUARTERS = 2
"""Latest labelled quarter-ends held out to test the estimate."""
MIN_LABELLED_QUARTERS = TEST_QUARTERS + 2
"""One to train on, one to stop and calibrate on, and the test quarters."""
DEFAULT_CLAIMS_SHARE = 0.9


class InsuranceDataError(RelapseRiskError, ValueError):
    """The dataset holds too little history, or too few claims, to estimate the trigger."""


@dataclass(frozen=True)
class InsuranceEstimate:
    """Expected claims and payout at the as-of month, and the test of the estimate."""

    document: dict[str, object]


def estimate_claims(
    dataset: Dataset,
    trigger: IncomeBelow | OutOfPocketAbove,
    as_of: dt.date,
    horizon: int,
    *,
    claims_share: float = DEFAULT_CLAIMS_SHARE,
    seed: int = 0,
) -> InsuranceEstimate:
    """Train the trigger's model on the dataset's labelled quarter-ends and apply it at ``as_of``."""
    policy = dataset.policy
    labelled = [m for m in quarter_ends(policy, horizon) if month_index(m) < month_index(as_of)]
    if len(labelled) < MIN_LABELLED_QUARTERS:
        raise InsuranceDataError(
            f"{dataset.source or 'the dataset'}: {len(labelled)} labelled quarter-end(s) before "
            f"{format_month(as_of)}; the trigger's model needs {MIN_LABELLED_QUARTERS} "
            f"(train, calibrate, {TEST_QUARTERS} to test)"
        )
    labels = trigger_labels(dataset, trigger, labelled, horizon)

    def table(months: list[dt.date]) -> pd.DataFrame:
        frames = []
        for month in months:
            features = build_features(dataset, month)
            at_month = labels[labels["as_of"] == pd.Timestamp(month)]
            frames.append(features.assign(label=at_month["label"].to_numpy(dtype=np.int8)))
        return pd.concat(frames, ignore_index=True)

    train_months, valid_month, test_months = labelled[:-3], labelled[-3], labelled[-TEST_QUARTERS:]
    train, valid = table(train_months), table([valid_month])
    for role, rows in (("training", train), ("calibration", valid)):
        if rows["label"].sum() < 10:
            raise InsuranceDataError(
                f"{dataset.source or 'the dataset'}: {int(rows['label'].sum())} households met the trigger "
                f"({trigger.describe()}) in the {role} quarters; at least 10 are needed to estimate it"
            )
    model = RiskModel(seed=seed, categorical_features=CATEGORICAL_FEATURES).fit(
        train, train["label"], valid, valid["label"], feature_names=list(FEATURE_NAMES)
    )

    tested = []
    for month in test_months:
        rows = table([month])
        p = model.predict_proba(rows)
        tested.append(
            {
                "as_of": format_month(month),
                "observed_claims": int(rows["label"].sum()),
                "expected_claims": round(float(p.sum()), 1),
                "chance_variance": float(np.sum(p * (1 - p))),
            }
        )
    error = relative_count_error(
        np.array([t["observed_claims"] for t in tested], dtype=np.float64),
        np.array([t["expected_claims"] for t in tested], dtype=np.float64),
        np.array([t["chance_variance"] for t in tested], dtype=np.float64),
    )
    now = build_features(dataset, as_of)
    probability = model.predict_proba(now)
    claims = expected_count(probability, error)
    base_rate = float(probability.mean()) if probability.size else 0.0
    return InsuranceEstimate(
        {
            "trigger": trigger.model_dump(),
            "describes": trigger.describe(),
            "as_of": format_month(as_of),
            "horizon_months": horizon,
            "households": int(probability.size),
            "expected_claims": claims.as_json(),
            "expected_payout": {
                key: round(value * trigger.payout)
                for key, value in claims.as_json().items()
                if key in ("expected", "low", "high")
            },
            "claim_rate": round(base_rate, 5),
            "insured_share": insured_share(probability, claims_share),
            "claims_share": claims_share,
            "test": {
                "quarters": [{k: v for k, v in t.items() if k != "chance_variance"} for t in tested],
                "relative_error": round(error, 4),
                "widening": DRIFT_WIDENING,
                "trained_on": [format_month(m) for m in train_months],
                "calibrated_on": format_month(valid_month),
            },
        }
    )


def insured_share(probability: np.ndarray, claims_share: float) -> float:
    """Smallest share of households, riskiest first, whose expected claims reach ``claims_share`` of all.

    >>> insured_share(np.array([0.5, 0.3, 0.1, 0.1, 0.0]), 0.8)
    0.4
    """
    if probability.size == 0 or probability.sum() <= 0:
        return 0.0
    ordered = np.sort(probability)[::-1]
    cumulative = np.cumsum(ordered) / ordered.sum()
    needed = int(np.searchsorted(cumulative, claims_share - 1e-12)) + 1
    return round(needed / probability.size, 4)
