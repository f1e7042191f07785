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

import duckdb
import pandas as pd

from .contract import TABLES, Column, Table
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

    def relation(self, table: str) -> duckdb.DuckDBPyRelation:
        return self.connection.table(table)

    def sql(self, query: str, params: list[object] | None = None) -> duckdb.DuckDBPyRelation:
        return self.connection.sql(query, params=params) if params else self.connection.sql(query)

    def frame(self, table: str) -> pd.DataFrame:
        """A whole table as pandas; for small tables and tests."""
        return self.connection.table(table).df()

    def row_count(self, table: str) -> int:
        return int(self.connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]

    def rejected_households(self) -> dict[str, str]:
        """Household id -> first reject reason, for households with any rejected row."""
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


def _create_table(connection: duckdb.DuckDBPyConnection, table: Table, frame: pd.DataFrame | None) -> None:
    columns = ", ".join(f'"{c.name}" {duckdb_type(c)}' for c in table.columns)
    connection.execute(f"CREATE TABLE {table.name} ({columns})")
    if frame is None or len(frame) == 0:
        return
    connection.register("_incoming", frame)
    selected = ", ".join(f'CAST("{c.name}" AS {duckdb_type(c)})' for c in table.columns)
    connection.execute(f"INSERT INTO {table.name} SELECT {selected} FROM _incoming")
    connection.unregister("_incoming")
