"""Load a dataset folder: find the files, stage them in DuckDB, check every rule, keep the valid rows.

The loader is the one place that parses, casts and validates (data-contract.md).
All checks run as SQL in DuckDB straight over the files (``read_parquet`` with
``file_row_number``, ``read_csv`` with every column as text), so a province of a
million households is loaded in a few scans per table, never row by row in Python.

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
from collections.abc import Iterable
from pathlib import Path

import duckdb

from .contract import TABLES, Column, Table
from .dataset import Dataset, DatasetError, Reject, duckdb_type
from .policy import Policy, PolicyError, read_policy
from .validation import (
    HOUSEHOLD_LINKS,
    MASKED_IDENTIFIER,
    REJECT_COLUMNS_SQL,
    Reading,
    StagedTable,
    duplicate_rejects_sql,
    foreign_key_rejects_sql,
    literal,
    looks_personal_sql,
    member_household_rejects_sql,
    quote,
    repeated_key_hashes_sql,
    row_rejects_sql,
    row_rules,
    typed_view_sql,
)

POLICY_FILE = "policy.json"
REJECTS_TABLE = "_rejects"
DEFAULT_MAX_REJECTS_PER_RULE = 10_000
MATERIALIZE_ROWS = 500_000
"""Tables with at most this many rows are typed once into a temporary table (see ``_check_and_load``)."""
CHECKPOINT_ROWS = 1_000_000
"""Tables larger than this are checkpointed (compressed, old versions freed) as soon as they are loaded."""
LOAD_MEMORY_LIMIT = "4GB"
"""DuckDB's memory limit while loading, unless the caller sets one; beyond it DuckDB spills to disk."""

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

    workspace = Path(tempfile.mkdtemp(prefix="relapse-dataset-"))
    connection = _connect(workspace, memory_limit or LOAD_MEMORY_LIMIT, threads)
    try:
        input_rows = _load_tables(connection, files, policy)
        if memory_limit is None:
            connection.execute("RESET memory_limit")
        dataset = Dataset(
            policy=policy,
            connection=connection,
            rejects=_first_rejects(connection, max_rejects_per_rule),
            source=folder,
            fingerprint=fingerprint([folder / POLICY_FILE, *files.values()]),
            input_files=files,
            input_rows=input_rows,
            reject_counts=_reject_counts(connection),
            rejects_table=REJECTS_TABLE,
        )
    except BaseException:
        connection.close()
        shutil.rmtree(workspace, ignore_errors=True)
        raise
    # Tied to the connection, not the Dataset: a relation or the connection itself may outlive it.
    weakref.finalize(connection, shutil.rmtree, workspace, ignore_errors=True)
    return dataset


def _load_tables(
    connection: duckdb.DuckDBPyConnection, files: dict[str, Path], policy: Policy
) -> dict[str, int]:
    """Check and load every table in order (parents first); the number of data rows each file had."""
    connection.execute(
        f"CREATE TABLE {REJECTS_TABLE}_found (table_name VARCHAR, row BIGINT, column_name VARCHAR, "
        "rule VARCHAR, reason VARCHAR, household_id VARCHAR, value VARCHAR, link VARCHAR)"
    )
    input_rows: dict[str, int] = {}
    for table in TABLES:
        path = files[table.name]
        try:
            readings = _stage(connection, table, path)
            input_rows[table.name] = _count(connection, f"_raw_{table.name}")
            if input_rows[table.name] == 0 and not table.may_be_empty:
                raise DatasetError(
                    f"{path}: has no data rows; the contract requires at least one row in {table.name}"
                )
            _check_and_load(connection, table, readings, policy, input_rows[table.name])
        except _UNREADABLE as exc:
            raise DatasetError(f"{path}: cannot be read ({_first_lines(exc)})") from None
        if not table.may_be_empty and _count(connection, table.name) == 0:
            raise DatasetError(
                f"{path}: no valid rows remain: all {input_rows[table.name]} rows were rejected "
                f"({_rule_summary(connection, table.name)})"
            )
    _finish_rejects(connection)
    _drop_staging(connection)
    return input_rows


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


# ---------------------------------------------------------------- connection


def _connect(workspace: Path, memory_limit: str, threads: int | None) -> duckdb.DuckDBPyConnection:
    # A database file rather than memory: DuckDB writes each table as compressed
    # row groups while inserting, so 100 million income rows never sit uncompressed
    # in memory, and it spills sorts and aggregates to the same private directory.
    connection = duckdb.connect(str(workspace / "dataset.duckdb"))
    connection.execute(f"SET temp_directory = {literal(str(workspace / 'spill'))}")
    connection.execute(f"SET memory_limit = {literal(memory_limit)}")
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


def _stage(connection: duckdb.DuckDBPyConnection, table: Table, path: Path) -> dict[str, Reading]:
    """Create the view ``_raw_<table>`` (``_row`` and the contract columns); say how to read each column."""
    if path.suffix == ".parquet":
        return _stage_parquet(connection, table, path)
    return _stage_csv(connection, table, path)


def _stage_parquet(connection: duckdb.DuckDBPyConnection, table: Table, path: Path) -> dict[str, Reading]:
    source = f"read_parquet({literal(str(path))}, file_row_number = true)"
    try:
        schema = {row[0]: row[1] for row in connection.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    except _UNREADABLE as exc:
        raise DatasetError(f"{path}: cannot be read as Parquet ({_first_lines(exc)})") from None
    _require_columns(path, table, schema)
    columns = ", ".join(quote(c.name) for c in table.columns)
    connection.execute(
        f"CREATE TEMP VIEW _raw_{table.name} AS SELECT file_row_number + 1 AS _row, {columns} FROM {source}"
    )
    readings: dict[str, Reading] = {}
    for column in table.columns:
        reading = parquet_reading(column, schema[column.name])
        if reading is None:
            if _all_null(connection, f"_raw_{table.name}", column.name):
                reading = "all_null"
            else:
                raise DatasetError(_type_message(path, column, schema[column.name]))
        readings[column.name] = reading
    return readings


def parquet_reading(column: Column, physical: str) -> Reading | None:
    """How a Parquet column of DuckDB type ``physical`` is read as ``column``; None when it cannot be."""
    kind = column.kind
    if physical == _NULL_TYPE:
        return "all_null"
    if physical == "VARCHAR" or physical.startswith("ENUM("):
        return "native" if kind in ("str", "enum") else "text"
    if physical in _INTEGER_TYPES:
        return {"int": "native", "money": "native", "float": "native", "bool": "int_to_bool"}.get(kind)  # type: ignore[return-value]
    if physical in _FLOAT_TYPES or physical.startswith("DECIMAL"):
        return {"int": "float_to_int", "money": "native", "float": "native"}.get(kind)  # type: ignore[return-value]
    if physical == "BOOLEAN":
        return "native" if kind == "bool" else None
    if physical == "DATE":
        return "native" if kind in ("month", "date") else None
    if physical in _NAIVE_TIMESTAMP_TYPES:
        return "timestamp" if kind in ("month", "date") else None
    return None


def _type_message(path: Path, column: Column, physical: str) -> str:
    head = f"{path}: column {column.name!r} is stored as {physical}, which cannot be read as {column.kind}"
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


def _require_columns(path: Path, table: Table, present: Iterable[str]) -> None:
    names = set(present)
    missing = [c for c in table.column_names if c not in names]
    if missing:
        raise DatasetError(f"{path}: required column(s) missing: {', '.join(missing)}")


def _stage_csv(connection: duckdb.DuckDBPyConnection, table: Table, path: Path) -> dict[str, Reading]:
    header = _csv_header(path)
    _require_columns(path, table, header)
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
    first_alias = {}
    for alias, name in names.items():
        first_alias.setdefault(name, alias)
    selected = ", ".join(f"{quote(first_alias[c.name])} AS {quote(c.name)}" for c in table.columns)
    # The staging table keeps the file's order, so rowid + 1 is the data-row number.
    connection.execute(
        f"CREATE TEMP VIEW _raw_{table.name} AS SELECT rowid + 1 AS _row, {selected} FROM _csv_{table.name}"
    )
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


def _check_and_load(
    connection: duckdb.DuckDBPyConnection,
    table: Table,
    readings: dict[str, Reading],
    policy: Policy,
    input_rows: int,
) -> None:
    """Find every reject of ``table`` and load the remaining rows under the canonical types."""
    name = table.name
    staged = StagedTable(table, readings)
    typed = f"_typed_{name}"
    candidates = f"_candidates_{name}"
    # Small tables are typed once into a temporary table, which keeps the many later
    # queries cheap to plan; large ones stay a view, typed again by each scan,
    # rather than holding a second copy of 100 million rows.
    kind = "TABLE" if input_rows <= MATERIALIZE_ROWS else "VIEW"
    connection.execute(f"CREATE TEMP {kind} {typed} AS {typed_view_sql(staged, f'_raw_{name}')}")
    rules = row_rules(staged, policy)
    _insert_rejects(connection, name, row_rejects_sql(table, rules, typed, single_scan=kind == "VIEW"))
    # Views are evaluated when queried, so later steps see the rejects found so far.
    connection.execute(
        f"""CREATE TEMP VIEW {candidates} AS SELECT * FROM {typed} AS t
            WHERE NOT EXISTS (SELECT 1 FROM {REJECTS_TABLE}_found AS r
                              WHERE r.table_name = {literal(name)} AND r.row = t._row)"""
    )
    for key in table.unique:
        # Counting first skips the second scan of a large table when, as usual, no key repeats.
        if _count(connection, f"({repeated_key_hashes_sql(key, candidates)})") > 0:
            _insert_rejects(connection, name, duplicate_rejects_sql(staged, key, candidates))
    for foreign_key in table.foreign_keys:
        parent = foreign_key.table
        _insert_rejects(
            connection,
            name,
            foreign_key_rejects_sql(table, foreign_key, candidates, parent, f"_typed_{parent}"),
        )
    # A bill or event names both a household and a member: the member must belong to that household.
    if table.household_column and any(fk.table == "members" for fk in table.foreign_keys):
        _insert_rejects(connection, name, member_household_rejects_sql(candidates, "members"))

    # Insert every row in file order and delete the rejected ones afterwards: a scan
    # keeps the order for free, while an anti-join would need a sort of the whole table.
    columns = ", ".join(f"{quote(c.name)} {duckdb_type(c)}" for c in table.columns)
    names = ", ".join(quote(c.name) for c in table.columns)
    connection.execute(f"CREATE TABLE {name} (_row BIGINT, {columns})")
    connection.execute(f"INSERT INTO {name} SELECT _row, {names} FROM {typed}")
    connection.execute(
        f"DELETE FROM {name} WHERE _row IN "
        f"(SELECT row FROM {REJECTS_TABLE}_found WHERE table_name = {literal(name)})"
    )
    connection.execute(f"ALTER TABLE {name} DROP COLUMN _row")
    if input_rows > CHECKPOINT_ROWS:
        connection.execute("CHECKPOINT")


def _insert_rejects(connection: duckdb.DuckDBPyConnection, table_name: str, sql: str) -> None:
    connection.execute(
        f"INSERT INTO {REJECTS_TABLE}_found SELECT {literal(table_name)}, {REJECT_COLUMNS_SQL} FROM ({sql})"
    )


def _rule_summary(connection: duckdb.DuckDBPyConnection, table_name: str, limit: int = 5) -> str:
    rows = connection.execute(
        f"""SELECT column_name, rule, count(DISTINCT row) AS n, min(reason) FROM {REJECTS_TABLE}_found
            WHERE table_name = ? GROUP BY ALL ORDER BY n DESC, column_name, rule LIMIT {limit}""",
        [table_name],
    ).fetchall()
    return "; ".join(f"{rule} on {column}: {n} rows, e.g. {example}" for column, rule, n, example in rows)


def _finish_rejects(connection: duckdb.DuckDBPyConnection) -> None:
    """Give every reject its household (through the parent row where needed) and a stable position.

    Identifiers that look like personal data are kept out of the report: the
    household is then unknown and the value is masked.
    """
    joins = []
    households = []
    for index, (table_name, (link_column, parent)) in enumerate(HOUSEHOLD_LINKS.items()):
        alias = f"link{index}"
        joins.append(
            f"""LEFT JOIN (SELECT {quote(link_column)} AS link, arg_min(household_id, _row) AS household_id
                           FROM _typed_{parent}
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


def _drop_staging(connection: duckdb.DuckDBPyConnection) -> None:
    connection.execute(f"DROP TABLE {REJECTS_TABLE}_found")
    views = connection.execute(
        "SELECT view_name FROM duckdb_views() WHERE temporary AND NOT internal"
    ).fetchall()
    for (view,) in views:
        connection.execute(f"DROP VIEW {quote(view)}")
    staged = connection.execute(
        "SELECT table_name, temporary FROM duckdb_tables() "
        "WHERE temporary OR table_name LIKE '\\_csv\\_%' ESCAPE '\\'"
    ).fetchall()
    for table, temporary in staged:
        connection.execute(f"DROP TABLE {'temp.' if temporary else ''}{quote(table)}")
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
