"""What the commands print where stdout is a file (cron, CI): whole table cells, no colour codes,
and a timestamped line as each stage starts and ends, written while the job runs."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from relapse_risk.features.policy import read_policy
from relapse_risk.features.stages import StageTimes
from relapse_risk.serving.batch.job import BATCH_STAGES, STAGE_LABELS
from relapse_risk.serving.batch.outputs import MANIFEST_JSON, REJECTS_CSV, SCORES_CSV, SCORES_PARQUET
from relapse_risk.training.evaluate import STAGE_LABELS as EVALUATE_LABELS
from rich.table import Table

from relapse_risk.console import (
    PIPED_WIDTH,
    STAGE_LOGGER,
    error_console,
    log_stages_to_stderr,
    output_console,
)

RELAPSE = Path(sys.executable).with_name("relapse")
STAGE_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (\w+): (.+) (started|done in \d+\.\d s)$")


@pytest.fixture
def package_logger() -> Iterator[logging.Logger]:
    """The package's logger, put back as it was: the command line configures it for the process."""
    logger = logging.getLogger(STAGE_LOGGER)
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield logger
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate


def test_a_console_that_is_not_a_terminal_is_wide_and_colourless() -> None:
    piped = output_console({"TTY_COMPATIBLE": "0"})
    assert piped.width == PIPED_WIDTH and piped.color_system is None
    assert output_console({"TTY_COMPATIBLE": "0", "COLUMNS": "132"}).width == 132
    assert error_console({"TTY_COMPATIBLE": "0"}).width == PIPED_WIDTH

    terminal = output_console({"TTY_COMPATIBLE": "1", "COLUMNS": "90"})
    assert terminal.width == 90 and terminal.color_system is not None


def test_a_piped_console_prints_long_cells_whole() -> None:
    console = output_console({"TTY_COMPATIBLE": "0"})
    long_path = "/srv/county-exports/2024/quarter-4/" + "x" * 60 + "/scores.parquet"
    table = Table(title="Written")
    table.add_column("file", overflow="fold")
    table.add_column("as of", no_wrap=True, overflow="fold")
    table.add_row(long_path, "2024-12")
    with console.capture() as captured:
        console.print(table)
    text = captured.get()
    assert long_path in text and "2024-12" in text and "…" not in text and "\x1b[" not in text


def test_stages_log_their_start_and_end_and_their_seconds_add_up(caplog) -> None:
    times = StageTimes(logging.getLogger("test_output.stages"), {"load": "load and validate"})
    with caplog.at_level(logging.INFO, logger="test_output.stages"):
        for _ in range(2):
            with times.stage("load"):
                pass
        with times.stage("rank", quiet=True):
            pass
        with pytest.raises(RuntimeError), times.stage("write"):
            raise RuntimeError("disk full")
    messages = [record.getMessage() for record in caplog.records]
    assert [re.sub(r"\d+\.\d", "N", m) for m in messages] == [
        "load and validate started",
        "load and validate done in N s",
        "load and validate started",
        "load and validate done in N s",
        "write started",
        "write failed after N s",
    ]
    assert list(times.wall) == ["load", "rank", "write"] and set(times.cpu) == set(times.wall)
    assert StageTimes().wall == {}  # without a logger, nothing is logged (the API's case)


def test_the_command_line_stamps_each_line_with_the_time_and_the_command(package_logger, capsys) -> None:
    log_stages_to_stderr("score")
    log_stages_to_stderr("score")  # a second command in the same process replaces the handler
    logging.getLogger("relapse_risk.serving.batch.job").info("%s started", "load and validate")
    logging.getLogger("relapse_risk.serving.batch.job").debug("not shown at the default level")

    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert STAGE_LINE.match(lines[0]).groups()[1:] == ("score", "load and validate", "started")
    ours = [h for h in package_logger.handlers if type(h).__name__ == "_CurrentStderrHandler"]
    assert len(ours) == 1 and not package_logger.propagate


def _piped_environment() -> dict[str, str]:
    """The environment of a cron job: no terminal width, nothing forcing colours."""
    drop = {"COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"}
    return {name: value for name, value in os.environ.items() if name not in drop}


def _run_piped(arguments: list[str], folder: Path) -> tuple[str, str]:
    """Run ``relapse`` with stdout and stderr written to files, as a cron job would; both texts."""
    stdout, stderr = folder / "stdout.txt", folder / "stderr.txt"
    with stdout.open("w") as out, stderr.open("w") as err:
        finished = subprocess.run(
            [str(RELAPSE), *arguments],
            stdout=out,
            stderr=err,
            env=_piped_environment(),
            cwd=folder,
            timeout=300,
            check=False,
        )
    text, log = stdout.read_text(encoding="utf-8"), stderr.read_text(encoding="utf-8")
    assert finished.returncode == 0, text + log
    return text, log


def _stage_lines(log: str, command: str) -> list[tuple[str, str, str]]:
    """(timestamp, stage, event) of the command's stage lines, in the order they were written."""
    found = [STAGE_LINE.match(line) for line in log.splitlines()]
    lines = [(m[1], m[3], m[4].split(" in ")[0]) for m in found if m is not None and m[2] == command]
    assert [stamp for stamp, _, _ in lines] == sorted(stamp for stamp, _, _ in lines)
    return lines


@pytest.mark.slow
def test_relapse_score_piped_to_a_file_prints_whole_tables_and_stage_lines(
    trained_small_county, tmp_path
) -> None:
    folder = trained_small_county.county.folder
    as_of = read_policy(folder / "policy.json").data_end.strftime("%Y-%m")
    # A run folder deep enough that a line naming it would be cut in 80 columns.
    out = tmp_path / "quarterly-scoring-runs-of-the-county" / f"visit-lists-and-scores-{as_of}"
    arguments = ["score", "--data", str(folder), "--as-of", as_of, "--model", "challenger"]
    text, log = _run_piped(
        [*arguments, "--out", str(out), "--tracking-uri", trained_small_county.tracking_uri], tmp_path
    )

    assert "…" not in text and "\x1b[" not in text and "\x1b[" not in log
    assert re.search(rf"scored at {as_of} \(horizon 6 months\) by relapse-risk v\d+\b", text)
    scores = pd.read_parquet(out / SCORES_PARQUET)
    rows = text.splitlines()
    for status, count in scores["status"].value_counts().items():
        assert any(re.search(rf"│ {status} +│ +{count:,} │", row) for row in rows), status
    for township in scores.loc[scores["in_visit_list"].fillna(False), "township_code"].unique():
        assert any(f"│ {township} " in row for row in rows), township
    for stage in BATCH_STAGES:
        title = STAGE_LABELS[stage][:1].upper() + STAGE_LABELS[stage][1:]
        assert any(re.search(rf"│ {re.escape(title)} +│ +\d+\.\d\d │", row) for row in rows), title
    assert f"Written to {out}" in [row.rstrip() for row in rows]
    for name in (SCORES_PARQUET, SCORES_CSV, REJECTS_CSV, MANIFEST_JSON, "visit_lists/index.html"):
        assert any(f"│ {name} " in row for row in rows), name

    stages = _stage_lines(log, "score")
    assert stages[:2] == [
        (stages[0][0], "load model challenger", "started"),
        (stages[1][0], "load model challenger", "done"),
    ]
    assert [(stage, event) for _, stage, event in stages[2:]] == [
        (STAGE_LABELS[stage], event) for stage in BATCH_STAGES for event in ("started", "done")
    ]


@pytest.mark.slow
def test_relapse_evaluate_piped_to_a_file_keeps_months_and_model_whole(
    trained_small_county, tmp_path
) -> None:
    folder = trained_small_county.county.folder
    arguments = ["evaluate", "--data", str(folder), "--model", "challenger", "--out", "evaluation.json"]
    text, log = _run_piped([*arguments, "--tracking-uri", trained_small_county.tracking_uri], tmp_path)

    assert "…" not in text and "\x1b[" not in text
    assert re.search(rf"{re.escape(str(folder))}: relapse-risk v\d+", text)
    for method in ("model", "rule_baseline", "oracle"):
        for month in ("2023-09", "2023-12", "2024-03", "2024-06"):
            assert any(re.search(rf"│ {method} +│ {month} +│", row) for row in text.splitlines())
    assert [(stage, event) for _, stage, event in _stage_lines(log, "evaluate")] == [
        (label, event) for label in EVALUATE_LABELS.values() for event in ("started", "done")
    ]
