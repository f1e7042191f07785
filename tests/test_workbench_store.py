"""The workbench's database: migrations, importing runs, outcomes with their audit trail, export.

Every test runs on SQLite and on PostgreSQL (``db_url`` in workbench_fixtures.py).
"""

from __future__ import annotations

import csv
import datetime as dt
import threading
from pathlib import Path

import pandas as pd
import pytest
from relapse_risk.models.visit_outcomes import EXPORT_COLUMNS, read_outcomes
from relapse_risk.serving.workbench import store
from relapse_risk.serving.workbench.auth import Staff
from relapse_risk.serving.workbench.command import export_outcomes, import_runs
from relapse_risk.serving.workbench.db import (
    ListEntry,
    Visit,
    VisitListRecord,
    VisitRevision,
    make_engine,
    session_factory,
    upgrade,
)
from relapse_risk.serving.workbench.importer import ImportRefused
from sqlalchemy import func, inspect, select
from workbench_fixtures import Workbench


def _count(url: str, table: type) -> int:
    with session_factory(make_engine(url))() as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def _outcome(outcome: str = "confirmed", note: str = "", day: str | None = None) -> store.OutcomeInput:
    return store.OutcomeInput(
        day or dt.date.today().isoformat(), "王村干", outcome, ("medical_assistance",), note
    )


def test_migrations_create_every_table_and_running_them_again_changes_nothing(db_url: str) -> None:
    upgrade(db_url)
    upgrade(db_url)
    tables = set(inspect(make_engine(db_url)).get_table_names())
    assert {
        "lists",
        "list_entries",
        "visits",
        "visit_revisions",
        "users",
        "sessions",
        "security_events",
    } <= tables
    assert "alembic_version" in tables


def test_a_run_imports_its_listed_households_with_their_facts(db_url: str, workbench_runs) -> None:
    result = import_runs(db_url, workbench_runs.latest, None, None)

    scores = pd.read_parquet(workbench_runs.latest / "scores.parquet")
    listed = scores[scores["in_visit_list"]]
    assert result.created and result.households == len(listed) == _count(db_url, ListEntry)
    with session_factory(make_engine(db_url))() as session:
        entry = session.scalars(select(ListEntry).where(ListEntry.rank_county == 1)).one()
    top = listed.sort_values("rank_county").iloc[0]
    assert entry.household_id == top["household_id"] and entry.township_code == top["township_code"]
    assert [r["code"] for r in entry.reasons] == [top["reason_1_code"], top["reason_2_code"]]
    detail = entry.detail
    assert 24 <= len(detail["months"]) <= 36 and detail["months"][-1] == workbench_runs.latest_as_of
    assert all(len(v) == len(detail["months"]) for v in detail["income"].values())
    assert len(detail["per_capita"]) == len(detail["line"]) == len(detail["months"])
    assert detail["members"] and all(
        {"age", "disability_grade", "work_months"} <= set(m) for m in detail["members"]
    )


def test_importing_a_run_twice_creates_no_duplicates(db_url: str, workbench_runs) -> None:
    first = import_runs(db_url, workbench_runs.latest, None, None)
    again = import_runs(db_url, workbench_runs.latest, None, None)

    assert (again.list_id, again.created) == (first.list_id, False)
    assert _count(db_url, VisitListRecord) == 1 and _count(db_url, ListEntry) == first.households


def test_another_run_for_the_same_county_and_month_is_refused(
    db_url: str, workbench_runs, tmp_path: Path
) -> None:
    import_runs(db_url, workbench_runs.latest, None, None)
    other = tmp_path / "rescored"
    other.mkdir()
    (other / "manifest.json").write_bytes((workbench_runs.latest / "manifest.json").read_bytes())
    scores = pd.read_parquet(workbench_runs.latest / "scores.parquet")
    scores.loc[scores["rank_county"] == 1, "risk_score"] = 0.99
    scores.to_parquet(other / "scores.parquet", index=False)

    with pytest.raises(ImportRefused, match="already has a list"):
        import_runs(db_url, other, None, None)
    assert _count(db_url, VisitListRecord) == 1


def test_a_new_quarter_adds_a_list_and_keeps_the_earlier_one_and_its_visits(workbench: Workbench) -> None:
    staff = Staff(1, "analyst", "county", workbench.county_code)
    with session_factory(make_engine(workbench.url))() as session:
        lists = session.scalars(select(VisitListRecord).order_by(VisitListRecord.as_of)).all()
        assert [x.as_of for x in lists][-1] == workbench.runs.latest_as_of and len(lists) == 2
        earlier = session.scalars(select(ListEntry).where(ListEntry.list_id == lists[0].id)).first()
        assert earlier is not None
        store.record_outcome(session, staff, earlier.household_id, _outcome("no_risk"))
        page = store.household(session, staff, earlier.household_id)
    assert page["visits"][0]["outcome"] == "no_risk"
    assert page["list"]["as_of"] in {x.as_of for x in lists}


def test_an_outcome_is_saved_with_its_first_revision_and_a_resent_form_records_once(
    workbench: Workbench,
) -> None:
    staff = Staff(2, "staff_a", "township", workbench.township_a)
    with session_factory(make_engine(workbench.url))() as session:
        first, created = store.record_outcome(session, staff, workbench.household_a, _outcome(), "key-1")
        again, created_again = store.record_outcome(
            session, staff, workbench.household_a, _outcome(), "key-1"
        )
    assert created and not created_again and again["id"] == first["id"]
    assert _count(workbench.url, Visit) == 1 and _count(workbench.url, VisitRevision) == 1


def test_edits_keep_every_version_and_a_stale_edit_is_refused_not_lost(workbench: Workbench) -> None:
    staff = Staff(2, "staff_a", "township", workbench.township_a)
    sessions = session_factory(make_engine(workbench.url))
    with sessions() as session:
        visit, _ = store.record_outcome(session, staff, workbench.household_a, _outcome("not_home"))
    with sessions() as one, sessions() as two:
        store.edit_outcome(one, staff, visit["id"], 1, _outcome("confirmed", note="first edit"))
        with pytest.raises(store.Conflict) as refused:
            store.edit_outcome(
                two, staff, visit["id"], 1, _outcome("no_risk", note="second edit, read at v1")
            )
    assert refused.value.current["version"] == 2 and refused.value.current["note"] == "first edit"
    with sessions() as session:
        history = store.visit_history(session, staff, visit["id"])
    assert [r["version"] for r in history["revisions"]] == [1, 2]
    assert [r["outcome"] for r in history["revisions"]] == ["not_home", "confirmed"]


def test_two_concurrent_edits_of_one_outcome_one_wins_the_other_gets_a_conflict(workbench: Workbench) -> None:
    staff = Staff(2, "staff_a", "township", workbench.township_a)
    sessions = session_factory(make_engine(workbench.url))
    with sessions() as session:
        visit, _ = store.record_outcome(session, staff, workbench.household_a, _outcome("not_home"))
    results: list[str] = []
    barrier = threading.Barrier(8)

    def edit(i: int) -> None:
        with sessions() as session:
            barrier.wait()
            try:
                store.edit_outcome(session, staff, visit["id"], 1, _outcome("confirmed", note=f"edit {i}"))
                results.append("saved")
            except store.Conflict:
                results.append("conflict")

    threads = [threading.Thread(target=edit, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["conflict"] * 7 + ["saved"]
    assert _count(workbench.url, VisitRevision) == 2


def test_invalid_outcomes_name_every_field_at_fault(workbench: Workbench) -> None:
    staff = Staff(2, "staff_a", "township", workbench.township_a)
    bad = store.OutcomeInput("2099-01-01", " ", "maybe", ("free_money",), "x" * 2001)
    with session_factory(make_engine(workbench.url))() as session, pytest.raises(store.Invalid) as refused:
        store.record_outcome(session, staff, workbench.household_a, bad)
    assert set(refused.value.fields) == {"visit_date", "visitor", "outcome", "measures", "note"}


def test_county_summary_counts_coverage_confirmation_and_overdue(workbench: Workbench) -> None:
    analyst = Staff(1, "analyst", "county", workbench.county_code)
    staff_a = Staff(2, "staff_a", "township", workbench.township_a)
    with session_factory(make_engine(workbench.url))() as session:
        before = store.county_summary(session, analyst)
        store.record_outcome(session, staff_a, workbench.household_a, _outcome("confirmed"))
        after = store.county_summary(session, analyst)
        own = store.county_summary(session, staff_a)
    # The latest list was issued 20 days ago: every unvisited household is overdue.
    assert before["total"]["overdue"] == before["total"]["listed"] and before["total"]["visited"] == 0
    assert after["total"]["visited"] == 1 and after["total"]["confirmation"] == 1.0
    row = next(r for r in after["by_township"] if r["name"] == workbench.township_a)
    assert (row["visited"], row["confirmed"], row["overdue"]) == (1, 1, row["listed"] - 1)
    assert workbench.household_a not in {o["household_id"] for o in after["overdue"]}
    assert [r["name"] for r in own["by_township"]] == [workbench.township_a]


def test_not_at_home_is_no_visit_and_a_fresh_list_is_not_overdue(workbench: Workbench) -> None:
    staff = Staff(2, "staff_a", "township", workbench.township_a)
    with session_factory(make_engine(workbench.url))() as session:
        store.record_outcome(session, staff, workbench.household_a, _outcome("not_home"))
        late = store.visit_list(session, staff, workbench.township_a)
        early = store.visit_list(
            session, staff, workbench.township_a, today=dt.date.today() - dt.timedelta(days=10)
        )
    status = {h["household_id"]: h["status"] for h in late["households"]}
    assert status[workbench.household_a] == "overdue"
    assert {h["status"] for h in early["households"]} <= {"open", "tried"}
    assert (
        next(h for h in early["households"] if h["household_id"] == workbench.household_a)["status"]
        == "tried"
    )


def test_export_has_one_row_per_listed_household_and_reads_back(workbench: Workbench, tmp_path: Path) -> None:
    staff = Staff(2, "staff_a", "township", workbench.township_a)
    note = "Robert'); DROP TABLE visits;-- <script>alert(1)</script>"
    with session_factory(make_engine(workbench.url))() as session:
        store.record_outcome(session, staff, workbench.household_a, _outcome("confirmed", note=note))
    out = tmp_path / "outcomes.csv"

    rows = export_outcomes(workbench.url, out, workbench.runs.latest_as_of)

    frame = read_outcomes(out)
    assert rows == len(frame) == _count_entries_of_latest(workbench)
    assert tuple(frame.columns) == EXPORT_COLUMNS
    visited = frame[frame["household_id"] == workbench.household_a].iloc[0]
    assert (visited["outcome"], visited["note"], visited["visits"]) == ("confirmed", note, "1")
    assert out.read_bytes().startswith(b"\xef\xbb\xbf")
    assert sum(1 for _ in csv.reader(out.open(encoding="utf-8-sig"))) == rows + 1


def _count_entries_of_latest(workbench: Workbench) -> int:
    scores = pd.read_parquet(workbench.runs.latest / "scores.parquet")
    return int(scores["in_visit_list"].sum())


def test_a_real_scoring_run_imports_with_the_models_reasons(trained_small_county, tmp_path: Path) -> None:
    """End to end: `relapse score` with the trained challenger, then `relapse outcomes import` of its OUT."""
    from typer.testing import CliRunner

    from relapse_risk.cli import app

    county = trained_small_county.county.folder
    run, url = tmp_path / "run", f"sqlite:///{tmp_path / 'workbench.db'}"
    scored = CliRunner().invoke(
        app,
        ["score", "--data", str(county), "--as-of", "2024-06", "--out", str(run), "--model", "challenger",
         "--tracking-uri", trained_small_county.tracking_uri],
    )  # fmt: skip
    assert scored.exit_code == 0, scored.output
    imported = CliRunner().invoke(app, ["outcomes", "import", "--run", str(run), "--db", url])
    assert imported.exit_code == 0, imported.output

    scores = pd.read_parquet(run / "scores.parquet")
    listed = scores[scores["in_visit_list"]].set_index("household_id")
    with session_factory(make_engine(url))() as session:
        entries = session.scalars(select(ListEntry)).all()
    assert {e.household_id for e in entries} == set(listed.index)
    for entry in entries[:20]:
        row = listed.loc[entry.household_id]
        assert [r["zh"] for r in entry.reasons] == [
            row[f"reason_{i}_zh"] for i in (1, 2, 3) if row[f"reason_{i}_zh"]
        ]
        assert entry.rank_county == row["rank_county"] and entry.detail["months"][-1] == "2024-06"
