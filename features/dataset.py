"""A loaded dataset folder: the policy, the clean tables in DuckDB, and the rejects.

Every pipeline (rules, features, scoring, monitoring) reads a :class:`Dataset`,
never files: the loader is the one place that parses, casts and validates.
Tables live in an in-process DuckDB database under their contract names with
the canonical types of :mod:`features.contract`, so large counties are queried
with SQL and only small results become pandas frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from .contract import TABLES, Column, Table
from .errors import RelapseRiskError
from .policy import Policy

_DUCKDB_TYPES = {
    "str": "VARCHAR",
    "month": "DATE",
    "date": "DATE",
    "money": "DOUBLE",
    "float": "DOUBLE",
    "int": "BIGINT",
    "bool": "BOOLEAN",
    "enum": "VARCHAR",
}


def duckdb_type(column: Column) -> str:
    return _DUCKDB_TYPES[column.kind]


class DatasetError(RelapseRiskError, ValueError):
    """The dataset folder cannot be used; the message names the file and what is wrong.

    Raised for faults of a whole folder, file, table or column. Faults of single
    rows never raise: those rows are rejected and reported in ``Dataset.rejects``.
    A broken ``policy.json`` is reported as a ``DatasetError`` too.
    """


@dataclass(frozen=True)
class Reject:
    """One rejected row: where it was and why."""

    table: str
    row: int
    """1-based position of the row among the table's data rows (CSV: line number minus one)."""
    column: str
    rule: str
    """Short stable name of the broken rule, e.g. ``enum``, ``foreign_key``, ``after_data_end``."""
    reason: str
    household_id: str | None = None
    value: str | None = None


@dataclass
class Dataset:
    """Clean tables of one county (or province), queried through DuckDB."""

    policy: Policy
    connection: duckdb.DuckDBPyConnection
    rejects: list[Reject] = field(default_factory=list)
    source: Path | None = None
    fingerprint: str = ""
    """sha256 over the names and bytes of the files that were read (policy and tables)."""
    input_files: dict[str, Path] = field(default_factory=dict)
    """Table name -> the file it was read from."""
    input_rows: dict[str, int] = field(default_factory=dict)
    """Table name -> data rows in its file, before any row was rejected."""
    reject_counts: dict[tuple[str, str, str], int] = field(default_factory=dict)
    """(table, column, rule) -> number of rejects; complete even when ``rejects`` is capped."""
    rejects_table: str | None = None
    """DuckDB table holding every reject (``rejects`` may keep only the first ones of each rule)."""

    def relation(self, table: str) -> duckdb.DuckDBPyRelation:
        return self.connection.table(table)

    def sql(self, query: str, params: list[object] | None = None) -> duckdb.DuckDBPyRelation:
        return self.connection.sql(query, params=params) if params else self.connection.sql(query)

    def frame(self, table: str) -> pd.DataFrame:
        """A whole table as pandas; for small tables and tests."""
        frame: pd.DataFrame = self.connection.table(table).df()
        return frame

    def row_count(self, table: str) -> int:
        # fetchall, not fetchone: DuckDB 2 keeps a partly fetched result open and refuses the next query.
        return int(self.connection.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])

    @property
    def total_rejects(self) -> int:
        return sum(self.reject_counts.values()) if self.reject_counts else len(self.rejects)

    @property
    def rejects_truncated(self) -> bool:
        """True when ``rejects`` lists fewer rejects than were found (see ``reject_counts``)."""
        return self.total_rejects > len(self.rejects)

    def rejected_households(self) -> dict[str, str]:
        """Household id -> first reject reason, for households with any rejected row."""
        if self.rejects_table is not None:
            reason = "table_name || ' row ' || \"row\" || ', ' || column_name || ': ' || reason"
            rows: list[Any] = self.connection.execute(
                f"""SELECT household_id, arg_min({reason}, position) FROM {self.rejects_table}
                    WHERE household_id IS NOT NULL GROUP BY household_id"""
            ).fetchall()
            return dict(sorted(rows))
        reasons: dict[str, str] = {}
        for r in self.rejects:
            if r.household_id is not None and r.household_id not in reasons:
                reasons[r.household_id] = f"{r.table} row {r.row}, {r.column}: {r.reason}"
        return reasons

    @classmethod
    def from_frames(cls, policy: Policy, frames: dict[str, pd.DataFrame]) -> Dataset:
        """Register already-clean frames under the canonical types; missing tables are empty.

        For tests and in-memory pipelines only: nothing is validated here.
        """
        connection = duckdb.connect()
        for table in TABLES:
            frame = frames.get(table.name)
            _create_table(connection, table, frame)
        return cls(policy=policy, connection=connection)


def load_dataset(folder: Path, **options: Any) -> Dataset:
    """Read, check and load a dataset folder; see :func:`features.loading.load_dataset`."""
    # Imported here because the loader builds on the classes of this module.
    from .loading import load_dataset as _load

    return _load(folder, **options)


def _create_table(connection: duckdb.DuckDBPyConnection, table: Table, frame: pd.DataFrame | None) -> None:
    columns = ", ".join(f'"{c.name}" {duckdb_type(c)}' for c in table.columns)
    connection.execute(f"CREATE TABLE {table.name} ({columns})")
    if frame is None or len(frame) == 0:
        return
    connection.register("_incoming", frame)
    selected = ", ".join(f'CAST("{c.name}" AS {duckdb_type(c)})' for c in table.columns)
    connection.execute(f"INSERT INTO {table.name} SELECT {selected} FROM _incoming")
    connection.unregister("_incoming")
