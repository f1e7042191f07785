"""Writing a scoring run: the scores table, the rejects report, the manifest, atomically.

Byte-identical reruns: the scores table is written from an explicit Arrow
schema with no pandas metadata, rows sorted by household id, floats rounded
before writing and printed with fixed decimals in the CSV. The manifest holds
timings, so it differs between runs by design; the tables never do.

Atomic publication: a run is assembled in a staging folder beside ``OUT`` and
swapped into place only when everything is written. A crash or Ctrl-C before
the swap leaves the previous ``OUT`` untouched (and at worst a hidden staging
folder, removed on the next run's success or by hand).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from relapse_risk.features.errors import RelapseRiskError

from ..config import RISK_SCORE_DECIMALS, RULE_MARGIN_DECIMALS
from ..scoring import REASON_COLUMNS, SCORE_COLUMNS

SCORES_PARQUET = "scores.parquet"
SCORES_CSV = "scores.csv"
REJECTS_CSV = "rejects.csv"
MANIFEST_JSON = "manifest.json"
VISIT_LISTS_DIR = "visit_lists"

UTF8_BOM = "\ufeff".encode()

SCORES_SCHEMA = pa.schema(
    [
        pa.field("household_id", pa.string(), nullable=False),
        pa.field("county_code", pa.string()),
        pa.field("township_code", pa.string()),
        pa.field("village_code", pa.string()),
        pa.field("as_of", pa.string(), nullable=False),
        pa.field("horizon_months", pa.int64(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("risk_score", pa.float64()),
        pa.field("risk_band", pa.string()),
        pa.field("rank_county", pa.int64()),
        pa.field("rank_township", pa.int64()),
        pa.field("rank_village", pa.int64()),
        pa.field("in_visit_list", pa.bool_(), nullable=False),
        pa.field("rule_margin", pa.float64()),
        pa.field("triggered_rule", pa.string()),
        *(pa.field(name, pa.string()) for name in REASON_COLUMNS),
        pa.field("reject_reason", pa.string()),
        pa.field("model_name", pa.string(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
    ]
)
"""Arrow types of the scores table (docs/outputs.md); field order is :data:`serving.scoring.SCORE_COLUMNS`."""

FLOAT_DECIMALS: dict[str, int] = {"risk_score": RISK_SCORE_DECIMALS, "rule_margin": RULE_MARGIN_DECIMALS}


class OutputFolderError(RelapseRiskError, ValueError):
    """``OUT`` cannot be written or replaced; the message names the path and why."""


# -- the scores table ----------------------------------------------------------------------------


def scores_arrow_table(scores: pd.DataFrame) -> pa.Table:
    """The scores frame as an Arrow table of :data:`SCORES_SCHEMA`, sorted, floats rounded.

    Raises ``ValueError`` naming the column when the frame lacks one or a
    value does not fit its type.
    """
    missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise ValueError(f"scores frame lacks column(s): {', '.join(missing)}")
    # The job's frame is already in household-id order (serving/scoring.py), and a stable sort
    # of a sorted column changes nothing: checking costs 0.02 s where sorting 1,000,000 ids cost 0.6 s.
    in_order = scores["household_id"].is_monotonic_increasing
    ordered = scores if in_order else scores.sort_values("household_id", kind="stable", ignore_index=True)
    arrays = []
    for field in SCORES_SCHEMA:
        column = ordered[field.name]
        if field.name in FLOAT_DECIMALS:
            values = column.to_numpy(dtype=np.float64, na_value=np.nan)
            array = pa.array(
                np.round(values, FLOAT_DECIMALS[field.name]), type=pa.float64(), from_pandas=True
            )
        else:
            try:
                array = pa.array(column, type=field.type, from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise ValueError(f"scores column {field.name!r} does not fit {field.type}: {exc}") from None
        if not field.nullable and array.null_count:
            raise ValueError(f"scores column {field.name!r} holds {array.null_count} null(s); it may not")
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=SCORES_SCHEMA)


def write_scores_parquet(table: pa.Table, path: Path) -> None:
    """Parquet with fixed settings and no metadata that varies between runs."""
    pq.write_table(
        table.replace_schema_metadata(None),
        path,
        compression="zstd",
        compression_level=3,
        row_group_size=256 * 1024,
        write_statistics=True,
        store_schema=True,
    )


def write_scores_csv(table: pa.Table, path: Path) -> None:
    """UTF-8 CSV with a byte-order mark (spreadsheets then read Chinese correctly).

    Floats are printed with fixed decimals; nulls are empty cells; booleans
    are ``true``/``false``.
    """
    printable = table
    for name, decimals in FLOAT_DECIMALS.items():
        position = printable.schema.get_field_index(name)
        printable = printable.set_column(
            position, pa.field(name, pa.string()), fixed_decimal_strings(printable[name], decimals)
        )
    with path.open("wb") as sink:
        sink.write(UTF8_BOM)
        pa_csv.write_csv(printable, sink, pa_csv.WriteOptions(include_header=True, batch_size=64 * 1024))


def fixed_decimal_strings(values: pa.ChunkedArray | pa.Array, decimals: int) -> pa.Array:
    """Floats as text with exactly ``decimals`` digits after the point; nulls stay null."""
    numbers = values.to_numpy(zero_copy_only=False)
    numbers = np.asarray(numbers, dtype=np.float64)
    missing = np.isnan(numbers)
    # -0.000000 would differ from 0.000000 only by the rounding path: print zero plainly.
    rounded = np.round(numbers, decimals) + 0.0
    # Python's formatting number by number prints what numpy's char.mod printed ("%.6f" % x),
    # in half the time (0.3 s against 0.6 s a column at 1,000,000 households).
    printed = f"{{:.{decimals}f}}".format
    text = [
        None if absent else printed(number)
        for number, absent in zip(rounded.tolist(), missing.tolist(), strict=True)
    ]
    return pa.array(text, type=pa.string())


REJECTS_SCHEMA = pa.schema(
    [
        ("table", pa.string()),
        ("row", pa.int64()),
        ("column", pa.string()),
        ("rule", pa.string()),
        ("reason", pa.string()),
        ("household_id", pa.string()),
        ("value", pa.string()),
    ]
)


def write_rejects_csv(rejects: pd.DataFrame, path: Path) -> None:
    """Every rejected row, in the loader's order: table, row, column, rule, reason, household, value."""
    table = pa.Table.from_pandas(
        rejects.loc[:, REJECTS_SCHEMA.names], schema=REJECTS_SCHEMA, preserve_index=False
    ).replace_schema_metadata(None)
    with path.open("wb") as sink:
        sink.write(UTF8_BOM)
        pa_csv.write_csv(table, sink)


def write_manifest(manifest: dict[str, object], path: Path) -> None:
    path.write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8"
    )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- atomic publication --------------------------------------------------------------------------


def check_output_folder(out: Path, marker: str = MANIFEST_JSON, run: str = "scoring run") -> None:
    """Refuse early when ``OUT`` is a file or a non-empty folder that no scoring run wrote.

    Replacing ``OUT`` deletes its old contents, so only an earlier run's
    folder (it has a ``manifest.json``, or the ``marker`` file of another kind
    of ``run``) or an empty one may be replaced.
    """
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / marker).is_file():
        raise OutputFolderError(
            f"{out}: folder is not empty and holds no {marker} of an earlier {run}; "
            "choose an empty or new folder"
        )


@contextlib.contextmanager
def staged_output(out: Path) -> Iterator[Path]:
    """Yield a fresh staging folder beside ``out``; publish it as ``out`` when the block succeeds.

    On any exception (including KeyboardInterrupt) the staging folder is
    removed and ``out`` is left as it was.
    """
    out = out.absolute()
    check_output_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        # mkdtemp makes a private (0700) folder; the published run should have the
        # permissions any folder made here would have, so others can read it.
        staging.chmod(0o777 & ~_current_umask())
        yield staging
        publish_folder(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def publish_folder(staging: Path, out: Path) -> None:
    """Make ``staging`` appear as ``out`` in one step; an existing ``out`` is swapped out, then removed.

    On Linux both folders are exchanged atomically (``renameat2`` with
    ``RENAME_EXCHANGE``): readers see the old run or the new one, never
    neither. Elsewhere the old folder is renamed aside first, leaving a short
    window in which ``out`` does not exist but is never half-written.
    """
    if not out.exists():
        os.rename(staging, out)
        return
    if _exchange_folders(staging, out):
        shutil.rmtree(staging, ignore_errors=True)  # now holds the previous run
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.previous-", dir=out.parent))
    retired.rmdir()
    os.rename(out, retired)
    try:
        os.rename(staging, out)
    except BaseException:
        os.rename(retired, out)
        raise
    shutil.rmtree(retired, ignore_errors=True)


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange_folders(first: Path, second: Path) -> bool:
    """Atomically swap two paths with Linux ``renameat2``; False when the system cannot."""
    library_name = ctypes.util.find_library("c")
    if library_name is None:
        return False
    libc = ctypes.CDLL(library_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    result = renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    if result == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(error, os.strerror(error), str(second))
