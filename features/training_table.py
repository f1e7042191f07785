"""Training examples: point-in-time features plus the rules' labels, for many as-of months.

One row per household eligible at an as-of month t (docs/rules-and-labels.md: not under
monitoring and no rule firing at t), carrying the features of
:func:`~.history.build_features` at t and the label of whether a rule fires in
t+1 .. t+H. Labels come from :func:`~.rules.labels_for_months`, so this module
never restates the rules.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .catalogue import FEATURE_NAMES
from .contract import format_month, month_index, month_start
from .dataset import Dataset
from .errors import MonthOutsideDataError
from .history import build_features
from .policy import Policy
from .rules import labels_for_months

QUARTER_END_MONTHS = (3, 6, 9, 12)
HISTORY_BEFORE_FIRST_AS_OF = 12
"""Months of records before the first default as-of month: a year of income
gives I(t), so features and labels are not built on a half-empty window."""

LABEL_COLUMNS_KEPT: tuple[str, ...] = ("eligible", "label", "lead_time_months", "margin")
"""Columns of the rules' labels kept in the training table, after the features."""
TRAINING_TABLE_COLUMNS: tuple[str, ...] = ("household_id", "as_of", *FEATURE_NAMES, *LABEL_COLUMNS_KEPT)


def quarter_ends(policy: Policy, horizon: int = 6) -> list[dt.date]:
    """Default as-of months: every quarter-end month (Mar, Jun, Sep, Dec) from
    ``data_start`` + 12 months to the last month t with t + ``horizon`` <= ``data_end``.

    Empty when the data are too short for any.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1 month, got {horizon}")
    first = policy.first_month_index + HISTORY_BEFORE_FIRST_AS_OF
    last = policy.last_month_index - horizon
    return [month_start(i) for i in range(first, last + 1) if month_start(i).month in QUARTER_END_MONTHS]


def build_training_table(
    dataset: Dataset, as_of_months: Sequence[dt.date] | None = None, horizon: int = 6
) -> pd.DataFrame:
    """Features and labels of the eligible households at each as-of month.

    ``as_of_months`` default to :func:`quarter_ends`; each must leave room for
    the label window (t + ``horizon`` <= data_end), else ValueError names the
    months. Columns are :data:`TRAINING_TABLE_COLUMNS`: ``household_id``,
    ``as_of`` (datetime64, first day of the month), the feature columns in
    catalogue order (float32), then ``eligible`` (always True here), ``label``
    (int8, 0/1), ``lead_time_months`` (nullable Int16, set for positives) and
    ``margin`` (the rule baseline's margin at t). Rows are sorted by as_of, then
    household_id.
    """
    policy = dataset.policy
    requested = quarter_ends(policy, horizon) if as_of_months is None else as_of_months
    months = sorted({m.replace(day=1) for m in requested})
    unlabelled = [format_month(m) for m in months if month_index(m) + horizon > policy.last_month_index]
    if unlabelled:
        raise MonthOutsideDataError(
            f"as-of month(s) {', '.join(unlabelled)} have no label: t + horizon ({horizon}) "
            f"runs past data_end {format_month(policy.data_end)}"
        )
    if not months:
        return _empty_table()

    labels = labels_for_months(dataset, months, horizon)
    tables = []
    for month in months:
        at_month = labels[labels["as_of"] == pd.Timestamp(month)]
        features = build_features(dataset, month)
        if not np.array_equal(features["household_id"].to_numpy(), at_month["household_id"].to_numpy()):
            raise RuntimeError("features and labels list different households")  # both sort by id
        eligible = at_month["eligible"].to_numpy(dtype=bool)
        table = features.loc[eligible].reset_index(drop=True)
        kept = at_month.loc[eligible].reset_index(drop=True)
        table.insert(1, "as_of", kept["as_of"])
        table["eligible"] = kept["eligible"].to_numpy(dtype=bool)
        table["label"] = kept["label"].to_numpy(dtype=np.int8)
        table["lead_time_months"] = kept["lead_time_months"].astype("Int16")
        table["margin"] = kept["margin"].to_numpy(dtype=np.float64)
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def _empty_table() -> pd.DataFrame:
    columns: dict[str, pd.Series] = {
        "household_id": pd.Series([], dtype=object),
        "as_of": pd.Series([], dtype="datetime64[ns]"),
    }
    columns.update({name: pd.Series([], dtype=np.float32) for name in FEATURE_NAMES})
    columns["eligible"] = pd.Series([], dtype=bool)
    columns["label"] = pd.Series([], dtype=np.int8)
    columns["lead_time_months"] = pd.Series([], dtype="Int16")
    columns["margin"] = pd.Series([], dtype=np.float64)
    return pd.DataFrame(columns)
