"""Where a province's counties are, and how one county's files become its dataset folder again.

A province arrives in one of two forms (docs/province.md):

- **county folders**: ``PROVINCE/<county>/`` each a dataset folder of the data
  contract (``policy.json`` and the ten tables, Parquet or CSV), named by the
  county's code;
- **partitioned tables**: one dataset folder ``PROVINCE/`` with ``policy.json``
  and, for each table, a Parquet dataset partitioned Hive-style by county:
  ``PROVINCE/<table>/county_code=<code>/<part>.parquet``.

The driver only lists names here (:func:`read_province`); the bytes are read by
Spark's executors. On an executor, :func:`materialize_county` lays one county's
files out as an ordinary dataset folder, so the county is loaded, validated and
scored by exactly the code `relapse score` runs: nothing of this module parses a
row. No pyspark here: the module runs on the driver and inside the Python workers.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq
from relapse_risk.features.contract import TABLES
from relapse_risk.features.errors import RelapseRiskError
from relapse_risk.features.loading import POLICY_FILE

ProvinceForm = Literal["county_folders", "partitioned"]

PARTITION_COLUMN = "county_code"
"""The Hive partition key of the partitioned form: ``<table>/county_code=<code>/``."""

TABLE_NAMES = tuple(table.name for table in TABLES)
COUNTY_FILE_NAMES = frozenset(
    {POLICY_FILE, *(f"{name}.parquet" for name in TABLE_NAMES), *(f"{name}.csv" for name in TABLE_NAMES)}
)
"""The files of a county folder that the loader may read; nothing else is shipped to the executors."""


class ProvinceError(RelapseRiskError, ValueError):
    """``--data`` is not a province in either form; the message says what was found."""


@dataclass(frozen=True)
class CountyFile:
    """One file of one county: where it is, and what it becomes in the county's dataset folder."""

    county: str
    path: Path
    table: str
    """``policy`` for policy.json, else the contract table the file holds (part of)."""


@dataclass(frozen=True)
class Province:
    """What the driver found by listing names: the form, the counties, the files to read."""

    root: Path
    form: ProvinceForm
    counties: tuple[str, ...]
    """Every county, sorted: county folders, or partition values seen in any table."""
    files: tuple[CountyFile, ...]
    schemas: dict[str, bytes] = field(default_factory=dict)
    """Partitioned form: table -> serialized Arrow schema of its parts, for a county with no part."""


def read_province(root: Path) -> Province:
    """List the counties and their files under ``root``; raises :class:`ProvinceError` for neither form."""
    root = Path(root).absolute()
    if not root.is_dir():
        raise ProvinceError(f"{root}: province folder does not exist")
    if (root / POLICY_FILE).is_file() and any((root / name).is_dir() for name in TABLE_NAMES):
        return _partitioned(root)
    counties = sorted(child.name for child in root.iterdir() if child.is_dir() and not _hidden(child))
    if not counties:
        raise ProvinceError(
            f"{root}: holds neither county dataset folders nor tables partitioned by {PARTITION_COLUMN} "
            f"({POLICY_FILE} beside <table>/{PARTITION_COLUMN}=<code>/ folders)"
        )
    files = [
        CountyFile(county=county, path=path, table=path.name.rsplit(".", 1)[0])
        for county in counties
        for path in sorted((root / county).iterdir())
        if path.name in COUNTY_FILE_NAMES and path.is_file()
    ]
    return Province(root=root, form="county_folders", counties=tuple(counties), files=tuple(files))


def _partitioned(root: Path) -> Province:
    files: list[CountyFile] = []
    schemas: dict[str, bytes] = {}
    counties: set[str] = set()
    for name in TABLE_NAMES:
        folder = root / name
        if not folder.is_dir():
            continue  # every county then misses the table: the loader names it
        for partition in sorted(folder.iterdir()):
            key, sep, value = partition.name.partition("=")
            if not (partition.is_dir() and sep and key == PARTITION_COLUMN and value):
                continue
            county = urllib.parse.unquote(value)
            counties.add(county)
            for part in sorted(partition.iterdir()):
                if part.is_file() and part.suffix == ".parquet" and not _hidden(part):
                    files.append(CountyFile(county=county, path=part, table=name))
                    if name not in schemas:
                        schemas[name] = pq.read_schema(part).serialize().to_pybytes()
    if not counties:
        raise ProvinceError(
            f"{root}: no table is partitioned by {PARTITION_COLUMN} (<table>/{PARTITION_COLUMN}=<code>/)"
        )
    policy = CountyFile(county="", path=root / POLICY_FILE, table="policy")
    return Province(
        root=root,
        form="partitioned",
        counties=tuple(sorted(counties)),
        files=(policy, *files),
        schemas=schemas,
    )


def _hidden(path: Path) -> bool:
    """Staging folders, ``_SUCCESS`` and ``.crc`` files that writers leave beside their data."""
    return path.name.startswith((".", "_"))


# -- on an executor -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShippedFile:
    """A file's bytes as an executor received them from Spark."""

    table: str
    name: str
    """The file's name (county folders) or part's name (partitioned tables), for ordering parts."""
    content: bytes


def materialize_county(
    form: ProvinceForm,
    county: str,
    files: Iterable[ShippedFile],
    folder: Path,
    *,
    policy: bytes | None = None,
    schemas: dict[str, bytes] | None = None,
) -> Path:
    """Write one county's shipped files into ``folder`` as a dataset folder of the contract.

    County folders: each file is written back under its own name, byte for
    byte, so the fingerprint and every reject's row number are those of the
    original folder. Partitioned tables: ``policy`` is the province's
    policy.json; a table's parts are concatenated in name order, the partition
    column is put back into ``households`` after ``household_id`` (Hive-style
    writers drop it from the files), and a table with no part for this county is
    written empty with the schema the driver read from another county's part. A
    table with a single part and nothing to put back is written byte for byte.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if form == "county_folders":
        for shipped in files:
            (folder / shipped.name).write_bytes(shipped.content)
        return folder
    if policy is not None:
        (folder / POLICY_FILE).write_bytes(policy)
    parts: dict[str, list[ShippedFile]] = {}
    for shipped in files:
        parts.setdefault(shipped.table, []).append(shipped)
    for name in TABLE_NAMES:
        chosen = sorted(parts.get(name, []), key=lambda shipped: shipped.name)
        target = folder / f"{name}.parquet"
        if not chosen:
            if schemas and name in schemas:
                schema = pa.ipc.read_schema(pa.py_buffer(schemas[name]))
                _write_table(schema.empty_table(), target)
            continue
        tables = [pq.read_table(pa.BufferReader(shipped.content)) for shipped in chosen]
        needs_code = name == "households" and PARTITION_COLUMN not in tables[0].column_names
        if len(chosen) == 1 and not needs_code:
            target.write_bytes(chosen[0].content)
            continue
        table = pa.concat_tables(tables, promote_options="permissive")
        if needs_code:
            at = table.column_names.index("household_id") + 1 if "household_id" in table.column_names else 0
            table = table.add_column(at, PARTITION_COLUMN, pa.array([county] * table.num_rows, pa.string()))
        _write_table(table, target)
    return folder


def _write_table(table: pa.Table, path: Path) -> None:
    """Fixed settings and no pandas metadata: the same parts always give the same bytes."""
    pq.write_table(table.replace_schema_metadata(None), path, compression="zstd", compression_level=3)
