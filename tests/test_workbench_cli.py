"""`relapse users`, `relapse outcomes import|export`, and the outcomes fed back to `relapse monitor` and
`relapse evaluate` (--outcomes): the commands as an administrator and a county analyst run them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import message_lines
from relapse_risk.models.visit_outcomes import EXPORT_COLUMNS, feedback_by, read_outcomes
from relapse_risk.monitoring.visit_feedback import visit_feedback
from relapse_risk.serving.workbench import store
from relapse_risk.serving.workbench.auth import Staff
from relapse_risk.serving.workbench.db import make_engine, session_factory
from relapse_risk.training.visit_feedback import visit_precision, wilson_interval
from typer.testing import CliRunner
from workbench_fixtures import PASSWORD, Workbench

from relapse_risk.cli import app

WIDE = {"COLUMNS": "200"}


def relapse(*arguments: str, stdin: str | None = None):  # noqa: ANN201 - click's Result
    return CliRunner().invoke(app, list(arguments), input=stdin, env=WIDE)


# -- users -----------------------------------------------------------------------------------------


def test_users_are_added_with_the_password_on_stdin_listed_and_disabled(db_url: str) -> None:
    added = relapse("users", "add", "wang", "--role", "township", "--area", "532328100",
                    "--password-stdin", "--db", db_url, stdin=PASSWORD + "\n")  # fmt: skip
    assert added.exit_code == 0, added.output
    assert message_lines(added.output) == ["Added wang (township 532328100)."]

    listed = relapse("users", "list", "--db", db_url)
    assert "wang" in listed.output and "532328100" in listed.output and "yes" in listed.output

    assert relapse("users", "disable", "wang", "--db", db_url).exit_code == 0
    assert "disabled" in relapse("users", "list", "--db", db_url).output


@pytest.mark.parametrize(
    ("arguments", "stdin", "says"),
    [
        (["--role", "mayor", "--area", "532328"], PASSWORD, "role 'mayor'"),
        (["--role", "township", "--area", "532328"], PASSWORD, "a township code has 9 digits"),
        (["--role", "county", "--area", "532328"], "short", "at least 8 characters"),
    ],
)
def test_a_user_that_cannot_be_added_is_exit_2_with_the_reason(
    db_url: str, arguments: list[str], stdin: str, says: str
) -> None:
    result = relapse("users", "add", "li", *arguments, "--password-stdin", "--db", db_url, stdin=stdin + "\n")
    assert result.exit_code == 2 and says in result.output


def test_a_password_is_never_taken_from_the_command_line(db_url: str) -> None:
    result = relapse("users", "add", "li", "--role", "county", "--area", "532328", "--db", db_url)
    assert result.exit_code == 2 and "--password-stdin" in result.output


def test_adding_the_same_user_twice_is_refused(db_url: str) -> None:
    arguments = (
        "users",
        "add",
        "li",
        "--role",
        "county",
        "--area",
        "532328",
        "--password-stdin",
        "--db",
        db_url,
    )
    assert relapse(*arguments, stdin=PASSWORD).exit_code == 0
    again = relapse(*arguments, stdin=PASSWORD)
    assert again.exit_code == 2 and "exists already" in again.output


# -- import and export -----------------------------------------------------------------------------


def test_outcomes_import_twice_says_nothing_changed(db_url: str, workbench_runs) -> None:
    first = relapse("outcomes", "import", "--run", str(workbench_runs.latest), "--db", db_url)
    again = relapse("outcomes", "import", "--run", str(workbench_runs.latest), "--db", db_url)

    assert first.exit_code == again.exit_code == 0, first.output
    assert message_lines(first.output)[0].startswith("Imported county ")
    assert message_lines(again.output)[0].startswith("Already imported, nothing changed:")


def test_importing_a_folder_that_is_no_run_is_exit_2(db_url: str, tmp_path: Path) -> None:
    result = relapse("outcomes", "import", "--run", str(tmp_path), "--db", db_url)
    assert result.exit_code == 2 and "manifest.json: not found" in result.output


def _record(workbench: Workbench, outcomes: list[str]) -> None:
    """Outcomes for the first listed households of township A, in rank order."""
    staff = Staff(2, "staff_a", "township", workbench.township_a)
    with session_factory(make_engine(workbench.url))() as session:
        listed = store.visit_list(session, staff, workbench.township_a)["households"]
        for household, outcome in zip(listed, outcomes, strict=False):
            data = store.OutcomeInput("2026-12-01", "王", outcome, (), "")
            store.record_outcome(session, staff, household["household_id"], data)


def test_outcomes_export_writes_every_listed_household_with_its_latest_outcome(
    workbench: Workbench, tmp_path: Path
) -> None:
    _record(workbench, ["confirmed", "no_risk", "not_home"])
    out = tmp_path / "outcomes.csv"

    result = relapse("outcomes", "export", "--db", workbench.url, "--out", str(out))

    assert result.exit_code == 0, result.output
    frame = read_outcomes(out)
    assert tuple(frame.columns) == EXPORT_COLUMNS
    assert set(frame["as_of"]) == {workbench.runs.latest_as_of, _earlier_as_of(workbench)}
    latest = frame[frame["as_of"] == workbench.runs.latest_as_of]
    assert sorted(latest["outcome"].replace("", "-")).count("-") == len(latest) - 3
    assert message_lines(result.output) == [f"Wrote {len(frame)} rows to {out}."]


def _earlier_as_of(workbench: Workbench) -> str:
    return json.loads((workbench.runs.earlier / "manifest.json").read_text())["as_of"]


# -- fed back --------------------------------------------------------------------------------------


def _export(workbench: Workbench, tmp_path: Path) -> Path:
    out = tmp_path / "outcomes.csv"
    assert relapse("outcomes", "export", "--db", workbench.url, "--out", str(out)).exit_code == 0
    return out


def test_feedback_counts_confirmed_among_visited_and_never_visited_by_group() -> None:
    frame = pd.DataFrame(
        {
            "township_code": ["t1", "t1", "t1", "t1", "t2"],
            "outcome": ["confirmed", "no_risk", "not_home", "", ""],
        }
    )
    table = feedback_by(frame, "township_code").set_index("township_code")

    assert table.loc["t1", ["listed", "visited", "judged", "confirmed", "never_visited"]].tolist() == [
        4,
        2,
        2,
        1,
        1,
    ]
    assert table.loc["t1", "confirmed_share"] == 0.5 and table.loc["t1", "never_visited_share"] == 0.25
    assert pd.isna(table.loc["t2", "confirmed_share"]) and table.loc["t2", "never_visited_share"] == 1.0


def test_monitor_reports_visit_outcomes_of_the_current_list(workbench: Workbench, tmp_path: Path) -> None:
    _record(workbench, ["confirmed", "confirmed", "no_risk", "not_home"])
    outcomes = _export(workbench, tmp_path)

    summary = visit_feedback(outcomes, str(workbench.runs.latest), tmp_path / "monitor")

    assert summary["as_of"] == workbench.runs.latest_as_of
    row = next(r for r in summary["by_township"] if r["township_code"] == workbench.township_a)
    assert (row["visited"], row["confirmed"], row["judged"]) == (3, 2, 3)
    assert row["confirmed_share"] == pytest.approx(2 / 3)
    assert row["never_visited_share"] == pytest.approx((row["listed"] - 4) / row["listed"])
    others = [r for r in summary["by_township"] if r["township_code"] != workbench.township_a]
    assert all(r["never_visited_share"] == 1.0 for r in others)
    assert json.loads((tmp_path / "monitor" / "visit_outcomes.json").read_text())["as_of"] == summary["as_of"]


def test_relapse_monitor_with_outcomes_prints_the_feedback_beside_its_checks(
    workbench: Workbench, tmp_path: Path
) -> None:
    _record(workbench, ["confirmed"])
    outcomes = _export(workbench, tmp_path)
    county = workbench.runs.county.folder
    earlier, latest = _earlier_as_of(workbench), workbench.runs.latest_as_of

    result = relapse(
        "monitor", "--reference", f"{county}@{earlier}", "--current", f"{county}@{latest}",
        "--out", str(tmp_path / "monitor"), "--model", "none", "--no-mlflow", "--outcomes", str(outcomes),
    )  # fmt: skip

    assert result.exit_code in (0, 3), result.output
    assert f"Visit outcomes of the {workbench.runs.latest_as_of} list, by township" in result.output
    assert (tmp_path / "monitor" / "visit_outcomes.json").exists()
    assert (tmp_path / "monitor" / "summary.json").exists()


def test_a_broken_outcomes_file_is_exit_2_naming_it(workbench: Workbench, tmp_path: Path) -> None:
    broken = tmp_path / "outcomes.csv"
    broken.write_text("household_id,outcome\nh1,maybe\n", encoding="utf-8")
    county = workbench.runs.county.folder

    result = relapse(
        "monitor", "--reference", f"{county}@{_earlier_as_of(workbench)}", "--current", str(county),
        "--out", str(tmp_path / "monitor"), "--model", "none", "--no-mlflow", "--outcomes", str(broken),
    )  # fmt: skip

    assert result.exit_code in (2, 3)
    assert "not an export of `relapse outcomes export`" in result.output


def test_precision_on_visited_is_per_model_and_list_with_a_wilson_interval(
    workbench: Workbench, tmp_path: Path
) -> None:
    _record(workbench, ["confirmed", "confirmed", "confirmed", "no_risk", "not_home", "moved_away"])

    rows = visit_precision(_export(workbench, tmp_path))

    latest = next(r for r in rows if r["as_of"] == workbench.runs.latest_as_of)
    assert latest["model"] == "rule-baseline/0"
    assert (latest["judged"], latest["confirmed"], latest["precision"]) == (4, 3, 0.75)
    low, high = latest["interval_95"]
    assert low < 0.75 < high and (low, high) == pytest.approx(wilson_interval(3, 4))
    earlier = next(r for r in rows if r["as_of"] != workbench.runs.latest_as_of)
    assert earlier["judged"] == 0 and earlier["precision"] is None and earlier["interval_95"] is None


def test_the_wilson_interval_matches_the_textbook_value() -> None:
    low, high = wilson_interval(8, 10)  # type: ignore[misc]
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)
    assert wilson_interval(0, 0) is None


def test_relapse_evaluate_with_outcomes_adds_the_precision_to_its_report(
    trained_small_county, workbench: Workbench, tmp_path: Path
) -> None:
    _record(workbench, ["confirmed", "no_risk"])
    outcomes = _export(workbench, tmp_path)
    report = tmp_path / "evaluation.json"

    result = relapse(
        "evaluate", "--model", "challenger", "--tracking-uri", trained_small_county.tracking_uri,
        "--data", str(trained_small_county.county.folder), "--out", str(report), "--outcomes", str(outcomes),
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "Precision on visited households" in result.output
    content = json.loads(report.read_text())
    assert "metrics" in content or len(content) > 1  # the rules' metrics are still there
    lists = content["visit_outcomes"]["lists"]
    assert {(r["as_of"], r["judged"], r["confirmed"]) for r in lists} >= {(workbench.runs.latest_as_of, 2, 1)}
