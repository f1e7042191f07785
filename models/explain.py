"""Why a household scores high: TreeSHAP contributions, driver families, and reasons.

Contributions come from LightGBM's own TreeSHAP (``pred_contrib=True``), the
same algorithm ``shap.TreeExplainer`` runs for LightGBM, without the extra
dependency at serving time. They are in log-odds and add up exactly:

    raw_score(x) = base_value + sum_j contribution_j(x)

The calibrated probability is a monotone map of the raw score, so a feature
that pushes the log-odds up pushes the probability up too.

Only the rows handed in are explained: serving explains the visit list, not
the county. :func:`contribution_tables` prepares a booster once for
:mod:`.treeshap`, which computes the same values as LightGBM (to about
1e-14) several times faster, for one row as for a million; the API and the
batch both use it, so they give a household the same reasons. Boosters it
cannot handle (linear trees, multiclass) are explained by LightGBM.

Driver families are the catalogue's families with two refinements that make
reasons specific: wage income belongs with ``employment`` (it is what work
pays), and agriculture and business income join the crop, livestock and
business-failure events in ``agriculture`` and ``business``; transfers and
property stay in ``income`` with the totals and margins.
"""

from __future__ import annotations

import json
import math
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from relapse_risk.features.catalogue import FEATURES_BY_NAME

from .model import FeatureMismatchError, RiskModel
from .reasons import REASON_COLUMNS, Reason, choose_reasons

if TYPE_CHECKING:
    from pandas._typing import Axes  # what DataFrame takes as an index

    from .treeshap import TreeShapTables

_TABLES_BY_BOOSTER: weakref.WeakKeyDictionary[object, TreeShapTables | None] = weakref.WeakKeyDictionary()
"""Memo of :func:`contribution_tables`: a trained booster never changes, and the entry goes with it."""
_TABLES_LOCK = threading.Lock()

OTHER_FAMILY = "other"

_SOURCE_FAMILY = {
    "wage_migrant": "employment",
    "wage_local": "employment",
    "agriculture": "agriculture",
    "business": "business",
}
_EVENT_FAMILY = {
    "crop_failure": "agriculture",
    "livestock_loss": "agriculture",
    "business_failure": "business",
}

DRIVER_FAMILIES: tuple[str, ...] = (
    "income",
    "employment",
    "agriculture",
    "business",
    "health",
    "disability",
    "education",
    "loans",
    "shocks",
    "household",
    "assistance",
    "reporting",
    "location",
    OTHER_FAMILY,
)


def driver_family(feature: str) -> str:
    """The driver family a feature's contribution counts towards (``other`` if not catalogued)."""
    known = _CATALOGUE_FAMILIES.get(feature)
    return known if known is not None else _driver_family(feature)


def _driver_family(feature: str) -> str:
    for source, family in _SOURCE_FAMILY.items():
        if feature.startswith(f"income_{source}_"):
            return family
    for kind, family in _EVENT_FAMILY.items():
        if feature in (f"events_{kind}_12m", f"months_since_{kind}"):
            return family
    spec = FEATURES_BY_NAME.get(feature)
    return spec.family if spec is not None else OTHER_FAMILY


_CATALOGUE_FAMILIES: Mapping[str, str] = MappingProxyType(
    {name: _driver_family(name) for name in FEATURES_BY_NAME}
)
"""The family of every catalogued feature, worked out once: every explained round asks for all of them."""


@dataclass(frozen=True)
class Contributions:
    """Per-row, per-feature TreeSHAP values in log-odds, and the base value they start from."""

    feature_names: tuple[str, ...]
    values: np.ndarray
    """Shape (rows, features)."""
    base_value: np.ndarray
    """Shape (rows,): the expected raw score; the same for every row of one model."""

    @property
    def raw_score(self) -> np.ndarray:
        raw_score: np.ndarray = self.base_value + self.values.sum(axis=1)
        return raw_score

    def frame(self, index: Axes | None = None) -> pd.DataFrame:
        return pd.DataFrame(self.values, columns=list(self.feature_names), index=index)


def contribution_tables(model: RiskModel) -> TreeShapTables | None:
    """The model's booster prepared for fast TreeSHAP, or None to let LightGBM explain it.

    Built on the first call for a booster and kept with it (about 2 s for the
    champion; the kernels are compiled once and cached on disk), so a server
    that loads its model once pays once (see :func:`warm_up_explainer`), after
    which a single row costs a fraction of LightGBM's pred_contrib. None when
    the booster has trees :mod:`.treeshap` does not handle (linear,
    multiclass); :func:`shap_contributions` then asks LightGBM.
    """
    booster = model.booster_
    with _TABLES_LOCK:
        if booster in _TABLES_BY_BOOSTER:
            return _TABLES_BY_BOOSTER[booster]
        # Imported only here: callers that never explain need not load numba.
        from .treeshap import TreeShapTables

        tables = TreeShapTables.from_booster(booster) if TreeShapTables.supports(booster) else None
        _TABLES_BY_BOOSTER[booster] = tables
        return tables


def warm_up_explainer(model: RiskModel) -> None:
    """Build the model's TreeSHAP tables and compile their kernels now, so the first request does not."""
    tables = contribution_tables(model)
    if tables is not None:
        tables.warm_up()


def shap_contributions(
    model: RiskModel, X: pd.DataFrame, tables: TreeShapTables | None = None
) -> Contributions:
    """TreeSHAP of every row of ``X`` (log-odds): by ``tables`` when given, else by LightGBM."""
    return _contributions(model, model.feature_matrix(X), tables)


def _contributions(model: RiskModel, matrix: np.ndarray, tables: TreeShapTables | None) -> Contributions:
    """:func:`shap_contributions` of the model's feature matrix of the rows."""
    width = len(model.feature_names_)
    if matrix.shape[0] == 0:
        return Contributions(model.feature_names_, np.zeros((0, width)), np.zeros(0))
    predicted: object
    if tables is not None:
        predicted = tables.contributions(matrix)
    else:
        predicted = model.booster_.predict(matrix, pred_contrib=True, num_threads=model.num_threads)
    raw = np.asarray(predicted, dtype=np.float64).reshape(matrix.shape[0], width + 1)
    return Contributions(model.feature_names_, raw[:, :width], raw[:, width])


def family_contributions(contributions: Contributions) -> pd.DataFrame:
    """Contributions summed by driver family: one column per family present, rows as given."""
    families = [driver_family(f) for f in contributions.feature_names]
    present = [f for f in DRIVER_FAMILIES if f in families]
    codes = np.array([present.index(f) for f in families], dtype=np.int64)
    summed = np.zeros((contributions.values.shape[0], len(present)))
    for j, family_index in enumerate(codes):
        summed[:, family_index] += contributions.values[:, j]
    return pd.DataFrame(summed, columns=present)


def global_importance(contributions: Contributions) -> pd.DataFrame:
    """Mean |SHAP| per feature with its driver family, descending: the model card's importance table."""
    mean_abs = np.abs(contributions.values).mean(axis=0) if len(contributions.values) else np.zeros(0)
    table = pd.DataFrame(
        {
            "feature": list(contributions.feature_names),
            "family": [driver_family(f) for f in contributions.feature_names],
            "mean_abs_shap": mean_abs,
        }
    )
    return table.sort_values(
        ["mean_abs_shap", "feature"], ascending=[False, True], kind="stable"
    ).reset_index(drop=True)


def explain(
    model: RiskModel, X: pd.DataFrame, top: int = 3, *, tables: TreeShapTables | None = None
) -> pd.DataFrame:
    """The ``top`` reasons for each row of ``X``, in Chinese and English, with evidence.

    Columns: ``household_id`` (from ``X``, else its index), then for i in
    1..top ``reason_i_code``, ``reason_i_zh``, ``reason_i_en``,
    ``reason_i_measure`` (a stable measure code), ``reason_i_measure_zh``,
    ``reason_i_measure_en``, ``reason_i_family``, ``reason_i_contribution``
    (log-odds the family adds) and ``reason_i_evidence`` (JSON of the
    household's own feature values the sentence quotes). Households with
    fewer than ``top`` risk-raising drivers get nulls in the remaining slots.
    Evidence may use feature columns of ``X`` beyond those the model uses.
    Contributions come from ``tables``, by default the model's own
    :func:`contribution_tables`, so every caller gives a household the same
    reasons; LightGBM's only for boosters those do not handle.
    """
    chosen = explain_reasons(model, X, top, tables=tables)
    ids = X["household_id"].astype(str).to_numpy() if "household_id" in X.columns else X.index.to_numpy()
    return reasons_frame(ids, chosen, top)


def explain_reasons(
    model: RiskModel, X: pd.DataFrame, top: int = 3, *, tables: TreeShapTables | None = None
) -> list[list[Reason]]:
    """The ``top`` reasons of each row of ``X``, in row order: :func:`explain` before its layout.

    Scoring takes these straight into its own columns, without the frame of every reason field.
    """
    if top < 1:
        raise ValueError("top must be at least 1")
    if tables is None:
        tables = contribution_tables(model)
    # One conversion of X's features serves the contributions and the evidence the reasons quote.
    matrix = model.feature_matrix(X)
    contributions = _contributions(model, matrix, tables)
    families = tuple(driver_family(f) for f in contributions.feature_names)
    return choose_reasons(
        contributions.values, contributions.feature_names, families, X, top, feature_values=matrix
    )


def explain_households(
    model: RiskModel, features: pd.DataFrame, household_ids: Sequence[str] = (), top: int = 3
) -> pd.DataFrame:
    """Risk score and reasons for the named households of a feature table (all rows when none are named).

    Rows come back highest risk first (ties by household_id). Unknown ids are
    an error that names them.
    """
    if "household_id" not in features.columns:
        raise FeatureMismatchError("the feature table has no household_id column")
    ids = features["household_id"].astype(str)
    if household_ids:
        wanted = list(dict.fromkeys(str(h) for h in household_ids))
        unknown = sorted(set(wanted) - set(ids))
        if unknown:
            raise FeatureMismatchError(f"household(s) not in the feature table: {', '.join(unknown[:20])}")
        features = features.loc[ids.isin(wanted).to_numpy()]
    features = features.assign(household_id=features["household_id"].astype(str)).reset_index(drop=True)
    reasons = explain(model, features, top=top)
    reasons.insert(1, "risk_score", model.predict_proba(features))
    return reasons.sort_values(
        ["risk_score", "household_id"], ascending=[False, True], kind="stable"
    ).reset_index(drop=True)


def reasons_frame(
    household_ids: Sequence[object] | np.ndarray, chosen: Sequence[Sequence[Reason]], top: int
) -> pd.DataFrame:
    """Lay out chosen reasons in the ``reason_{i}_*`` columns of docs/outputs.md."""
    columns: dict[str, list[object]] = {"household_id": list(household_ids)}
    for i in range(1, top + 1):
        for field in REASON_COLUMNS:
            columns[f"reason_{i}_{field}"] = []
    for reasons in chosen:
        for i in range(1, top + 1):
            reason = reasons[i - 1] if i <= len(reasons) else None
            for field in REASON_COLUMNS:
                columns[f"reason_{i}_{field}"].append(reason_field(reason, field))
    frame = pd.DataFrame(columns)
    for i in range(1, top + 1):
        frame[f"reason_{i}_contribution"] = frame[f"reason_{i}_contribution"].astype("float64")
    return frame


def reason_field(reason: Reason | None, field: str) -> object:
    """One ``reason_{i}_{field}`` cell of a reason (None, or NaN for ``contribution``, for an empty slot).

    ``measure`` is the measure's stable code; ``evidence`` its JSON.
    """
    if reason is None:
        return math.nan if field == "contribution" else None
    if field == "evidence":
        return json.dumps(reason.evidence, ensure_ascii=False, sort_keys=True)
    if field == "measure":
        return reason.measure.code
    if field == "measure_zh":
        return reason.measure.zh
    if field == "measure_en":
        return reason.measure.en
    return getattr(reason, field)
