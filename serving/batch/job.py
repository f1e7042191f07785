"""The quarterly batch job: score a dataset folder and publish the run folder.

    relapse score --data DIR --as-of 2024-06 --model champion --out OUT

``OUT`` receives (docs/outputs.md): ``scores.parquet`` and ``scores.csv`` (one row
per household), ``rejects.csv`` (every rejected input row), ``visit_lists/``
(per township HTML and XLSX, and an index) and ``manifest.json``. All of it
appears at once when the run succeeds (:mod:`serving.batch.outputs`); a folder that
cannot be used, or a model that cannot be found, stops the job before anything
is written.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from relapse_risk.features.contract import format_month
from relapse_risk.features.dataset import Dataset, load_dataset
from relapse_risk.features.stages import StageTimes

from relapse_risk import __version__ as package_version

from ..config import RISK_BAND_CUTOFFS
from ..scoring import STATUSES, ExplainScope, ProgressCallback, ResolvedModel, rejects_frame, run_scoring
from ..village_context import VILLAGE_CONTEXT_FILE, village_context, write_village_context
from .outputs import (
    MANIFEST_JSON,
    REJECTS_CSV,
    SCORES_CSV,
    SCORES_PARQUET,
    VISIT_LISTS_DIR,
    check_output_folder,
    file_sha256,
    scores_arrow_table,
    staged_output,
    write_manifest,
    write_rejects_csv,
    write_scores_csv,
    write_scores_parquet,
)
from .visit_lists import TownshipPage, township_summaries, write_visit_lists

BATCH_STAGES = ("load", "rules", "features", "score", "rank", "explain", "write")
"""Stages whose wall time the manifest and the benchmark report."""

STAGE_LABELS = {
    "load": "load and validate",
    "rules": "monitoring rules",
    "features": "features",
    "score": "scores",
    "rank": "ranks and visit list",
    "explain": "reasons (visit list)",
    "write": "write outputs",
}
"""What each stage is called in the log lines and on the console."""

_log = logging.getLogger(__name__)

AREA_CODE_COLUMNS = ("county_code", "township_code", "village_code")


@dataclass(frozen=True)
class BatchReport:
    """What a finished run wrote and how long each stage took."""

    out: Path
    scores: pd.DataFrame
    manifest: dict[str, object]
    seconds: dict[str, float]
    rejects: int
    explained: int
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    """CPU seconds of the process (every thread) in each stage of ``seconds``."""
    visit_list_files: tuple[Path, ...] = field(default_factory=tuple)

    @property
    def households(self) -> int:
        return len(self.scores)


# -- rejected households rows -------------------------------------------------------------------


def rejected_household_codes(dataset: Dataset, rejects: pd.DataFrame) -> pd.DataFrame:
    """Area codes of households whose own households row was rejected, read from the raw file.

    The loader keeps only valid rows, but such a household is still a
    household of the input and must appear in the scores table. Its codes are
    taken as text from the rejected row itself (row numbers of the rejects are
    1-based among data rows); a code that is itself broken is shown as it is.
    """
    empty = pd.DataFrame(columns=["household_id", *AREA_CODE_COLUMNS])
    wanted = rejects[(rejects["table"] == "households") & rejects["household_id"].notna()]
    path = dataset.input_files.get("households")
    if wanted.empty or path is None:
        return empty
    table = _read_raw_columns(path, ("household_id", *AREA_CODE_COLUMNS))
    positions = sorted({int(row) - 1 for row in wanted["row"] if 0 < int(row) <= table.num_rows})
    frame: pd.DataFrame = table.take(pa.array(positions, type=pa.int64())).to_pandas()
    frame = frame[frame["household_id"].isin(set(wanted["household_id"]))]
    return frame.drop_duplicates("household_id").reset_index(drop=True)


def _read_raw_columns(path: Path, columns: tuple[str, ...]) -> pa.Table:
    """``columns`` of a contract file as text, in file order; absent columns are null."""
    if path.suffix == ".parquet":
        present = set(pq.read_schema(path).names)
        table = pq.read_table(path, columns=[c for c in columns if c in present])
    else:
        table = pa_csv.read_csv(
            path,
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(columns, pa.string()),
                include_columns=list(columns),
                include_missing_columns=True,
                strings_can_be_null=True,
            ),
        )
    arrays = [
        table[c].cast(pa.string()) if c in table.column_names else pa.nulls(table.num_rows, pa.string())
        for c in columns
    ]
    return pa.Table.from_arrays(arrays, names=list(columns))


# -- the job ------------------------------------------------------------------------------------


def score_folder(
    data: Path,
    as_of: dt.date,
    model: ResolvedModel,
    out: Path,
    *,
    explain: ExplainScope = "visit_list",
    horizon: int | None = None,
    progress: ProgressCallback | None = None,
    dataset_loader: Callable[[Path], Dataset] = load_dataset,
) -> BatchReport:
    """Load ``data``, score it at ``as_of`` with ``model`` and publish ``out`` atomically.

    Raises the loader's error (``DatasetError`` / ``PolicyError``) or
    :class:`serving.batch.outputs.OutputFolderError` before anything is written.
    """
    check_output_folder(out)
    report = progress or (lambda stage, done, total: None)
    times = StageTimes(_log, STAGE_LABELS)

    with times.stage("load"):
        report("load", 0, 1)
        dataset = dataset_loader(data)
        rejects = rejects_frame(dataset)
        roster_extra = rejected_household_codes(dataset, rejects)
        report("load", 1, 1)

    result = run_scoring(
        dataset,
        as_of,
        model.model,
        model_name=model.name,
        model_version=model.version,
        explain=explain,
        horizon=horizon if horizon is not None else model.horizon,
        rejected_roster=roster_extra,
        progress=progress,
        times=times,
    )
    scores = result.scores

    with staged_output(out) as staging:
        with times.stage("write"):
            report("write", 0, 1)
            context: pd.DataFrame | None = None
            if result.features is not None:
                # The API scores single households with the village figures of this run (village_context.py).
                villages = scores[["household_id", "village_code"]]
                context = village_context(result.features, villages, format_month(as_of))
            pages = write_run_files(scores, rejects, context, staging)
        # The manifest records the write stage's time, so it is written just after the stage.
        seconds = dict(times.wall)
        manifest = run_manifest(
            dataset=dataset,
            data=data,
            as_of=as_of,
            model=model,
            scores=scores,
            rejects=len(rejects),
            seconds=seconds,
            explained=result.explained,
            files={
                name: {"sha256": file_sha256(staging / name), "bytes": (staging / name).stat().st_size}
                for name in (SCORES_PARQUET, SCORES_CSV, REJECTS_CSV)
            },
        )
        write_manifest(manifest, staging / MANIFEST_JSON)
    report("write", 1, 1)
    visit_files = tuple(
        out / VISIT_LISTS_DIR / f"{page.file_stem}.{suffix}" for page in pages for suffix in ("html", "xlsx")
    )
    return BatchReport(
        out=out,
        scores=scores,
        manifest=manifest,
        seconds=seconds,
        rejects=len(rejects),
        explained=result.explained,
        cpu_seconds=dict(times.cpu),
        visit_list_files=visit_files,
    )


def write_run_files(
    scores: pd.DataFrame, rejects: pd.DataFrame, context: pd.DataFrame | None, folder: Path
) -> list[TownshipPage]:
    """The files of the write stage, into ``folder``: the scores table as Parquet and CSV, the
    rejects, the village context (when there is one) and the visit lists; returns the visit-list pages.

    Arrow encodes and writes Parquet and CSV without holding the interpreter, so those two
    files are written on a second thread while this one renders the visit lists, Python
    through and through: 1.2 s less of 6.3 s at 1,000,000 households when a second core is
    free, no gain (and no loss) when both are busy. benchmarks/bench_write.py times this.
    """
    table = scores_arrow_table(scores)
    # Leaving the block waits for the thread, also when the visit lists fail: the caller
    # removes the folder only when nothing writes into it any more.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="scores-files") as pool:
        scores_files = pool.submit(_write_scores_files, table, folder)
        write_rejects_csv(rejects, folder / REJECTS_CSV)
        if context is not None:
            write_village_context(context, folder / VILLAGE_CONTEXT_FILE)
        pages = write_visit_lists(scores, folder / VISIT_LISTS_DIR)
        scores_files.result()
    return pages


def _write_scores_files(table: pa.Table, folder: Path) -> None:
    write_scores_parquet(table, folder / SCORES_PARQUET)
    write_scores_csv(table, folder / SCORES_CSV)


def run_manifest(
    *,
    dataset: Dataset,
    data: Path,
    as_of: dt.date,
    model: ResolvedModel,
    scores: pd.DataFrame,
    rejects: int,
    seconds: dict[str, float],
    explained: int,
    files: dict[str, dict[str, object]],
) -> dict[str, object]:
    """manifest.json (docs/outputs.md): what went in, which model scored it, what came out, how long."""
    status_counts = scores["status"].value_counts()
    listed = scores[scores["in_visit_list"].fillna(False).astype(bool)]
    townships = township_summaries(scores)
    return {
        "package_version": package_version,
        "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "input": {
            "folder": str(data.resolve()),
            "fingerprint": dataset.fingerprint,
            "households": len(scores),
            "rejects": rejects,
        },
        "as_of": format_month(as_of),
        "horizon_months": int(scores["horizon_months"].iloc[0]) if len(scores) else None,
        "model": {
            "name": model.name,
            "version": model.version,
            "run_id": model.run_id,
            "uri": model.uri,
            "trained_through": model.trained_through,
            "count_calibration": model.count_calibration,
        },
        "counts_by_status": {status: int(status_counts.get(status, 0)) for status in STATUSES},
        "visit_share": dataset.policy.visit_share,
        "visit_list_per_county": {
            str(code): int(count) for code, count in listed.groupby("county_code").size().items()
        },
        "visit_list_per_township": {
            str(record["township_code"]): int(record["visit_list"])
            for record in townships.to_dict("records")
            if record["visit_list"]
        },
        "risk_band_cutoffs": RISK_BAND_CUTOFFS.model_dump(),
        "explained_households": explained,
        "timings_seconds": {stage: round(value, 3) for stage, value in seconds.items()},
        "files": files,
    }
