"""Cells of a scores-table row read back as Python values: one reading for the API and the visit lists.

A row reaches Python from pandas (``to_dict``), from DuckDB through pandas, or
straight from the scoring arrays (serving/scoring.py), so a missing value is
None, pandas' NA or a float NaN, and a number a Python or numpy scalar. The
API's answers and the printed visit lists narrow each cell they show with
these, so both read a row alike.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping

import numpy as np
import pandas as pd

ScoresRow = Mapping[Hashable, object]
"""One household's row of the scores table (or the part of it an answer reads): column name to cell.

Keyed by ``Hashable`` because that is how pandas gives a row; the columns are
those of :data:`serving.scoring.SCORE_COLUMNS`.
"""

_NUMBER = (int, float, np.number, str)
"""What ``int()`` and ``float()`` read of a cell: Python and numpy numbers, and numbers as text."""


def is_missing(value: object) -> bool:
    """None, pandas' NA or a float NaN (numpy's float64 is a float)."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def present(value: object) -> object:
    """The cell, or None where it is missing."""
    return None if is_missing(value) else value


def to_int(value: object) -> int:
    """``int(value)``; TypeError, as ``int`` raises, for a missing value or anything else not a number."""
    if isinstance(value, _NUMBER):
        return int(value)
    raise TypeError(f"a cell of type {type(value).__name__} is not a whole number")


def to_float(value: object) -> float:
    """``float(value)``; TypeError, as ``float`` raises, for a missing value or anything else not a number."""
    if isinstance(value, _NUMBER):
        return float(value)
    raise TypeError(f"a cell of type {type(value).__name__} is not a number")


def int_or_none(value: object) -> int | None:
    return None if is_missing(value) else to_int(value)


def float_or_none(value: object) -> float | None:
    return None if is_missing(value) else to_float(value)


def text_or_none(value: object) -> str | None:
    return None if is_missing(value) else str(value)
