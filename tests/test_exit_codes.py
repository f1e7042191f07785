"""Every `relapse` subcommand ends with one exit code of one table, and a bug never looks like bad input.

An expected failure (a dataset folder that breaks the contract, an as-of
month outside the data) prints one message and exits 2; anything else is a
bug, printed with its traceback and exit 4. The table itself is in
`relapse --help`, the README and :class:`ExitCode`, and these tests keep them
the same.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from relapse_risk.features.dataset import DatasetError
from relapse_risk.features.errors import ExitCode, MonthOutsideDataError, RelapseRiskError, exit_code_lines
from relapse_risk.features.policy import PolicyError
from relapse_risk.models.registry import ModelNotRegistered
from relapse_risk.monitoring.inputs import MonitorInputError
from relapse_risk.serving.api.launch import ServeSettingsError
from relapse_risk.serving.batch.outputs import OutputFolderError
from relapse_risk.serving.registered_model import ModelSpecError
from relapse_risk.training.promote import PromotionError
from relapse_risk.training.split import TrainingDataError
from typer.testing import CliRunner

from relapse_risk import cli
from relapse_risk.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_table_gives_each_outcome_its_own_code() -> None:
    assert {code.name: code.value for code in ExitCode} == {
        "DONE": 0,
        "REFUSED": 1,
        "CANNOT_RUN": 2,
        "ALERT": 3,
        "UNEXPECTED": 4,
        "WORKER_FAILED": 5,
        "SOME_FAILED": 6,
        "INTERRUPTED": 130,
    }


@pytest.mark.parametrize(
    ("error", "still_a"),
    [
        (DatasetError, ValueError),
        (PolicyError, ValueError),
        (MonthOutsideDataError, ValueError),
        (TrainingDataError, ValueError),
        (PromotionError, RuntimeError),
        (ModelNotRegistered, LookupError),
        (ModelSpecError, ValueError),
        (OutputFolderError, ValueError),
        (ServeSettingsError, ValueError),
        (MonitorInputError, ValueError),
    ],
)
def test_every_expected_failure_is_a_relapse_risk_error_and_still_what_callers_caught_before(
    error: type[Exception], still_a: type[Exception]
) -> None:
    assert issubclass(error, RelapseRiskError)
    assert issubclass(error, still_a)


def test_an_expected_failure_exits_2_with_one_message_and_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "county").mkdir()  # no policy.json, no tables: the folder breaks the contract

    result = CliRunner().invoke(
        app, ["features", "--data", str(tmp_path / "county"), "--as-of", "2024-06", "--out", "f.parquet"]
    )

    assert result.exit_code == ExitCode.CANNOT_RUN == 2
    assert "Cannot build features:" in result.output
    assert "Traceback" not in result.output


def test_an_expected_failure_no_subcommand_words_itself_still_exits_2_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def no_model(*args: object, **kwargs: object) -> int:
        raise ModelSpecError("--model bronze: no such alias")

    monkeypatch.setattr("relapse_risk.serving.batch.command.run_score_command", no_model)

    result = CliRunner().invoke(
        app, ["score", "--data", str(tmp_path), "--as-of", "2024-06", "--out", str(tmp_path / "out")]
    )

    assert result.exit_code == 2
    assert result.output.strip().splitlines() == ["Cannot run: --model bronze: no such alias"]


def test_a_bug_exits_4_with_its_traceback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def divide_by_zero(*args: object, **kwargs: object) -> int:
        return 1 // 0

    monkeypatch.setattr("relapse_risk.training.commands.train_command", divide_by_zero)

    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path)])

    assert result.exit_code == ExitCode.UNEXPECTED == 4
    assert "Traceback (most recent call last)" in result.output
    assert "ZeroDivisionError" in result.output
    assert "Cannot train" not in result.output  # never dressed up as bad input


def test_a_bug_that_raises_a_value_error_is_still_a_bug(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A ValueError from deep inside a library is not a "cannot train": only our own errors are."""

    def pandas_bug(*args: object, **kwargs: object) -> object:
        raise ValueError("cannot reindex on an axis with duplicate labels")

    monkeypatch.setattr("relapse_risk.training.train.run_training", pandas_bug)

    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path)])

    assert result.exit_code == 4
    assert "Traceback (most recent call last)" in result.output
    assert "Cannot train" not in result.output


def test_interrupting_a_command_exits_130(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def interrupted(*args: object, **kwargs: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr("relapse_risk.training.commands.train_command", interrupted)

    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path)])

    assert result.exit_code == ExitCode.INTERRUPTED == 130
    assert "Traceback" not in result.output


def test_a_monitoring_alert_exits_3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from relapse_risk.monitoring.monitor import MonitorResult

    def alert(options: object, progress: object = None) -> MonitorResult:
        summary: dict[str, object] = {"actions": [], "notes": [], "sampling": {}}
        return MonitorResult(status="alert", checks=[], summary=summary, out=tmp_path)

    monkeypatch.setattr("relapse_risk.monitoring.command.run_monitor", alert)

    result = CliRunner().invoke(
        app, ["monitor", "--reference", "r", "--current", "c", "--out", str(tmp_path), "--no-mlflow"]
    )

    assert result.exit_code == ExitCode.ALERT == 3, result.output


def test_a_command_whose_extra_is_missing_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "evidently" else real_find_spec(name, *a),
    )

    result = CliRunner().invoke(
        app, ["monitor", "--reference", "r", "--current", "c", "--out", str(tmp_path)]
    )

    assert result.exit_code == 2
    assert "`relapse monitor` needs the monitor extra" in result.output
    assert "pip install 'relapse-risk[monitor]'" in result.output
    assert "Traceback" not in result.output


def test_help_and_readme_carry_the_same_table() -> None:
    help_text = " ".join(CliRunner().invoke(app, ["--help"]).output.split())
    readme = README.read_text(encoding="utf-8")
    section = readme.split("## Exit codes", 1)[1].split("\n## ", 1)[0]

    for line in exit_code_lines():
        code, meaning = line.split(maxsplit=1)
        assert f"{code} {meaning}" in help_text
        assert re.search(rf"^\| {code} \| {re.escape(meaning)} \|$", section, re.MULTILINE), line
    assert cli.EXIT_CODES_HELP.startswith("Exit codes")
