"""Choosing up to three reasons for each household from its TreeSHAP contributions.

How reasons are chosen for a household (:func:`choose_reasons`):

1. Driver families are ranked by their summed contribution; only families
   that push the risk up (sum > 0) are considered.
2. Within a family, the templates whose guard holds for this household and
   whose own driver features push the risk up are candidates; the one with
   the largest own contribution wins, ties going to the earlier template.
3. A family with no candidate is skipped and the next family is tried, so a
   household is never told about an illness, loan or disability it does not
   have: every guard checks the evidence it quotes.
4. At most one reason per family, at most ``top`` reasons. Nothing here is
   random, so the same features and model give the same reasons.
5. A household whose risk is above the base rate (contributions sum > 0) but
   for which no family yields a reason (many small pushes, none with a fact
   worth a sentence) gets the one general reason
   :data:`.templates.NO_SINGLE_DRIVER`: docs/outputs.md requires a reason for everyone in the
   visit list, and the honest one is that the visit must find the cause.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .measures import Measure
from .templates import NO_SINGLE_DRIVER, TEMPLATES, ReasonTemplate

REASON_COLUMNS = (
    "code",
    "zh",
    "en",
    "measure",
    "measure_zh",
    "measure_en",
    "family",
    "contribution",
    "evidence",
)
"""Suffixes of the ``reason_{i}_*`` output columns, in order."""


@dataclass(frozen=True)
class Reason:
    """One reason chosen for one household."""

    code: str
    family: str
    zh: str
    en: str
    measure: Measure
    contribution: float
    """Log-odds the reason's driver family adds to the household's score."""
    evidence: dict[str, float]
    """The household's own feature values the sentences quote (finite values only)."""


def _evidence_values(
    frame: pd.DataFrame, names: set[str], given: Mapping[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Every name as a float array over the frame's rows; NaN where the column is absent or not numeric.

    ``given``: float64 values of some of the frame's numeric columns, already converted by the caller
    (the model's feature matrix); only the other names are converted here.
    """
    # One look at the dtypes and one conversion, not a column object per name: for the few rows
    # of an API round, pandas' per-column overhead would cost more than the reasons themselves.
    if not frame.columns.is_unique:
        raise ValueError("feature columns must have unique names")
    given = {} if given is None else given
    dtypes = dict(zip(frame.columns.tolist(), frame.dtypes.tolist(), strict=True))
    # Judged once per distinct dtype (a feature table has one or two), not once per name.
    number_kinds = {
        dtype: pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)
        for dtype in set(dtypes.values())
    }
    numeric = sorted(
        name for name in names if name not in given and name in dtypes and number_kinds[dtypes[name]]
    )
    values = {name: given[name] for name in names if name in given}
    if numeric:
        # By position: a list of labels makes pandas build and search an index of them.
        position = {name: j for j, name in enumerate(dtypes)}
        chosen = frame.iloc[:, np.asarray([position[name] for name in numeric], dtype=np.intp)]
        matrix = chosen.to_numpy(dtype=np.float64, na_value=np.nan)
        values.update((name, matrix[:, j]) for j, name in enumerate(numeric))
    missing = np.full(len(frame), np.nan)
    missing.flags.writeable = False
    return {name: values.get(name, missing) for name in names}


def _sums_in_order(contributions: np.ndarray, groups: Sequence[Sequence[int]]) -> np.ndarray:
    """Per group of columns, each row's sum of those columns added one at a time in the order given.

    Sequential sums, not .sum(axis=1): numpy's reduction order depends on the row count, and a
    last-bit difference would break a tie (drivers the model never split on add exact zeros) one way
    for a household explained alone and the other way in a batch. All groups step by step together,
    shorter ones padded with zeros (adding 0.0 changes no sum), so the result is exactly that of
    ``0.0 + first + second ...`` per group. One (rows, groups) column of terms at a time rather than
    a (rows, groups, longest group) block: at 10,000 rows and 231 features that block was 5-10
    times slower to gather and accumulate.
    """
    rows, width = contributions.shape
    depth = max(map(len, groups), default=0)
    padded = np.full((len(groups), depth), width, dtype=np.intp)  # ``width``: the zero column below
    for g, columns in enumerate(groups):
        padded[g, : len(columns)] = columns
    extended = np.concatenate([contributions, np.zeros((rows, 1))], axis=1, dtype=np.float64)
    total = np.zeros((rows, len(groups)))
    for step in range(depth):
        total += extended[:, padded[:, step]]
    return total


def choose_reasons(
    contributions: np.ndarray,
    feature_names: Sequence[str],
    families: Sequence[str],
    features: pd.DataFrame,
    top: int = 3,
    templates: Sequence[ReasonTemplate] = TEMPLATES,
    *,
    feature_values: np.ndarray | None = None,
) -> list[list[Reason]]:
    """Up to ``top`` reasons per row (see the module docstring for the rules).

    ``contributions`` has one row per row of ``features`` and one column per
    entry of ``feature_names`` (log-odds), ``families`` gives each feature's
    driver family, and ``features`` holds the households' feature values the
    guards test and the sentences quote. ``feature_values``, when given, is
    ``features``' columns of ``feature_names`` as float64 (the matrix the
    contributions were computed from): the values are read from it, not
    converted from ``features`` once more.
    """
    rows = contributions.shape[0]
    if rows != len(features):
        raise ValueError(f"{rows} rows of contributions for {len(features)} rows of features")
    if contributions.shape[1] != len(feature_names) or len(families) != len(feature_names):
        raise ValueError("contributions, feature_names and families must describe the same features")
    column_of = {name: j for j, name in enumerate(feature_names)}
    # Each family's columns in feature order, families in order of first appearance: one pass.
    family_columns: dict[str, list[int]] = {}
    for j, family in enumerate(families):
        family_columns.setdefault(family, []).append(j)
    family_names = list(family_columns)
    family_support = _sums_in_order(contributions, list(family_columns.values()))

    usable = [t for t in templates if t.family in family_names]
    needed = {name for t in (*usable, NO_SINGLE_DRIVER) for name in (*t.drivers, *t.evidence)}
    given = None
    if feature_values is not None:
        if feature_values.shape != (rows, len(feature_names)):
            raise ValueError("feature_values must have one row per row and one column per feature name")
        given = {name: feature_values[:, j] for name, j in column_of.items() if name in needed}
    values = _evidence_values(features, needed, given)
    support = _sums_in_order(
        contributions, [[column_of[d] for d in t.drivers if d in column_of] for t in usable]
    )
    valid = np.zeros((rows, len(usable)), dtype=bool)
    with np.errstate(invalid="ignore"):
        for k, template in enumerate(usable):
            valid[:, k] = np.asarray(template.applies(values), dtype=bool)
    valid &= support > 0
    template_family = np.array([family_names.index(t.family) for t in usable], dtype=np.int64)

    # Per row and family, the best candidate template: the largest own support among the templates of
    # the family that hold for the row (valid implies support > 0); argmax keeps the first of ties.
    of_family = template_family[None, :] == np.arange(len(family_names))[:, None]
    candidates = valid[:, None, :] & of_family[None, :, :]
    scores = np.where(candidates, support[:, None, :], -np.inf)
    best_index: np.ndarray = (
        np.argmax(scores, axis=2) if usable else np.zeros(scores.shape[:2], dtype=np.intp)
    )
    best: list[list[int]] = best_index.tolist()
    has_candidate = candidates.any(axis=2).tolist()
    # Families by descending support; ties by first appearance (stable sort).
    family_order = np.argsort(-family_support, axis=1, kind="stable").tolist()
    family_sums = family_support.tolist()

    chosen: list[list[Reason]] = []
    for i in range(rows):
        reasons: list[Reason] = []
        for f in family_order[i]:
            if len(reasons) == top or family_sums[i][f] <= 0:
                break
            if has_candidate[i][f]:
                reasons.append(_reason(usable[best[i][f]], values, i, family_sums[i][f]))
        if not reasons and (total := float(contributions[i].sum())) > 0:
            reasons.append(_reason(NO_SINGLE_DRIVER, values, i, total))
        chosen.append(reasons)
    return chosen


def _reason(template: ReasonTemplate, values: dict[str, np.ndarray], row: int, contribution: float) -> Reason:
    row_values = {name: float(values[name][row]) for name in (*template.drivers, *template.evidence)}
    zh, en = template.render(row_values)
    evidence = {
        name: round(row_values[name], 4) for name in template.evidence if math.isfinite(row_values[name])
    }
    return Reason(template.code, template.family, zh, en, template.measure, contribution, evidence)
