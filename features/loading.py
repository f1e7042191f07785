"""Load a dataset folder or in-memory tables: stage them in DuckDB, check every rule, keep the valid rows.

The loader is the one place that parses, casts and validates (docs/data-contract.md).
All checks run as SQL in DuckDB straight over the files (``read_parquet`` with
``file_row_number``, ``read_csv`` with every column as text), so a province of a
million households is loaded in a few scans per table, never row by row in Python.
:func:`load_tables` takes the same tables as Arrow or pandas (the API's
requests): they are staged as DuckDB views of the Arrow data and go through the
same code from there on, so a folder and its rows in memory load alike.

Each statement costs DuckDB milliseconds to parse and plan however few rows it
reads, so a table of up to :data:`MATERIALIZE_ROWS` rows is checked in one
statement (every step as a common table expression) and a table without rows
is not checked at all. A larger table is read as few times as the checks
allow: one scan sets aside the rows some row rule or reference could reject
and, when every unique key can be written as a small integer, checks the keys
in the same scan; otherwise one more looks for repeated keys (see
:func:`_insert_large_table_rejects`).

Decisions the contract leaves open, fixed here:

- Parquet wins when a table has both a ``.parquet`` and a ``.csv`` file; only the
  file that is read goes into the fingerprint.
- CSV is read as text first and cast afterwards, so identifiers keep leading
  zeros; surrounding whitespace of every cell is trimmed and empty cells are
  null (see :mod:`features.validation` for the accepted spellings). The header
  names are trimmed too. A row with the wrong number of cells, or bytes that are
  not UTF-8, make the file unreadable: the run stops naming the line.
- A Parquet identifier or enumerated column stored as integers stops the run:
  leading zeros are already lost and cannot be recovered. Timestamps are accepted
  for months and dates when they are at midnight (months: on the 1st); timestamps
  with a time zone are refused, because the calendar day they mean is ambiguous.
- A month value that is not the first day of a month is rejected, in CSV
  (``2024-03-15``) as in Parquet.
- Rows are checked in three steps and each rejected row is reported for every rule
  it breaks in the first step: (1) rules a row breaks on its own; (2) duplicate
  keys among the rows that passed, keeping the first occurrence; (3) foreign keys
  against the rows that were *loaded* into the parent table, so a rejected
  household takes its members, income, ... with it, each reported.
- ``households`` and ``members`` must hold at least one valid row; every other
  table may be empty.
- A Parquet table of more than :data:`MATERIALIZE_ROWS` rows of which at most
  :data:`IN_PLACE_MAX_REJECTED_SHARE` is rejected is read in place: the
  dataset's table is a view that types the file as it reads it and leaves out
  the rejected rows, rather than a copy (copying costs several scans' worth of time).
  The folder must therefore stay as it is while the dataset is in use, as it
  must anyway for the fingerprint to describe what was read.
- ``Dataset.rejects`` keeps every reject of ``households`` (each stands for a
  household of the input that must still be reported) and the first
  ``max_rejects_per_rule`` rejects of each (table, rule) of the other tables, so
  that a file broken on every row cannot exhaust memory; ``Dataset.reject_counts``,
  ``Dataset.rejected_households()`` and the DuckDB table named by
  ``Dataset.rejects_table`` are always complete.
"""

from __future__ import annotations

import csv
import hashlib
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from .contract import TABLES, Column, Table
from .dataset import Dataset, DatasetError, Reject, duckdb_type
from .policy import Policy, PolicyError, read_policy
from .validation import (
    HOUSEHOLD_LINKS,
    MASKED_IDENTIFIER,
    REJECT_COLUMNS_SQL,
    Reading,
    RowRule,
    StagedTable,
    any_repeated_key_sql,
    chained_rejects_sql,
    duplicate_rejects_sql,
    foreign_key_rejects_sql,
    literal,
    looks_personal_sql,
    member_household_rejects_sql,
    quote,
    row_rejects_sql,
    row_rules,
    typed_view_sql,
)

POLICY_FILE = "policy.json"
REJECTS_TABLE = "_rejects"
DEFAULT_MAX_REJECTS_PER_RULE = 10_000
MATERIALIZE_ROWS = 500_000
"""Tables with at most this many rows are typed once into a temporary table and checked in one statement."""
CHECKPOINT_ROWS = 1_000_000
"""Tables larger than this are checkpointed (compressed, old versions freed) as soon as they are loaded."""
LOAD_MEMORY_LIMIT = "4GB"
"""DuckDB's memory limit while loading, unless the caller sets one; beyond it DuckDB spills to disk."""
IN_PLACE_MAX_REJECTED_SHARE = 0.1
"""A large Parquet table is read in place, without its rejected rows, while at most this share is rejected."""
IN_MEMORY_ROWS = 2_000_000
"""In-memory tables with at most this many rows in all are loaded into an in-memory database."""

_INTEGER_TYPES = frozenset(
    {
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "BIGINT",
        "HUGEINT",
        "UTINYINT",
        "USMALLINT",
        "UINTEGER",
        "UBIGINT",
        "UHUGEINT",
    }
)
_FLOAT_TYPES = frozenset({"FLOAT", "DOUBLE"})
_NAIVE_TIMESTAMP_TYPES = frozenset({"TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS"})
_NULL_TYPE = '"NULL"'
# Errors that mean the file's bytes are broken; anything else DuckDB raises is a fault of ours.
_UNREADABLE = (duckdb.IOException, duckdb.InvalidInputException)
# The schema of the rejects table, as _finish_rejects creates it from found rejects.
_REJECTS_SCHEMA = (
    "position BIGINT, table_name VARCHAR, row BIGINT, column_name VARCHAR, rule VARCHAR, "
    "reason VARCHAR, household_id VARCHAR, value VARCHAR"
)


@dataclass(frozen=True)
class TableInput:
    """Where one contract table's rows come from: a file of a dataset folder, or an in-memory Arrow table."""

    label: str
    """How messages name the input: the file's path, or ``<source> table <name>``."""
    path: Path | None = None
    arrow: pa.Table | None = None
    text_cells: bool = False
    """Every cell is text as a CSV export holds it (read like a CSV file), whatever its Arrow type."""


@dataclass
class _Staging:
    """What a load created only to check the tables, dropped before the dataset is handed over."""

    drops: list[str] = field(default_factory=list)
    registered: list[str] = field(default_factory=list)
    typed: dict[str, str] = field(default_factory=dict)
    """Table name -> relation of its typed rows with ``_row`` (all rows, rejected ones too)."""
    found: int = 0
    """Rejects found so far."""
    in_place: dict[str, str] = field(default_factory=dict)
    """Table name -> a relation of its raw rows (``_row`` and the contract columns) read straight from
    its Parquet file, valid for the dataset's whole life (unlike ``_raw_<table>``, dropped after the load)."""


def load_dataset(
    folder: Path,
    *,
    max_rejects_per_rule: int = DEFAULT_MAX_REJECTS_PER_RULE,
    memory_limit: str | None = None,
    threads: int | None = None,
) -> Dataset:
    """Read every table of the contract from ``folder``, check it, and return the valid rows.

    The tables live in a DuckDB database file in a private temporary directory
    (compressed, so a province fits; removed when the dataset's connection is
    garbage collected or the process ends). ``memory_limit`` (e.g. ``"6GB"``) and
    ``threads`` bound DuckDB for this dataset; without a ``memory_limit`` the load
    itself runs under :data:`LOAD_MEMORY_LIMIT` and later queries under DuckDB's default.

    Raises :class:`DatasetError` naming the file and the fault when the folder cannot
    be used at all (missing folder, table file or column, broken ``policy.json``,
    unreadable file, unusable column type, no valid household or member).
    """
    folder = Path(folder)
    if not folder.exists():
        raise DatasetError(f"{folder}: dataset folder does not exist")
    if not folder.is_dir():
        raise DatasetError(f"{folder}: is not a folder")
    try:
        policy = read_policy(folder / POLICY_FILE)
    except PolicyError as exc:
        raise DatasetError(str(exc)) from None
    files = locate_table_files(folder)
    inputs = {name: TableInput(label=str(path), path=path) for name, path in files.items()}
    return _load(
        inputs,
        policy,
        in_memory=False,
        source=folder,
        fingerprint_of=lambda: fingerprint([folder / POLICY_FILE, *files.values()]),
        input_files=files,
        max_rejects_per_rule=max_rejects_per_rule,
        memory_limit=memory_limit,
        threads=threads,
    )


def load_tables(
    tables: Mapping[str, pa.Table | pd.DataFrame],
    policy: Policy,
    *,
    source: str = "request",
    text_cells: bool = False,
    max_rejects_per_rule: int = DEFAULT_MAX_REJECTS_PER_RULE,
    memory_limit: str | None = None,
    threads: int | None = None,
) -> Dataset:
    """Check in-memory tables exactly as :func:`load_dataset` checks a folder, and return the valid rows.

    ``tables`` maps every contract table name to its rows (Arrow or pandas; extra
    columns are ignored), numbered from 1 in the given order as a file's rows are.
    Typed columns are read as the same types in a Parquet file are; with
    ``text_cells`` every cell is read as the text of a CSV export (trimmed, empty
    is null), whatever its type. ``source`` names the input in messages
    (``request table members: ...``). Up to :data:`IN_MEMORY_ROWS` rows in all are
    loaded into an in-memory database; more go to a private database file as
    :func:`load_dataset` does. The fingerprint covers the policy and the tables'
    Arrow data.

    Raises :class:`DatasetError` for a missing or unknown table, a missing column,
    an unusable column type, or no valid household or member.
    """
    unknown = sorted(set(tables) - {t.name for t in TABLES})
    if unknown:
        raise DatasetError(f"{source}: unknown table(s): {', '.join(unknown)}")
    missing = [t.name for t in TABLES if t.name not in tables]
    if missing:
        raise DatasetError(f"{source}: required table(s) missing: {', '.join(missing)}")
    arrows = {t.name: _as_arrow(tables[t.name], f"{source} table {t.name}") for t in TABLES}
    inputs = {
        name: TableInput(label=f"{source} table {name}", arrow=arrow, text_cells=text_cells)
        for name, arrow in arrows.items()
    }
    total_rows = sum(arrow.num_rows for arrow in arrows.values())
    return _load(
        inputs,
        policy,
        in_memory=total_rows <= IN_MEMORY_ROWS,
        source=None,
        fingerprint_of=lambda: fingerprint_tables(policy, arrows),
        input_files={},
        max_rejects_per_rule=max_rejects_per_rule,
        memory_limit=memory_limit,
        threads=threads,
    )


def _as_arrow(rows: pa.Table | pd.DataFrame, label: str) -> pa.Table:
    if isinstance(rows, pa.Table):
        return rows
    if isinstance(rows, pd.DataFrame):
        try:
            return pa.Table.from_pandas(rows, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise DatasetError(f"{label}: cannot be read as a table ({exc})") from None
    raise DatasetError(f"{label}: is a {type(rows).__name__}, not a pyarrow Table or pandas DataFrame")


def _load(
    inputs: dict[str, TableInput],
    policy: Policy,
    *,
    in_memory: bool,
    source: Path | None,
    fingerprint_of: Callable[[], str],
    input_files: dict[str, Path],
    max_rejects_per_rule: int,
    memory_limit: str | None,
    threads: int | None,
) -> Dataset:
    """The one path of every load: connect, check and load each table, collect the rejects."""
    workspace = None if in_memory else Path(tempfile.mkdtemp(prefix="relapse-dataset-"))
    connection = _connect(workspace, memory_limit, threads)
    try:
        input_rows, found = _load_tables(connection, inputs, policy, file_backed=workspace is not None)
        if workspace is not None and memory_limit is None:
            connection.execute("RESET memory_limit")
        dataset = Dataset(
            policy=policy,
            connection=connection,
            rejects=_first_rejects(connection, max_rejects_per_rule) if found else [],
            source=source,
            fingerprint=fingerprint_of(),
            input_files=input_files,
            input_rows=input_rows,
            reject_counts=_reject_counts(connection) if found else {},
            rejects_table=REJECTS_TABLE,
        )
    except BaseException:
        connection.close()
        if workspace is not None:
            shutil.rmtree(workspace, ignore_errors=True)
        raise
    if workspace is not None:
        # Tied to the connection, not the Dataset: a relation or the connection itself may outlive it.
        weakref.finalize(connection, shutil.rmtree, workspace, ignore_errors=True)
    return dataset


def _load_tables(
    connection: duckdb.DuckDBPyConnection, inputs: dict[str, TableInput], policy: Policy, *, file_backed: bool
) -> tuple[dict[str, int], int]:
    """Check and load every table in order (parents first); rows each input had, and rejects found."""
    connection.execute(
        f"CREATE TEMP TABLE {REJECTS_TABLE}_found (table_name VARCHAR, row BIGINT, column_name VARCHAR, "
        "rule VARCHAR, reason VARCHAR, household_id VARCHAR, value VARCHAR, link VARCHAR)"
    )
    staging = _Staging(drops=[f"DROP TABLE {REJECTS_TABLE}_found"])
    input_rows: dict[str, int] = {}
    for table in TABLES:
        source = inputs[table.name]
        try:
            readings, input_rows[table.name] = _stage(connection, table, source, staging)
            if input_rows[table.name] == 0 and not table.may_be_empty:
                raise DatasetError(
                    f"{source.label}: has no data rows; "
                    f"the contract requires at least one row in {table.name}"
                )
            found = _check_and_load(connection, table, readings, policy, input_rows[table.name], staging)
        except _UNREADABLE as exc:
            raise DatasetError(f"{source.label}: cannot be read ({_first_lines(exc)})") from None
        if not table.may_be_empty and found and _count(connection, table.name) == 0:
            raise DatasetError(
                f"{source.label}: no valid rows remain: all {input_rows[table.name]} rows were rejected "
                f"({_rule_summary(connection, table.name)})"
            )
    _finish_rejects(connection, staging)
    _drop_staging(connection, staging, checkpoint=file_backed)
    return input_rows, staging.found


def locate_table_files(folder: Path) -> dict[str, Path]:
    """Table name -> the file to read (Parquet wins over CSV); stops naming every missing table."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    for table in TABLES:
        parquet = folder / f"{table.name}.parquet"
        text = folder / f"{table.name}.csv"
        for candidate in (parquet, text):
            if candidate.exists() and not candidate.is_file():
                raise DatasetError(f"{candidate}: is not a file")
        if parquet.is_file():
            found[table.name] = parquet
        elif text.is_file():
            found[table.name] = text
        else:
            missing.append(f"{parquet.name} (or {text.name})")
    if missing:
        raise DatasetError(f"{folder}: required table file missing: {', '.join(missing)}")
    return found


def fingerprint(files: Iterable[Path]) -> str:
    """sha256 over each file's name, size and bytes, in name order: equal folders give equal prints."""
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.name):
        digest.update(path.name.encode("utf-8") + b"\0")
        digest.update(path.stat().st_size.to_bytes(8, "big"))
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def fingerprint_tables(policy: Policy, tables: Mapping[str, pa.Table]) -> str:
    """sha256 over the policy and each table's name and Arrow IPC stream, in name order."""
    digest = hashlib.sha256()
    digest.update(policy.model_dump_json().encode("utf-8") + b"\0")
    for name in sorted(tables):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, tables[name].schema) as writer:
            writer.write_table(tables[name])
        stream = sink.getvalue()
        digest.update(name.encode("utf-8") + b"\0" + stream.size.to_bytes(8, "big"))
        digest.update(memoryview(stream))
    return digest.hexdigest()


# ---------------------------------------------------------------- connection


def _connect(
    workspace: Path | None, memory_limit: str | None, threads: int | None
) -> duckdb.DuckDBPyConnection:
    if workspace is None:
        connection = duckdb.connect(":memory:")
        if memory_limit is not None:
            connection.execute(f"SET memory_limit = {literal(memory_limit)}")
    else:
        # A database file rather than memory: DuckDB writes each table as compressed
        # row groups while inserting, so 100 million income rows never sit uncompressed
        # in memory, and it spills sorts and aggregates to the same private directory.
        connection = duckdb.connect(str(workspace / "dataset.duckdb"))
        connection.execute(f"SET temp_directory = {literal(str(workspace / 'spill'))}")
        connection.execute(f"SET memory_limit = {literal(memory_limit or LOAD_MEMORY_LIMIT)}")
    if threads is not None:
        connection.execute(f"SET threads = {int(threads)}")
    return connection


def _count(connection: duckdb.DuckDBPyConnection, relation: str) -> int:
    return int(connection.execute(f"SELECT count(*) FROM {relation}").fetchall()[0][0])


def _first_lines(exc: BaseException, limit: int = 3) -> str:
    """The informative head of a DuckDB error, without its generic advice or the file's content."""
    lines: list[str] = []
    for line in str(exc).splitlines():
        if not line.strip() or line.startswith("Possible"):
            break
        # The quoted line of a county's file may hold personal data: the line number is enough.
        if not line.startswith("Original Line"):
            lines.append(line.strip().removeprefix("Invalid Input Error: "))
    return "; ".join(lines[:limit]) or type(exc).__name__


# ---------------------------------------------------------------- staging


def _stage(
    connection: duckdb.DuckDBPyConnection, table: Table, source: TableInput, staging: _Staging
) -> tuple[dict[str, Reading], int]:
    """Make ``_raw_<table>`` (``_row`` and the contract columns); how to read each column; its row count."""
    if source.arrow is not None:
        return _stage_arrow(connection, table, source, staging)
    assert source.path is not None  # a TableInput holds a path or an Arrow table
    if source.path.suffix == ".parquet":
        readings = _stage_parquet(connection, table, source.path, staging)
    else:
        readings = _stage_csv(connection, table, source.path, staging)
    return readings, _count(connection, f"_raw_{table.name}")


def _stage_parquet(
    connection: duckdb.DuckDBPyConnection, table: Table, path: Path, staging: _Staging
) -> dict[str, Reading]:
    source = f"read_parquet({literal(str(path.absolute()))}, file_row_number = true)"
    try:
        schema = _schema(connection, f"SELECT * FROM {source}")
    except _UNREADABLE as exc:
        raise DatasetError(f"{path}: cannot be read as Parquet ({_first_lines(exc)})") from None
    _require_columns(str(path), table, schema)
    columns = ", ".join(quote(c.name) for c in table.columns)
    raw = f"SELECT file_row_number + 1 AS _row, {columns} FROM {source}"
    connection.execute(f"CREATE TEMP VIEW _raw_{table.name} AS {raw}")
    staging.drops.append(f"DROP VIEW _raw_{table.name}")
    staging.in_place[table.name] = f"({raw})"
    return _typed_readings(connection, table, schema, str(path))


def _stage_arrow(
    connection: duckdb.DuckDBPyConnection, table: Table, source: TableInput, staging: _Staging
) -> tuple[dict[str, Reading], int]:
    arrow = source.arrow
    assert arrow is not None
    _require_columns(source.label, table, arrow.column_names)
    first_index: dict[str, int] = {}
    for index, name in enumerate(arrow.column_names):
        first_index.setdefault(name, index)
    rows = arrow.num_rows
    # Numbered here, in the given order, as a file's data rows are numbered by the reader.
    numbered = pa.Table.from_arrays(
        [
            pa.array(np.arange(1, rows + 1, dtype=np.int64)),
            *(arrow.column(first_index[c]) for c in table.column_names),
        ],
        names=["_row", *table.column_names],
    )
    relation = f"_raw_{table.name}"
    connection.register(relation, numbered)
    staging.registered.append(relation)
    if source.text_cells:
        return {c.name: "text" for c in table.columns}, rows
    schema = _schema(connection, f"SELECT * FROM {relation}")
    return _typed_readings(connection, table, schema, source.label), rows


def _schema(connection: duckdb.DuckDBPyConnection, query: str) -> dict[str, str]:
    """Column name -> DuckDB type of a query's result."""
    return {row[0]: row[1] for row in connection.execute(f"DESCRIBE {query}").fetchall()}


def _typed_readings(
    connection: duckdb.DuckDBPyConnection, table: Table, schema: dict[str, str], label: str
) -> dict[str, Reading]:
    """How each column of ``_raw_<table>``, stored under the types of ``schema``, is read."""
    readings: dict[str, Reading] = {}
    for column in table.columns:
        reading = parquet_reading(column, schema[column.name])
        if reading is None:
            if _all_null(connection, f"_raw_{table.name}", column.name):
                reading = "all_null"
            else:
                raise DatasetError(_type_message(label, column, schema[column.name]))
        readings[column.name] = reading
    return readings


def parquet_reading(column: Column, physical: str) -> Reading | None:
    """How a Parquet or Arrow column of DuckDB type ``physical`` is read as ``column``; None: unreadable."""
    kind = column.kind
    if physical == _NULL_TYPE:
        return "all_null"
    if physical == "VARCHAR" or physical.startswith("ENUM("):
        return "native" if kind in ("str", "enum") else "text"
    if physical in _INTEGER_TYPES:
        from_integer: dict[str, Reading] = {
            "int": "native",
            "money": "native",
            "float": "native",
            "bool": "int_to_bool",
        }
        return from_integer.get(kind)
    if physical in _FLOAT_TYPES or physical.startswith("DECIMAL"):
        from_float: dict[str, Reading] = {"int": "float_to_int", "money": "native", "float": "native"}
        return from_float.get(kind)
    if physical == "BOOLEAN":
        return "native" if kind == "bool" else None
    if physical == "DATE":
        return "native" if kind in ("month", "date") else None
    if physical in _NAIVE_TIMESTAMP_TYPES:
        return "timestamp" if kind in ("month", "date") else None
    return None


def _type_message(label: str, column: Column, physical: str) -> str:
    head = f"{label}: column {column.name!r} is stored as {physical}, which cannot be read as {column.kind}"
    if column.kind in ("str", "enum") and (physical in _INTEGER_TYPES or physical in _FLOAT_TYPES):
        return (
            f"{head}: identifiers and codes must be written as strings; a numeric column has already lost "
            f"leading zeros (00123 became 123) that cannot be recovered"
        )
    if "TIME ZONE" in physical or physical.startswith("TIMESTAMPTZ"):
        return f"{head}: a timestamp with a time zone does not say which calendar day is meant; write date32"
    return head


def _all_null(connection: duckdb.DuckDBPyConnection, relation: str, column: str) -> bool:
    return _count(connection, f"{relation} WHERE {quote(column)} IS NOT NULL") == 0


def _require_columns(label: str, table: Table, present: Iterable[str]) -> None:
    names = set(present)
    missing = [c for c in table.column_names if c not in names]
    if missing:
        raise DatasetError(f"{label}: required column(s) missing: {', '.join(missing)}")


def _stage_csv(
    connection: duckdb.DuckDBPyConnection, table: Table, path: Path, staging: _Staging
) -> dict[str, Reading]:
    header = _csv_header(path)
    _require_columns(str(path), table, header)
    # Every column is read as text (leading zeros survive) under a name we choose,
    # so padded or repeated header names cannot confuse the reader.
    names = {f"c{i}": name for i, name in enumerate(header)}
    columns = "{" + ", ".join(f"{literal(alias)}: 'VARCHAR'" for alias in names) + "}"
    options = (
        f"header = true, auto_detect = false, columns = {columns}, delim = ',', quote = '\"', escape = '\"', "
        "strict_mode = true, encoding = 'utf-8'"
    )
    try:
        connection.execute(
            f"CREATE TABLE _csv_{table.name} AS SELECT * FROM read_csv({literal(str(path))}, {options})"
        )
    except _UNREADABLE as exc:
        raise DatasetError(f"{path}: cannot be parsed as CSV ({_first_lines(exc)})") from None
    staging.drops.append(f"DROP TABLE _csv_{table.name}")
    first_alias: dict[str, str] = {}
    for alias, name in names.items():
        first_alias.setdefault(name, alias)
    selected = ", ".join(f"{quote(first_alias[c.name])} AS {quote(c.name)}" for c in table.columns)
    # The staging table keeps the file's order, so rowid + 1 is the data-row number.
    connection.execute(
        f"CREATE TEMP VIEW _raw_{table.name} AS SELECT rowid + 1 AS _row, {selected} FROM _csv_{table.name}"
    )
    staging.drops.append(f"DROP VIEW _raw_{table.name}")
    return {c.name: "text" for c in table.columns}


def _csv_header(path: Path) -> list[str]:
    if path.stat().st_size == 0:
        raise DatasetError(f"{path}: file is empty; a header row naming the columns is required")
    with path.open("rb") as handle:
        first_line = handle.readline()
    try:
        text = first_line.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: header row is not UTF-8 text") from None
    try:
        header = next(csv.reader([text]), [])
    except csv.Error as exc:
        raise DatasetError(f"{path}: header row cannot be parsed as CSV ({exc})") from None
    return [name.strip() for name in header]


# ---------------------------------------------------------------- checks

RejectQuery = Callable[[str], str]
"""Candidate rows (a relation) -> the query of their rejects, with the columns of REJECT_COLUMNS_SQL."""


@dataclass(frozen=True)
class _CheckStep:
    """One step of a table's checks; it sees only the rows that every earlier step kept."""

    rejects: RejectQuery
    repeats: RejectQuery | None = None
    """A cheaper query that is empty whenever ``rejects`` is (to skip a second scan of a large table)."""


def _check_steps(staged: StagedTable, policy: Policy, typed: dict[str, str]) -> list[_CheckStep]:
    """The checks of one table in order: (1) row rules, (2) unique keys, (3) foreign keys.

    Rules a row breaks on its own are all reported; a row rejected by one step is
    not looked at by later ones, so a duplicate is judged among valid rows and a
    foreign key against the rows that were loaded into the parent table.
    """
    table = staged.table
    steps: list[_CheckStep] = []
    rules = row_rules(staged, policy)
    if rules:
        steps.append(_CheckStep(lambda rows: row_rejects_sql(table, rules, rows, single_scan=False)))
    steps.extend(_key_steps(staged))
    steps.extend(_reference_steps(table, typed))
    return steps


def _key_steps(staged: StagedTable) -> list[_CheckStep]:
    """One step per unique key of the table."""
    return [
        _CheckStep(partial(duplicate_rejects_sql, staged, key), partial(any_repeated_key_sql, key))
        for key in staged.table.unique
    ]


def _reference_steps(table: Table, typed: dict[str, str]) -> list[_CheckStep]:
    """One step per foreign key, and one for a member named beside a household."""
    steps = [
        _CheckStep(
            partial(
                foreign_key_rejects_sql,
                table,
                foreign_key,
                parent_clean=foreign_key.table,
                parent_typed=typed[foreign_key.table],
            )
        )
        for foreign_key in table.foreign_keys
    ]
    # A bill or event names both a household and a member: the member must belong to that household.
    if _names_member_and_household(table):
        steps.append(_CheckStep(lambda rows: member_household_rejects_sql(rows, "members")))
    return steps


def _names_member_and_household(table: Table) -> bool:
    return bool(table.household_column) and any(fk.table == "members" for fk in table.foreign_keys)


@dataclass(frozen=True)
class _Suspicion:
    """A large table's rows joined once to each parent, and how a suspect row is told apart."""

    rows: str
    """The rows of the typed table as ``t`` (with ``_broken``: some row rule fails), each parent joined."""
    condition: str
    """True for a row that some row rule, foreign key or member-household check could reject."""
    parent_row: dict[str, str]
    """Foreign-key column -> the number of the parent's row it names (only the columns asked for)."""


def _suspicion(table: Table, rules: list[RowRule], typed: str, numbered: Iterable[str] = ()) -> _Suspicion:
    """Join each parent table once (its keys are unique, so no row is repeated): a bill's member is
    looked up once for both its foreign key and its household. The parents of the foreign-key
    columns in ``numbered`` also give their row numbers (in their scan order) for :func:`_dense_key`."""
    numbered = set(numbered)
    joins: list[str] = []
    conditions = ["t._broken"]
    parent_row: dict[str, str] = {}
    for index, foreign_key in enumerate(table.foreign_keys):
        parent = f"_parent{index}"
        column, target = quote(foreign_key.column), quote(foreign_key.target)
        checks_household = foreign_key.table == "members" and _names_member_and_household(table)
        selected = [target]
        if checks_household:
            selected.append("household_id")
        if foreign_key.column in numbered:
            selected.append("CAST(row_number() OVER () - 1 AS BIGINT) AS _n")
            parent_row[foreign_key.column] = f"{parent}._n"
        joins.append(
            f"LEFT JOIN (SELECT {', '.join(selected)} FROM {foreign_key.table}) AS {parent} "
            f"ON {parent}.{target} = t.{column}"
        )
        conditions.append(f"(t.{column} IS NOT NULL AND {parent}.{target} IS NULL)")
        if checks_household:
            conditions.append(f"({parent}.household_id <> t.household_id)")
    broken = " OR ".join(rule.condition for rule in rules) or "FALSE"
    # The rules name columns without a table: evaluated before any parent's columns join them.
    rows = f"(SELECT *, {broken} AS _broken FROM {typed}) AS t {' '.join(joins)}"
    return _Suspicion(rows, " OR ".join(conditions), parent_row)


def _suspects_sql(table: Table, rules: list[RowRule], typed: str) -> str:
    """The rows of ``typed`` that some row rule, foreign key or member-household check could reject.

    A row outside it passes all of them, whatever rows earlier steps rejected;
    so those steps need only look at these rows.
    """
    suspicion = _suspicion(table, rules, typed)
    return f"SELECT t.* EXCLUDE (_broken) FROM {suspicion.rows} WHERE {suspicion.condition}"


def _check_and_load(
    connection: duckdb.DuckDBPyConnection,
    table: Table,
    readings: dict[str, Reading],
    policy: Policy,
    input_rows: int,
    staging: _Staging,
) -> int:
    """Find every reject of ``table``, load the remaining rows under the canonical types; rejects found."""
    name = table.name
    declared = ", ".join(f"{quote(c.name)} {duckdb_type(c)}" for c in table.columns)
    if input_rows == 0:
        # Nothing to check: every rule is about a row. Children still look up their keys here.
        connection.execute(f"CREATE TABLE {name} ({declared})")
        staging.typed[name] = f"(SELECT CAST(NULL AS BIGINT) AS _row, * FROM {name})"
        return 0
    staged = StagedTable(table, readings)
    typed = f"_typed_{name}"
    staging.typed[name] = typed
    small = input_rows <= MATERIALIZE_ROWS
    # Small tables are typed once into a temporary table and checked in one statement,
    # since each statement costs milliseconds to plan however few rows it reads; large
    # ones stay a view, typed again by each scan, rather than holding a second copy of
    # 100 million rows, and are checked step by step.
    kind = "TABLE" if small else "VIEW"
    connection.execute(f"CREATE TEMP {kind} {typed} AS {typed_view_sql(staged, f'_raw_{name}')}")
    staging.drops.append(f"DROP {kind} {typed}")
    if small:
        steps = _check_steps(staged, policy, staging.typed)
        found = _insert_rejects(connection, name, chained_rejects_sql([s.rejects for s in steps], typed))
    else:
        found = _insert_large_table_rejects(connection, staged, policy, typed, staging)
    staging.found += found

    names = ", ".join(quote(c.name) for c in table.columns)
    rejected = f"(SELECT row FROM {REJECTS_TABLE}_found WHERE table_name = {literal(name)})"
    cast = ", ".join(f"CAST({quote(c.name)} AS {duckdb_type(c)}) AS {quote(c.name)}" for c in table.columns)
    if small:
        keep = f"WHERE _row NOT IN {rejected}" if found else ""
        connection.execute(f"CREATE TABLE {name} AS SELECT {cast} FROM {typed} {keep} ORDER BY _row")
        return found
    if name in staging.in_place and found <= IN_PLACE_MAX_REJECTED_SHARE * input_rows:
        # The table is a view of the Parquet file, typed as it is read, without the rejected rows
        # (a filter keeps the file's order). Copying it into the database would cost about five
        # times a scan of the file (docs/performance.md), more than the few later scans save.
        in_place = typed_view_sql(staged, staging.in_place[name])
        keep = ""
        if found:
            # A table of its own: the view outlives the load's working tables.
            connection.execute(
                f"CREATE TABLE _rejected_rows_{name} AS SELECT DISTINCT row FROM {rejected} AS r"
            )
            keep = f"WHERE _row NOT IN (SELECT row FROM _rejected_rows_{name})"
        connection.execute(f"CREATE VIEW {name} AS SELECT {cast} FROM ({in_place}) {keep}")
        return found
    if not found:
        # Every row stays: one ordered scan, and no row numbers to store and drop again.
        connection.execute(f"CREATE TABLE {name} AS SELECT {cast} FROM {typed}")
    else:
        _insert_and_delete_rejected(connection, name, declared, names, typed, rejected)
    if input_rows > CHECKPOINT_ROWS:
        connection.execute("CHECKPOINT")
    return found


def _insert_and_delete_rejected(
    connection: duckdb.DuckDBPyConnection, name: str, declared: str, names: str, typed: str, rejected: str
) -> None:
    # Insert every row in file order and delete the rejected ones afterwards: a scan
    # keeps the order for free, while an anti-join would need a sort of the whole table.
    connection.execute(f"CREATE TABLE {name} (_row BIGINT, {declared})")
    connection.execute(f"INSERT INTO {name} SELECT _row, {names} FROM {typed}")
    connection.execute(f"DELETE FROM {name} WHERE _row IN {rejected}")
    connection.execute(f"ALTER TABLE {name} DROP COLUMN _row")


def _insert_large_table_rejects(
    connection: duckdb.DuckDBPyConnection, staged: StagedTable, policy: Policy, typed: str, staging: _Staging
) -> int:
    """The checks of :func:`_check_steps` for a large table, in as few scans of it as possible.

    One scan sets aside the suspects: the rows that break a row rule or whose
    foreign keys or member do not resolve (usually none). When every unique key
    has an integer form the same scan checks the keys among the other rows
    (:func:`_first_scan`), so a table without suspects or repeats is done after
    it. The row rules and the reference checks then read only the suspects; the
    unique keys need every row. The rejects are the same as running every step
    over the whole table.
    """
    table, name = staged.table, staged.table.name
    rules = row_rules(staged, policy)
    suspects = f"_suspects_{name}"
    scanned = _first_scan(connection, table, rules, typed, policy, suspects)
    if scanned is None:  # a key without an integer form: the suspects' own scan
        connection.execute(f"CREATE TEMP TABLE {suspects} AS {_suspects_sql(table, rules, typed)}")
        scanned = _FirstScan(suspects=_count(connection, suspects), keys_unique=False)
    staging.drops.append(f"DROP TABLE {suspects}")
    if not scanned.suspects and scanned.keys_unique:
        return 0
    suspect_count = scanned.suspects
    found = 0
    if rules and suspect_count:
        found += _insert_rejects(connection, name, row_rejects_sql(table, rules, suspects, single_scan=True))
    # Views are evaluated when queried, so each step sees the rejects found before it.
    not_rejected = f"""WHERE NOT EXISTS (SELECT 1 FROM {REJECTS_TABLE}_found AS r
                                          WHERE r.table_name = {literal(name)} AND r.row = t._row)"""
    candidates = f"_candidates_{name}"
    connection.execute(f"CREATE TEMP VIEW {candidates} AS SELECT * FROM {typed} AS t {not_rejected}")
    suspect_candidates = f"_suspect_candidates_{name}"
    connection.execute(
        f"CREATE TEMP VIEW {suspect_candidates} AS SELECT * FROM {suspects} AS t {not_rejected}"
    )
    staging.drops.extend([f"DROP VIEW {candidates}", f"DROP VIEW {suspect_candidates}"])
    for key, step in zip(table.unique, _key_steps(staged), strict=True):
        rows = typed if not found else candidates
        # Asking first skips the scan that names the repeats when, as usual, no key repeats.
        if scanned.keys_unique:
            # The first scan found no repeat among the rows that are not suspects: a repeat needs a
            # suspect, and every row of one shares the suspect's key hash.
            rows, repeats = _rows_sharing_a_suspects_key(key, rows, suspect_candidates)
            if _count(connection, f"({repeats})") == 0:
                continue
        elif step.repeats is not None and _count(connection, f"({step.repeats(rows)})") == 0:
            continue
        found += _insert_rejects(connection, name, step.rejects(rows))
    if suspect_count:
        for step in _reference_steps(table, staging.typed):
            found += _insert_rejects(connection, name, step.rejects(suspect_candidates))
    return found


# A key is checked with a bitmap of every possible key while there are at most this many (128 MB).
_MAX_DENSE_KEYS = 1 << 30


@dataclass(frozen=True)
class _DenseKey:
    """A unique key written as one integer in [0, size), from which a row's key is computed."""

    code: str
    size: int


@dataclass(frozen=True)
class _FirstScan:
    """What the first scan of a large table found."""

    suspects: int
    keys_unique: bool
    """No unique key repeats a value among the rows that are not suspects, nor falls outside its range."""


def _first_scan(
    connection: duckdb.DuckDBPyConnection,
    table: Table,
    rules: list[RowRule],
    typed: str,
    policy: Policy,
    suspects: str,
) -> _FirstScan | None:
    """Set the suspects of a large table aside into ``suspects`` and check its unique keys, in one scan.

    The scan joins each parent once and tells the suspects (see :func:`_suspicion`);
    every other row sets the bit of each of its unique keys in a bitmap of all the
    key's possible values (:func:`_dense_key`), and a key repeats no value when as
    many bits as rows are set. No sort, and the joins that dominate the scan are
    paid once instead of once for the suspects and once per key (at 1,000,000
    households, income's joins cost about 6 s a scan: docs/performance.md). The
    suspects' rows are then read again by their numbers, without joins. None,
    having read nothing, when a key has no integer form.
    """
    references = {foreign_key.column for foreign_key in table.foreign_keys}
    numbered = {name for key in table.unique for name in key if name in references}
    suspicion = _suspicion(table, rules, typed, numbered)
    keys = [
        dense
        for key in table.unique
        if (dense := _dense_key(connection, table, key, policy, suspicion.parent_row)) is not None
    ]
    if len(keys) < len(table.unique):
        return None
    codes = ["t._row", "coalesce(" + suspicion.condition + ", FALSE) AS _suspect"]
    counts = ["count(*) FILTER (WHERE _suspect)", "count(*) FILTER (WHERE NOT _suspect)"]
    for index, key in enumerate(keys):
        k = f"_k{index}"
        outside = f"{k} IS NULL OR {k} < 0 OR {k} >= {key.size}"
        codes.append(f"{key.code} AS {k}")
        # Outside keys are counted, never put in the bitmap: bitstring_agg refuses them.
        inside = f"NOT _suspect AND NOT ({outside})"
        counts.append(f"bit_count(bitstring_agg({k}, 0, {key.size - 1}) FILTER (WHERE {inside}))")
        counts.append(f"count(*) FILTER (WHERE NOT _suspect AND ({outside}))")
    # 8 bytes a suspect: at worst, every row of a file that is wrong throughout, the size of one column.
    counts.append("list(_row) FILTER (WHERE _suspect) AS _rows")
    scan = f"_first_scan_{table.name}"
    connection.execute(
        f"CREATE TEMP TABLE {scan} AS SELECT {', '.join(counts)} "
        f"FROM (SELECT {', '.join(codes)} FROM {suspicion.rows})"
    )
    suspect_count, rows, *per_key = connection.execute(f"SELECT * EXCLUDE (_rows) FROM {scan}").fetchall()[0]
    suspect_rows = f"_row IN (SELECT unnest(_rows) FROM {scan})" if suspect_count else "FALSE"
    connection.execute(f"CREATE TEMP TABLE {suspects} AS SELECT * FROM {typed} WHERE {suspect_rows}")
    connection.execute(f"DROP TABLE {scan}")
    # bit_count is NULL when no key was inside the range.
    keys_unique = all(
        not int(strays) and bits is not None and int(bits) == int(rows)
        for bits, strays in zip(per_key[::2], per_key[1::2], strict=True)
    )
    return _FirstScan(suspects=int(suspect_count), keys_unique=keys_unique)


def _rows_sharing_a_suspects_key(key: tuple[str, ...], rows: str, suspects: str) -> tuple[str, str]:
    """The rows of ``rows`` whose hash of ``key`` is one of ``suspects``', and a query that is empty
    when no two of them share a hash.

    For a table whose other rows repeat no key among themselves: every repeat of
    ``rows`` is then among the rows returned, with all the rows of its key, so the
    duplicate rejects of those rows are those of ``rows`` (a hash collision is told
    apart by the rejects query). A semi-join on the few suspects' hashes, against a
    sort of every row's hash in :func:`~features.validation.any_repeated_key_sql`
    (docs/performance.md: about 14 s of a load of 1,000,000 households with rejects).
    """
    hashed = f"hash({', '.join(quote(k) for k in key)})"
    sharing = f"(SELECT * FROM {rows} WHERE {hashed} IN (SELECT {hashed} FROM {suspects}))"
    return sharing, f"SELECT {hashed} FROM {sharing} GROUP BY ALL HAVING count(*) > 1 LIMIT 1"


def _dense_key(
    connection: duckdb.DuckDBPyConnection,
    table: Table,
    key: tuple[str, ...],
    policy: Policy,
    parent_row: Mapping[str, str],
) -> _DenseKey | None:
    """``key`` as one small integer, or None when a column has no such form or the integers are too many.

    A foreign-key column becomes the parent row's number (``parent_row``: column ->
    its SQL), a month its place among the data's months, an enumerated value its
    place in the list. Meant for rows that are not suspects, whose rows all have a
    loaded parent, a month inside the data and a listed value; a row that still
    falls outside the range is counted by :func:`_first_scan`, which then
    does not vouch for the key.
    """
    parents = {fk.column: fk for fk in table.foreign_keys}
    code, size = "0", 1
    for name in key:
        column = table.column(name)
        if name in parent_row:
            part, width = parent_row[name], _count(connection, parents[name].table)
        elif column.kind == "month":
            part = f"(year(t.{quote(name)}) * 12 + month(t.{quote(name)}) - 1 - {policy.first_month_index})"
            width = policy.last_month_index - policy.first_month_index + 1
        elif column.kind == "enum":
            part, width = f"(list_position({list(column.values)}, t.{quote(name)}) - 1)", len(column.values)
        else:
            return None
        code, size = f"({code}) * {width} + {part}", size * width
    if size > _MAX_DENSE_KEYS:
        return None
    return _DenseKey(code, size)


def _insert_rejects(connection: duckdb.DuckDBPyConnection, table_name: str, sql: str) -> int:
    inserted = connection.execute(
        f"INSERT INTO {REJECTS_TABLE}_found SELECT {literal(table_name)}, {REJECT_COLUMNS_SQL} FROM ({sql})"
    ).fetchall()
    return int(inserted[0][0])


def _rule_summary(connection: duckdb.DuckDBPyConnection, table_name: str, limit: int = 5) -> str:
    rows = connection.execute(
        f"""SELECT column_name, rule, count(DISTINCT row) AS n, min(reason) FROM {REJECTS_TABLE}_found
            WHERE table_name = ? GROUP BY ALL ORDER BY n DESC, column_name, rule LIMIT {limit}""",
        [table_name],
    ).fetchall()
    return "; ".join(f"{rule} on {column}: {n} rows, e.g. {example}" for column, rule, n, example in rows)


def _finish_rejects(connection: duckdb.DuckDBPyConnection, staging: _Staging) -> None:
    """Give every reject its household (through the parent row where needed) and a stable position.

    Identifiers that look like personal data are kept out of the report: the
    household is then unknown and the value is masked.
    """
    if not staging.found:
        connection.execute(f"CREATE TABLE {REJECTS_TABLE} ({_REJECTS_SCHEMA})")
        return
    joins = []
    households = []
    for index, (table_name, (link_column, parent)) in enumerate(HOUSEHOLD_LINKS.items()):
        alias = f"link{index}"
        joins.append(
            f"""LEFT JOIN (SELECT {quote(link_column)} AS link, arg_min(household_id, _row) AS household_id
                           FROM {staging.typed[parent]}
                           WHERE {quote(link_column)} IN (SELECT link FROM {REJECTS_TABLE}_found
                                                         WHERE table_name = {literal(table_name)})
                           GROUP BY ALL) AS {alias}
                ON r.table_name = {literal(table_name)} AND r.link = {alias}.link"""
        )
        households.append(f"{alias}.household_id")
    order = (
        "CASE r.table_name "
        + " ".join(f"WHEN {literal(t.name)} THEN {i}" for i, t in enumerate(TABLES))
        + " END"
    )
    personal_value = looks_personal_sql("value")
    connection.execute(
        f"""CREATE TABLE {REJECTS_TABLE} AS
            SELECT position, table_name, row, column_name, rule,
                   CASE WHEN {personal_value} THEN replace(reason, value, {literal(MASKED_IDENTIFIER)})
                        ELSE reason END AS reason,
                   CASE WHEN {looks_personal_sql("household_id")} THEN NULL ELSE household_id END
                       AS household_id,
                   CASE WHEN {personal_value} THEN {literal(MASKED_IDENTIFIER)} ELSE value END AS value
            FROM (
                SELECT row_number() OVER (ORDER BY {order}, r.row, r.column_name, r.rule) AS position,
                       r.table_name, r.row, r.column_name, r.rule, r.reason,
                       coalesce(r.household_id, {", ".join(households)}) AS household_id, r.value
                FROM {REJECTS_TABLE}_found AS r {" ".join(joins)}
            )
            ORDER BY position"""
    )


def _drop_staging(connection: duckdb.DuckDBPyConnection, staging: _Staging, *, checkpoint: bool) -> None:
    # In one round trip; DuckDB binds views when they are queried, so the order is free.
    connection.execute("; ".join(staging.drops))
    for relation in staging.registered:
        connection.unregister(relation)
    if checkpoint:
        connection.execute("CHECKPOINT")


def _first_rejects(connection: duckdb.DuckDBPyConnection, per_rule: int) -> list[Reject]:
    rows = connection.execute(
        f"""SELECT table_name, row, column_name, rule, reason, household_id, value FROM {REJECTS_TABLE}
            QUALIFY table_name = 'households'
                 OR row_number() OVER (PARTITION BY table_name, rule ORDER BY position) <= ?
            ORDER BY position""",
        [per_rule],
    ).fetchall()
    return [Reject(*row) for row in rows]


def _reject_counts(connection: duckdb.DuckDBPyConnection) -> dict[tuple[str, str, str], int]:
    rows = connection.execute(
        f"""SELECT table_name, column_name, rule, count(*) FROM {REJECTS_TABLE}
            GROUP BY ALL ORDER BY min(position)"""
    ).fetchall()
    return {(t, c, r): int(n) for t, c, r, n in rows}
