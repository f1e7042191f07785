"""Village figures of a batch run, so the API scores a household as the batch job did.

Some features describe the household's village, not the household: how many
households it has in the data and what share of them had a shock, are under
monitoring or meet a rule (the ``village_*`` columns of the feature
catalogue). The batch job sees the whole county and computes them from every
household of the village; a ``/score`` request carries one household, or a
few, and cannot. So the batch job writes the figures it used, one row per
village, as ``village_context.parquet`` in its run folder, and the API puts
them in place of the figures of the request's own households before scoring.
For the same rows, as-of month and model version both then give the same
score.

File format: ``village_code`` (str), ``as_of`` (str ``YYYY-MM``), then the
village feature columns as float64.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

VILLAGE_CONTEXT_FILE = "village_context.parquet"
VILLAGE_FEATURE_PREFIX = "village_"


def village_feature_names(feature_names: Iterable[str]) -> tuple[str, ...]:
    """The features that are figures of the household's village rather than of the household."""
    return tuple(name for name in feature_names if name.startswith(VILLAGE_FEATURE_PREFIX))


def village_context(features: pd.DataFrame, villages: pd.DataFrame, as_of: str) -> pd.DataFrame:
    """One row per village with its village features, taken from the households' feature rows.

    ``features`` has ``household_id`` and the feature columns; ``villages``
    maps ``household_id`` to ``village_code`` (its first row for a household
    counts). Every household of a village carries the same village figures, so
    the one with the smallest household id stands for the village.
    """
    names = list(village_feature_names(features.columns))
    ids = features["household_id"].to_numpy(dtype=object)
    rows = pd.DataFrame({"household_id": ids, "village_code": _village_of(ids, villages)})
    rows["row"] = np.arange(len(rows))
    rows = rows[rows["village_code"].notna()]
    if pd.Index(ids).is_monotonic_increasing:
        # The batch job's features are in household-id order: a village's first row is its
        # smallest id, and only the chosen rows need sorting. Sorting all 1,000,000 rows by
        # village and id took most of the 2.5 s this function took at that size.
        chosen = rows.drop_duplicates("village_code").sort_values("village_code", kind="stable")
    else:
        chosen = rows.sort_values(["village_code", "household_id"], kind="stable").drop_duplicates(
            "village_code"
        )
    # Only the chosen rows' village columns are copied out of the (wide) feature table.
    context = features.iloc[chosen["row"].to_numpy()].loc[:, names].reset_index(drop=True)
    context.insert(0, "village_code", chosen["village_code"].astype(str).to_numpy())
    context.insert(1, "as_of", as_of)
    for name in names:
        context[name] = context[name].astype(np.float64)
    return context


def _village_of(ids: np.ndarray, villages: pd.DataFrame) -> np.ndarray:
    """The village code of each of ``ids``: that of the household's first row in ``villages``, or NA."""
    listed = pd.Index(villages["household_id"].to_numpy(dtype=object))
    if listed.equals(pd.Index(ids)) and listed.is_unique:
        # The same households in the same order (the batch job passes its scores table, in
        # household-id order like the features): no look-up by id needed.
        codes: np.ndarray = villages["village_code"].to_numpy(dtype=object)
        return codes
    first = villages.drop_duplicates("household_id").set_index("household_id")["village_code"]
    looked_up: np.ndarray = first.reindex(ids).to_numpy(dtype=object)
    return looked_up


def write_village_context(context: pd.DataFrame, path: Path) -> None:
    """Parquet without pandas metadata, rows by village code, so reruns write the same bytes."""
    ordered = context.sort_values("village_code", kind="stable", ignore_index=True)
    table = pa.Table.from_pandas(ordered, preserve_index=False).replace_schema_metadata(None)
    pq.write_table(table, path, compression="zstd", compression_level=3)


def read_village_context(path: Path) -> pd.DataFrame | None:
    """The context of a run folder's file, or None when the run has none."""
    if not path.is_file():
        return None
    context: pd.DataFrame = pq.read_table(path).to_pandas()
    return context


@dataclass(frozen=True, eq=False)
class VillageFigures:
    """A run's village context indexed by village code: prepared once per file, used by every round.

    ``codes`` holds each village once (its first row in the context);
    ``columns`` maps each village feature of the context to its values in
    the order of ``codes``.
    """

    codes: pd.Index
    columns: Mapping[str, np.ndarray]

    @classmethod
    def of(cls, context: pd.DataFrame) -> VillageFigures:
        first = context.drop_duplicates("village_code")
        names = [n for n in village_feature_names(first.columns) if n != "village_code"]
        return cls(
            codes=pd.Index(first["village_code"].to_numpy()),
            columns=MappingProxyType({name: first[name].to_numpy() for name in names}),
        )


def apply_village_context(
    features: pd.DataFrame, villages: pd.DataFrame, figures: VillageFigures
) -> tuple[pd.DataFrame, np.ndarray]:
    """``features`` with the run's village ``figures`` for households whose village they have.

    Returns the new frame and a boolean array (aligned with ``features``) that
    is True where the figures came from the run; the other rows keep the
    figures computed from the households at hand.
    """
    names = [n for n in village_feature_names(features.columns) if n in figures.columns]
    household_villages = _villages_of(features["household_id"].to_numpy(), villages)
    village_row = figures.codes.get_indexer(pd.Index(household_villages))
    matched = village_row >= 0
    if not matched.any() or not names:
        return features, np.zeros(len(features), dtype=bool)
    rows = np.flatnonzero(matched)
    dtypes = features.dtypes.tolist()
    columns = features.columns
    if columns[0] == "household_id" and columns.is_unique and len(set(dtypes[1:])) == 1:
        # The feature table as build_features lays it out (one dtype after household_id): one copy of
        # its matrix, written in place. pandas sets a 2-D block column by column, which costs more
        # than the rest of this function for the handful of rows of an API round.
        dtype = dtypes[1]
        values_of = columns[1:]
        matrix = features.iloc[:, 1:].to_numpy(dtype=dtype, copy=True)
        values = np.column_stack([figures.columns[name][village_row[rows]] for name in names])
        positions = values_of.get_indexer(pd.Index(names))  # every name is a column: none is -1
        matrix[np.ix_(rows, positions)] = values.astype(dtype, copy=False)
        updated = pd.DataFrame(matrix, columns=values_of, index=features.index, copy=False)
        updated.insert(0, "household_id", features["household_id"])
        return updated, matched
    updated = features.copy()
    by_name = dict(zip(columns, dtypes, strict=True))
    # One assignment per dtype into the copy's own blocks: a column set one at a time becomes a block
    # of its own, which costs every later step on the frame.
    for dtype in dict.fromkeys(by_name[name] for name in names):
        group = [name for name in names if by_name[name] == dtype]
        values = np.column_stack([figures.columns[name][village_row[rows]] for name in group])
        updated.iloc[rows, columns.get_indexer(pd.Index(group))] = values.astype(dtype, copy=False)
    return updated, matched


def _villages_of(household_ids: np.ndarray, villages: pd.DataFrame) -> np.ndarray:
    """The village code of each household (object array, None where ``villages`` lacks it).

    ``villages`` maps ``household_id`` to ``village_code``; a household listed twice takes its first row.
    """
    ids = pd.Index(villages["household_id"].to_numpy())
    codes = villages["village_code"].to_numpy(dtype=object)
    if not ids.is_unique:
        first = ~ids.duplicated(keep="first")
        ids, codes = ids[first], codes[first]
    household_row = ids.get_indexer(pd.Index(household_ids))
    household_villages = np.full(len(household_ids), None, dtype=object)
    placed = household_row >= 0
    household_villages[placed] = codes[household_row[placed]]
    return household_villages
