"""A dataset as the county's system held it at an earlier month.

Backtesting the whole quarterly cycle (train on what the county had, then
score a later quarter whose outcomes have since matured) needs the data as it
stood at a cut month C, not merely a model that ignores later rows: a member
who left after C was still a member at C, a monitoring case eliminated after C
was still open, and support that ended after C was still running.

So, for every month or date column of the contract (features/contract.py):

- a row that *starts* after C (an income month, a bill, an event, a loan, a
  member who joined, a case identified) did not exist at C and is dropped;
- an *end* after C (``left_month``, ``end_month``, ``eliminated_month``: the
  nullable month columns other than ``joined_month``) had not happened at C and
  becomes null, which the contract reads as "still ongoing".

policy.json keeps its rules; data_end becomes C and the monitoring lines of
later years are dropped.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd

from .contract import TABLES, format_month
from .dataset import Dataset
from .errors import MonthOutsideDataError
from .policy import Policy

STARTS_WHEN_NULLABLE = frozenset({"joined_month"})
"""Nullable month columns that mark a beginning (null: there from the start), not an end."""


def snapshot_frames(dataset: Dataset, month: dt.date) -> tuple[Policy, dict[str, pd.DataFrame]]:
    """The policy and tables of ``dataset`` as they stood at the end of ``month``."""
    policy = dataset.policy
    cut = month.replace(day=1)
    if not policy.data_start <= cut <= policy.data_end:
        raise MonthOutsideDataError(
            f"cannot cut at {format_month(cut)}: the data run from {format_month(policy.data_start)} "
            f"to {format_month(policy.data_end)}"
        )
    first_day_after = pd.Timestamp(cut) + pd.offsets.MonthBegin(1)
    frames: dict[str, pd.DataFrame] = {}
    for table in TABLES:
        frame = dataset.frame(table.name)
        keep = pd.Series(True, index=frame.index)
        for column in table.columns:
            if column.kind not in ("month", "date"):
                continue
            after = pd.to_datetime(frame[column.name]) >= first_day_after
            if column.nullable and column.name not in STARTS_WHEN_NULLABLE:
                frame[column.name] = frame[column.name].mask(after)
            else:
                keep &= ~after.fillna(False)
        frames[table.name] = frame[keep].reset_index(drop=True)
    lines = {year: line for year, line in policy.monitoring_line.items() if year <= cut.year}
    return policy.model_copy(update={"data_end": cut, "monitoring_line": lines}), frames


def write_snapshot(dataset: Dataset, month: dt.date, out: Path) -> Path:
    """Write :func:`snapshot_frames` as a dataset folder (policy.json and Parquet tables) at ``out``."""
    policy, frames = snapshot_frames(dataset, month)
    out.mkdir(parents=True, exist_ok=True)
    (out / "policy.json").write_text(json.dumps(policy.to_json_dict(), indent=2), encoding="utf-8")
    for name, frame in frames.items():
        frame.to_parquet(out / f"{name}.parquet", index=False)
    return out
