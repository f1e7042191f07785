"""Speed of the write stage of batch scoring (`relapse score`), from a finished run folder.

    .venv/bin/python benchmarks/bench_write.py --run RUN
    .venv/bin/python benchmarks/bench_write.py --run RUN --against OTHER/.venv/bin/python --check-workbooks

``RUN`` is a run folder written by `relapse score` or benchmarks/bench_score.py
(e.g. the 1,000,000-household county of docs/performance.md). Its scores.parquet
is read back into the frame the job holds when it reaches the write stage
(pandas nullable dtypes, rows by household id), and every file of the stage is
written again into ``--out``: scores.parquet, scores.csv, rejects.csv,
village_context.parquet (written from RUN's copy: computing it needs the
features) and visit_lists/. Each part is timed alone, then the whole stage as
the job runs it, three times; wall and CPU seconds (child processes included)
are printed.

``--against PYTHON`` first runs this same measurement under another checkout's
interpreter (its editable install decides which code is timed), in a child
process, so the two sets of figures come from one run on one machine state,
and prints the ratios. The first stage's files are then compared with RUN's:
byte for byte, and with ``--check-workbooks`` each workbook whose bytes differ
cell by cell as openpyxl reads it (values, types, styles, widths, panes, page
setup, properties); the later runs' files with the first run's, byte for byte.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

NULLABLE_DTYPES = {
    pa.string(): pd.StringDtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.float64(): pd.Float64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
}
"""Arrow type of a scores.parquet column -> the pandas dtype serving/scoring.py gives it."""

REPEATS = 3


def read_scores(run: Path) -> pd.DataFrame:
    """scores.parquet as the job's frame: the nullable dtypes of ``scores_frame``, rows by household id.

    The file's floats are rounded; no visit-list cell shows a float, and rounding again
    when writing gives the same table, so the files written from it are the run's.
    """
    table = pq.read_table(run / "scores.parquet")
    return table.to_pandas(types_mapper=NULLABLE_DTYPES.get)


def read_rejects(run: Path) -> pd.DataFrame:
    from relapse_risk.serving.batch.outputs import REJECTS_SCHEMA

    rejects = pd.read_csv(
        run / "rejects.csv",
        encoding="utf-8-sig",
        dtype={name: ("Int64" if name == "row" else object) for name in REJECTS_SCHEMA.names},
        keep_default_na=False,
        na_values={"row": [""], "household_id": [""], "value": [""]},
    )
    return rejects


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@contextmanager
def timed(figures: dict[str, list[float]], label: str) -> Iterator[None]:
    wall, cpu = time.perf_counter(), _cpu_seconds()
    yield
    figures[label] = [round(time.perf_counter() - wall, 3), round(_cpu_seconds() - cpu, 3)]


def write_stage(scores: pd.DataFrame, rejects: pd.DataFrame, context: pd.DataFrame | None, out: Path) -> None:
    """The write stage of serving/batch/job.py:score_folder, from the frame it holds."""
    from relapse_risk.serving.batch import job

    writer: Callable[..., object] | None = getattr(job, "write_run_files", None)
    if writer is not None:
        writer(scores, rejects, context, out)
        return
    # The stage as it was written inline in score_folder before write_run_files took it over.
    from relapse_risk.serving.batch.outputs import (
        REJECTS_CSV,
        SCORES_CSV,
        SCORES_PARQUET,
        VISIT_LISTS_DIR,
        scores_arrow_table,
        write_rejects_csv,
        write_scores_csv,
        write_scores_parquet,
    )
    from relapse_risk.serving.batch.visit_lists import write_visit_lists
    from relapse_risk.serving.village_context import VILLAGE_CONTEXT_FILE, write_village_context

    table = scores_arrow_table(scores)
    write_scores_parquet(table, out / SCORES_PARQUET)
    write_scores_csv(table, out / SCORES_CSV)
    write_rejects_csv(rejects, out / REJECTS_CSV)
    if context is not None:
        write_village_context(context, out / VILLAGE_CONTEXT_FILE)
    write_visit_lists(scores, out / VISIT_LISTS_DIR)


def measure(run: Path, out: Path) -> dict[str, list[float]]:
    """Seconds of each part of the write stage and of the whole stage, written into ``out``."""
    from relapse_risk.serving.batch import outputs
    from relapse_risk.serving.batch import visit_lists as lists
    from relapse_risk.serving.village_context import VILLAGE_CONTEXT_FILE, read_village_context

    scores, rejects = read_scores(run), read_rejects(run)
    context = read_village_context(run / VILLAGE_CONTEXT_FILE)
    figures: dict[str, list[float]] = {}
    parts = out / "parts"
    (parts / "visit_lists").mkdir(parents=True)

    with timed(figures, "scores_arrow_table"):
        table = outputs.scores_arrow_table(scores)
    with timed(figures, "scores.parquet"):
        outputs.write_scores_parquet(table, parts / outputs.SCORES_PARQUET)
    with timed(figures, "scores.csv"):
        outputs.write_scores_csv(table, parts / outputs.SCORES_CSV)
    with timed(figures, "township_pages"):
        pages = lists.township_pages(scores)
    environment = lists.template_environment()
    with timed(figures, "township html"):
        for page in pages:
            html = lists.render_township_html(page, environment)
            (parts / "visit_lists" / f"{page.file_stem}.html").write_text(html, encoding="utf-8")
    with timed(figures, "township xlsx"):
        for page in pages:
            lists.write_township_xlsx(page, parts / "visit_lists" / f"{page.file_stem}.xlsx")
    with timed(figures, "index html"):
        as_of = str(scores["as_of"].iloc[0])
        index = lists.render_index_html(lists.township_summaries(scores), pages, as_of, environment)
        (parts / "visit_lists" / "index.html").write_text(index, encoding="utf-8")

    for repeat in range(1, REPEATS + 1):
        stage = out / f"stage-{repeat}"
        stage.mkdir()
        with timed(figures, f"write stage, run {repeat}"):
            write_stage(scores, rejects, context, stage)
    return figures


# -- comparing the files written ----------------------------------------------------------------


def differing_files(run: Path, written: Path, check_workbooks: bool, complete: bool) -> tuple[list[str], int]:
    """Files of ``written`` whose content differs from ``run``'s, and how many workbooks differ in bytes.

    ``complete``: ``written`` holds a whole stage's files, so it must hold every file of ``run``
    but the manifest (which has timings).
    """
    differing: list[str] = []
    workbooks_with_other_bytes = 0
    names = sorted(
        p.relative_to(written) for p in written.rglob("*") if p.is_file() and p.name != "manifest.json"
    )
    expected = sorted(p.relative_to(run) for p in run.rglob("*") if p.is_file() and p.name != "manifest.json")
    if complete and names != expected:
        differing.append(f"file lists differ: {sorted(set(names) ^ set(expected))[:5]}")
    for name in names:
        if not (run / name).is_file():
            differing.append(f"{name} (not in the run)")
            continue
        if (run / name).read_bytes() == (written / name).read_bytes():
            continue
        if name.suffix != ".xlsx":
            differing.append(str(name))
            continue
        workbooks_with_other_bytes += 1
        if check_workbooks and workbook_content(run / name) != workbook_content(written / name):
            differing.append(str(name))
    return differing, workbooks_with_other_bytes


def workbook_content(path: Path) -> dict[str, object]:
    """What openpyxl reads of a workbook: cell values, types and styles, sheet layout, properties."""
    from openpyxl import load_workbook

    workbook = load_workbook(path)
    sheets: dict[str, object] = {}
    for sheet in workbook.worksheets:
        cells = [
            (
                cell.coordinate,
                cell.value,
                cell.data_type,
                repr(cell.font),
                repr(cell.fill),
                repr(cell.border),
                repr(cell.alignment),
                cell.number_format,
                repr(cell.protection),
                cell.style,
            )
            for row in sheet.iter_rows()
            for cell in row
        ]
        sheets[sheet.title] = {
            "cells": cells,
            "dimensions": sheet.dimensions,
            "widths": {key: d.width for key, d in sheet.column_dimensions.items()},
            "freeze_panes": sheet.freeze_panes,
            "print_title_rows": sheet.print_title_rows,
            "page_setup": repr(sheet.page_setup),
            "sheet_properties": repr(sheet.sheet_properties),
            "margins": repr(sheet.page_margins),
            "views": repr(sheet.views),
        }
    properties = workbook.properties
    return {
        "sheets": sheets,
        "sheetnames": workbook.sheetnames,
        "named_styles": list(workbook.named_styles),
        "creator": properties.creator,
        "created": properties.created,
        "modified": properties.modified,
        "defined_names": repr(workbook.defined_names),
    }


# -- the command --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, required=True, help="a run folder of `relapse score`")
    parser.add_argument("--out", type=Path, default=None, help="where to write [default: a temporary folder]")
    parser.add_argument("--against", default=None, help="another checkout's python, measured first")
    parser.add_argument(
        "--check-workbooks", action="store_true", help="compare workbooks whose bytes differ by content"
    )
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # the child's answer
    args = parser.parse_args()

    out = args.out or Path(tempfile.mkdtemp(prefix="relapse-bench-write-"))
    if args.json:
        print(json.dumps(measure(args.run, out)))
        return

    results: dict[str, dict[str, list[float]]] = {}
    folders: dict[str, Path] = {}
    if args.against:
        folders["against"] = out / "against"
        child = subprocess.run(
            [args.against, __file__, "--run", str(args.run), "--out", str(folders["against"]), "--json"],
            check=True,
            capture_output=True,
            text=True,
        )
        results["against"] = json.loads(child.stdout.strip().splitlines()[-1])
    folders["this"] = out / "this"
    results["this"] = measure(args.run, folders["this"])

    columns = list(results)
    print(f"{args.run}: {len(read_scores(args.run)):,} households")
    print(f"{'seconds (wall / cpu)':<24}" + "".join(f"{name:>22}" for name in columns) + "   ratio")
    for label in results["this"]:
        cells = [results[name].get(label) for name in columns]
        line = "".join(f"{c[0]:>10.2f} / {c[1]:>7.2f} " if c else f"{'-':>22}" for c in cells)
        first, last = cells[0], cells[-1]
        ratio = f"{first[0] / last[0]:7.1f}x" if len(cells) > 1 and first and last and last[0] else ""
        print(f"{label:<24}{line}{ratio}")

    checked = "compared cell by cell" if args.check_workbooks else "not compared by content"
    for name, folder in folders.items():
        first = folder / "stage-1"
        differing, other_bytes = differing_files(args.run, first, args.check_workbooks, complete=True)
        print(
            f"{name}: {len(differing)} file(s) of the stage differ from {args.run.name}'s"
            f"{': ' + ', '.join(differing[:5]) if differing else ''};"
            f" {other_bytes} workbook(s) with other bytes ({checked})"
        )
        # The same input must give the same bytes on every run, workbooks included.
        again = [
            str(path.relative_to(written))
            for written in [*sorted(folder.glob("stage-*"))[1:], folder / "parts"]
            for path in written.rglob("*")
            if path.is_file() and path.read_bytes() != (first / path.relative_to(written)).read_bytes()
        ]
        print(f"{name}: {len(again)} file(s) of the later runs differ from the first run's {again[:5]}")
    if args.out is None:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
