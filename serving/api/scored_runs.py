"""Read-only queries over batch-scored runs (the OUT folders of ``relapse score``).

The API answers ``/visit_list`` and ``/household`` from these runs rather than
rescoring: the quarterly batch run is what staff print and act on, so the API
must show the same ranks. ``runs_dir`` is either one OUT folder (it holds
``scores.parquet``) or a folder of them (one level down; hidden folders, such
as a run still being staged, are skipped).

"Latest" means the greatest as-of month, then the most recently written
``scores.parquet``. Queries go through DuckDB on the Parquet file, so a
province-sized run is filtered without loading it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import duckdb
import pandas as pd

from ..cells import ScoresRow

SCORES_FILE = "scores.parquet"

AreaLevel = Literal["county", "township"]


@dataclass(frozen=True)
class ScoredRun:
    folder: Path
    as_of: str
    model_name: str | None
    model_version: str | None
    written_at: dt.datetime

    @property
    def scores_path(self) -> Path:
        return self.folder / SCORES_FILE


def _run_folders(runs_dir: Path) -> list[Path]:
    if (runs_dir / SCORES_FILE).is_file():
        return [runs_dir]
    if not runs_dir.is_dir():
        return []
    return sorted(
        child
        for child in runs_dir.iterdir()
        if child.is_dir() and not child.name.startswith(".") and (child / SCORES_FILE).is_file()
    )


def _describe_run(folder: Path) -> ScoredRun | None:
    path = folder / SCORES_FILE
    try:
        written = dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.UTC)
        with duckdb.connect() as connection:
            row = connection.execute(
                "SELECT max(as_of), any_value(model_name), any_value(model_version) FROM read_parquet(?)",
                [str(path)],
            ).fetchone()
    except (OSError, duckdb.Error):
        # A run being replaced or a damaged file is skipped, not fatal: the
        # other runs still answer.
        return None
    if row is None or row[0] is None:
        return None
    return ScoredRun(
        folder=folder, as_of=str(row[0]), model_name=row[1], model_version=row[2], written_at=written
    )


class RunCatalog:
    """The runs under one folder, described once per version of each ``scores.parquet``."""

    def __init__(self, runs_dir: Path | None) -> None:
        self.runs_dir = runs_dir
        self._described: dict[tuple[Path, int, int], ScoredRun | None] = {}

    def runs(self) -> list[ScoredRun]:
        """Readable runs, latest first; empty when there is none."""
        if self.runs_dir is None:
            return []
        runs = []
        for folder in _run_folders(self.runs_dir):
            try:
                status = (folder / SCORES_FILE).stat()
            except OSError:
                continue
            key = (folder, status.st_mtime_ns, status.st_size)
            if key not in self._described:
                # A rewritten run replaces its old description rather than adding to it.
                for stale in [k for k in self._described if k[0] == folder]:
                    del self._described[stale]
                self._described[key] = _describe_run(folder)
            if (run := self._described[key]) is not None:
                runs.append(run)
        return sorted(runs, key=lambda r: (r.as_of, r.written_at, r.folder.name), reverse=True)

    def latest(self, as_of: str | None = None) -> ScoredRun | None:
        """The latest run, or the latest for ``as_of`` (``YYYY-MM``) when given."""
        for run in self.runs():
            if as_of is None or run.as_of == as_of:
                return run
        return None

    def latest_up_to(self, as_of: str) -> list[ScoredRun]:
        """Runs with an as-of month at or before ``as_of``, latest first (never later data)."""
        return [run for run in self.runs() if run.as_of <= as_of]


def visit_list(run: ScoredRun, level: AreaLevel, area_code: str, capacity: int) -> tuple[pd.DataFrame, int]:
    """The ``capacity`` highest-ranked scored households of one county or township, and how many are scored.

    Rows come in rank order of that area (``rank_county`` or ``rank_township``).
    """
    area_column, rank_column = f"{level}_code", f"rank_{level}"
    source = "read_parquet(?)"
    path = str(run.scores_path)
    connection = duckdb.connect()
    try:
        scored = connection.execute(
            f"SELECT count(*) FROM {source} WHERE status = 'scored' AND {area_column} = ?", [path, area_code]
        ).fetchone()
        rows = connection.execute(
            f"SELECT * FROM {source} WHERE status = 'scored' AND {area_column} = ? "
            f"ORDER BY {rank_column}, household_id LIMIT ?",
            [path, area_code, capacity],
        ).df()
    finally:
        connection.close()
    return rows, int(scored[0]) if scored else 0


def household_row(runs: list[ScoredRun], household_id: str) -> tuple[ScoredRun, ScoresRow] | None:
    """The household's row in the latest run that holds it."""
    connection = duckdb.connect()
    try:
        for run in runs:
            try:
                frame = connection.execute(
                    "SELECT * FROM read_parquet(?) WHERE household_id = ? LIMIT 1",
                    [str(run.scores_path), household_id],
                ).df()
            except duckdb.Error:
                continue
            if len(frame):
                return run, frame.iloc[0].to_dict()
    finally:
        connection.close()
    return None
