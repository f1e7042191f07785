"""Batch scoring (`relapse score`): statuses, ranks, visit list, reproducible and atomic outputs.

The first half specifies the pure pieces on hand-made arrays; the second half
scores a small generated county end to end with a model trained on it and
registered in a throw-away MLflow registry.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from builders import small_model
from conftest import GeneratedCounty, message_lines
from hypothesis import given, settings
from hypothesis import strategies as st
from relapse_risk.features.dataset import Reject
from relapse_risk.serving import scoring
from relapse_risk.serving.batch import job, outputs
from relapse_risk.serving.batch.job import BATCH_STAGES, score_folder
from relapse_risk.serving.batch.outputs import (
    SCORES_SCHEMA,
    OutputFolderError,
    fixed_decimal_strings,
    scores_arrow_table,
    staged_output,
    write_scores_csv,
    write_scores_parquet,
)
from relapse_risk.serving.config import RISK_BAND_CUTOFFS, RiskBandCutoffs
from relapse_risk.serving.registered_model import ModelSpecError, registry_uri
from relapse_risk.serving.scoring import (
    REASON_COLUMNS,
    SCORE_COLUMNS,
    ResolvedModel,
    household_status,
    ranks_by_level,
    rejected_household_reasons,
    rejects_to_frame,
    risk_bands,
    visit_list_flags,
    visit_list_size,
)

# -- ranks ---------------------------------------------------------------------------------------


def area_ranks(areas: np.ndarray, score: np.ndarray, raw: np.ndarray, ranked: np.ndarray) -> np.ndarray:
    return ranks_by_level({"area": areas}, score, raw, ranked)["area"]


def test_rank_one_is_the_highest_score_of_each_area_and_unscored_rows_get_no_rank():
    areas = np.array(["a", "a", "b", "a", "b"], dtype=object)
    score = np.array([0.2, 0.9, 0.5, np.nan, 0.1])
    raw = np.array([-1.0, 2.0, 0.0, np.nan, -2.0])
    ranked = np.array([True, True, True, False, True])

    ranks = area_ranks(areas, score, raw, ranked)

    assert ranks.tolist() == [2, 1, 1, 0, 2]


def test_equal_calibrated_scores_are_ordered_by_raw_score_then_by_household_order():
    # Rows are in household_id order; the calibrator maps rows 0-2 to one value.
    areas = np.array(["v"] * 4, dtype=object)
    score = np.array([0.3, 0.3, 0.3, 0.3])
    raw = np.array([0.5, 0.7, 0.5, 0.5])
    ranks = area_ranks(areas, score, raw, np.ones(4, dtype=bool))

    assert ranks.tolist() == [2, 1, 3, 4]


def test_ranks_within_an_area_are_a_permutation_of_one_to_its_size():
    rng = np.random.default_rng(7)
    areas = rng.choice(np.array(["x", "y", "z"], dtype=object), size=500)
    score = np.round(rng.random(500), 2)  # many ties
    raw = np.round(rng.normal(size=500), 1)
    ranked = rng.random(500) < 0.8

    ranks = area_ranks(areas, score, raw, ranked)

    for area in ("x", "y", "z"):
        members = ranked & (areas == area)
        assert sorted(ranks[members].tolist()) == list(range(1, members.sum() + 1))
        order = np.argsort(ranks[members])
        assert np.all(np.diff(score[members][order]) <= 0)
    assert np.all(ranks[~ranked] == 0)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c", None]),
            st.sampled_from(["x", "y"]),
            st.integers(0, 4).map(lambda v: v / 4),  # few values: many ties
            st.integers(-3, 3).map(float),
            st.booleans(),
        ),
        max_size=60,
    )
)
def test_ranks_follow_area_then_score_then_raw_score_then_row(rows):
    """Every level ranked at once equals sorting each area's ranked rows by the documented keys."""
    villages = np.array([r[0] for r in rows], dtype=object)
    townships = np.array([r[1] for r in rows], dtype=object)
    score = np.array([r[2] for r in rows], dtype=float)
    raw = np.array([r[3] for r in rows], dtype=float)
    ranked = np.array([r[4] and r[0] is not None for r in rows], dtype=bool)

    ranks = ranks_by_level({"village": villages, "township": townships}, score, raw, ranked)

    for level, codes in (("village", villages), ("township", townships)):
        expected = np.zeros(len(rows), dtype=np.int64)
        for area in set(codes[ranked]):
            members = [i for i in range(len(rows)) if ranked[i] and codes[i] == area]
            for rank, i in enumerate(sorted(members, key=lambda i: (-score[i], -raw[i], i)), start=1):
                expected[i] = rank
        assert ranks[level].tolist() == expected.tolist()
        assert area_ranks(codes, score, raw, ranked).tolist() == expected.tolist()  # alone, the same


# -- visit list ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("share", "scored", "size"),
    [(0.05, 100, 5), (0.07, 100, 7), (0.05, 21, 2), (0.05, 1, 1), (0.05, 0, 0), (1.0, 9, 9)],
)
def test_visit_list_size_is_the_ceiling_of_share_times_scored_households(share, scored, size):
    assert visit_list_size(share, scored) == size


def test_visit_list_takes_the_top_of_each_county_separately():
    counties = np.array(["c1"] * 10 + ["c2"] * 3, dtype=object)
    rank = np.array(list(range(1, 11)) + [2, 1, 0])
    scored = np.array([True] * 12 + [False])

    flags = visit_list_flags(counties, rank, scored, visit_share=0.25)

    # c1: ceil(0.25 x 10) = 3; c2: ceil(0.25 x 2 scored) = 1.
    assert np.flatnonzero(flags).tolist() == [0, 1, 2, 11]


# -- bands and statuses --------------------------------------------------------------------------


def test_risk_bands_use_the_fixed_cut_offs_inclusively():
    high, medium = RISK_BAND_CUTOFFS.high, RISK_BAND_CUTOFFS.medium
    scores = np.array([high, np.nextafter(high, 0), medium, np.nextafter(medium, 0), 0.0, np.nan])

    assert risk_bands(scores).tolist() == ["high", "medium", "medium", "low", "low", None]


def test_band_cut_offs_must_be_ordered():
    with pytest.raises(ValueError, match="below the high cut-off"):
        RiskBandCutoffs(high=0.1, medium=0.2)


def test_status_precedence_is_rejected_then_monitoring_then_triggered_then_scored():
    ids = pd.Series(["h1", "h2", "h3", "h4", "h5"])
    facts = pd.DataFrame(
        {
            "household_id": ["h1", "h2", "h3", "h4"],
            "under_monitoring": [True, True, False, False],
            "triggered_now": [True, True, True, False],
        }
    )
    rejected = {"h1": "income row 3, amount: not a number (type)", "h5": "households row 5, ..."}

    status, reason = household_status(ids, facts, rejected)

    assert status.tolist() == ["rejected", "under_monitoring", "triggered_now", "scored", "rejected"]
    assert reason.tolist() == [rejected["h1"], None, None, None, rejected["h5"]]


def test_status_is_the_same_from_numpy_nullable_and_object_facts():
    # rule_facts_at gives numpy booleans, read as they are; other columns go through eq(True), and a
    # missing fact in an object column still stops a household that was not rejected.
    ids = pd.Series(["h1", "h2", "h3", "h4"])
    monitoring, triggered = [False, True, False, False], [True, True, False, False]
    numpy_facts = pd.DataFrame(
        {"household_id": ["h4", "h3", "h2", "h1"], "under_monitoring": monitoring, "triggered_now": triggered}
    )
    rejected = {"h2": "income row 1, amount: not a number (type)"}
    expected = household_status(ids, numpy_facts, rejected)
    assert expected[0].tolist() == ["scored", "rejected", "under_monitoring", "triggered_now"]
    for dtype in ("boolean", object):
        facts = numpy_facts.astype({"under_monitoring": dtype, "triggered_now": dtype})
        status, reason = household_status(ids, facts, rejected)
        assert status.tolist() == expected[0].tolist() and reason.tolist() == expected[1].tolist()
    facts = numpy_facts.astype({"under_monitoring": object})
    facts.loc[0, "under_monitoring"] = None
    with pytest.raises(ValueError, match="'h4' has no rule facts"):
        household_status(ids, facts, rejected)


def test_reject_reason_names_table_row_column_and_rule_and_counts_the_rest():
    rejects = [
        Reject("income", 12, "amount", "type", "not a number", household_id="h1", value="abc"),
        Reject("events", 3, "kind", "enum", "unknown kind", household_id="h1", value="x"),
        Reject("loan_status", 8, "loan_id", "foreign_key", "no such loan", household_id=None),
    ]

    reasons = rejected_household_reasons(rejects_to_frame(rejects))

    assert reasons == {"h1": "income row 12, amount: not a number (type); 1 more rejected row(s)"}


# -- model names ---------------------------------------------------------------------------------


def test_model_option_accepts_alias_version_or_registry_uri():
    assert registry_uri("champion") == "models:/relapse-risk@champion"
    assert registry_uri("12") == "models:/relapse-risk/12"
    assert registry_uri("models:/other@challenger") == "models:/other@challenger"
    with pytest.raises(ModelSpecError, match="alias"):
        registry_uri("../model.pkl")


# -- table files ---------------------------------------------------------------------------------


def _scores_frame(n: int = 4) -> pd.DataFrame:
    scored = np.arange(n) % 2 == 0
    frame = pd.DataFrame(
        {
            "household_id": [f"h{i:03d}" for i in range(n)],
            "county_code": "530101",
            "township_code": "530101001",
            "village_code": "530101001001",
            "as_of": "2024-06",
            "horizon_months": 6,
            "status": np.where(scored, "scored", "under_monitoring"),
            "risk_score": np.where(scored, 1 / 3, np.nan),
            "risk_band": np.where(scored, "high", None),
            "rank_county": pd.array(np.where(scored, 1, 0), dtype="Int64").astype("Int64"),
            "rank_township": pd.array([1] * n, dtype="Int64"),
            "rank_village": pd.array([None] * n, dtype="Int64"),
            "in_visit_list": scored,
            "rule_margin": np.where(scored, -0.0, 1.23456789),
            "triggered_rule": None,
            "reject_reason": None,
            "model_name": "relapse-risk",
            "model_version": "3",
        }
    )
    for column in REASON_COLUMNS:
        frame[column] = "家中有人患大病，医疗自付 2.3 万元"
    return frame.loc[:, list(SCORE_COLUMNS)]


def test_scores_table_has_the_schema_of_outputs_md_sorted_by_household(tmp_path):
    table = scores_arrow_table(_scores_frame().iloc[::-1])
    write_scores_parquet(table, tmp_path / "scores.parquet")

    written = pq.read_table(tmp_path / "scores.parquet")

    assert written.schema.equals(SCORES_SCHEMA)
    assert written.schema.metadata is None or b"pandas" not in written.schema.metadata
    assert written["household_id"].to_pylist() == sorted(written["household_id"].to_pylist())
    assert {v for v in written["risk_score"].to_pylist() if v is not None} == {round(1 / 3, 6)}


def test_scores_table_refuses_a_frame_without_a_column_or_with_nulls_where_none_may_be():
    with pytest.raises(ValueError, match="lacks column"):
        scores_arrow_table(_scores_frame().drop(columns=["rank_village"]))
    broken = _scores_frame()
    broken.loc[0, "status"] = None
    with pytest.raises(ValueError, match="'status' holds 1 null"):
        scores_arrow_table(broken)


def test_csv_has_a_bom_fixed_decimals_empty_nulls_and_keeps_chinese(tmp_path):
    write_scores_csv(scores_arrow_table(_scores_frame()), tmp_path / "scores.csv")
    raw = (tmp_path / "scores.csv").read_bytes()

    assert raw.startswith(b"\xef\xbb\xbf")
    frame = pd.read_csv(tmp_path / "scores.csv", encoding="utf-8-sig", dtype=str, keep_default_na=False)
    assert list(frame.columns) == list(SCORE_COLUMNS)
    assert frame["risk_score"].tolist() == ["0.333333", "", "0.333333", ""]
    assert frame["rule_margin"].tolist() == ["0.0000", "1.2346", "0.0000", "1.2346"]
    assert frame["rank_village"].tolist() == [""] * 4
    assert frame["in_visit_list"].tolist() == ["true", "false", "true", "false"]
    assert frame["reason_1_zh"].iloc[0] == "家中有人患大病，医疗自付 2.3 万元"


def test_fixed_decimal_strings_print_negative_zero_as_zero():
    assert fixed_decimal_strings(pa.array([-0.0, -1e-9, 2.5, None]), 2).to_pylist() == [
        "0.00",
        "0.00",
        "2.50",
        None,
    ]


def test_the_same_frame_gives_byte_identical_files(tmp_path):
    for name in ("a", "b"):
        table = scores_arrow_table(_scores_frame().sample(frac=1.0, random_state=len(name)))
        write_scores_parquet(table, tmp_path / f"{name}.parquet")
        write_scores_csv(table, tmp_path / f"{name}.csv")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


# -- atomic publication --------------------------------------------------------------------------


def _previous_run(out: Path) -> None:
    out.mkdir()
    (out / "manifest.json").write_text('{"as_of": "2024-03"}', encoding="utf-8")
    (out / "scores.csv").write_text("old", encoding="utf-8")


def test_a_failure_while_writing_leaves_the_previous_run_untouched_and_no_staging_folder(tmp_path):
    out = tmp_path / "out"
    _previous_run(out)

    with pytest.raises(RuntimeError, match="disk full"), staged_output(out) as staging:
        (staging / "scores.csv").write_text("new, half written", encoding="utf-8")
        raise RuntimeError("disk full")

    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "scores.csv"]
    assert (out / "scores.csv").read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_ctrl_c_while_writing_also_leaves_the_previous_run(tmp_path):
    out = tmp_path / "out"
    _previous_run(out)

    with pytest.raises(KeyboardInterrupt), staged_output(out) as staging:
        (staging / "scores.csv").write_text("new", encoding="utf-8")
        raise KeyboardInterrupt

    assert (out / "scores.csv").read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_published_run_is_readable_like_any_folder_made_there(tmp_path):
    with staged_output(tmp_path / "out") as staging:
        (staging / "manifest.json").write_text("{}", encoding="utf-8")
    (tmp_path / "plain").mkdir()

    assert (tmp_path / "out").stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777


def test_a_finished_run_replaces_the_previous_one_whole(tmp_path):
    out = tmp_path / "out"
    _previous_run(out)

    with staged_output(out) as staging:
        (staging / "manifest.json").write_text('{"as_of": "2024-06"}', encoding="utf-8")

    assert [p.name for p in out.iterdir()] == ["manifest.json"]
    assert json.loads((out / "manifest.json").read_text(encoding="utf-8"))["as_of"] == "2024-06"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_publication_works_without_the_atomic_exchange_too(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs, "_exchange_folders", lambda first, second: False)
    out = tmp_path / "out"
    _previous_run(out)

    with staged_output(out) as staging:
        (staging / "manifest.json").write_text("{}", encoding="utf-8")

    assert [p.name for p in out.iterdir()] == ["manifest.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_folder_that_no_run_wrote_is_never_replaced(tmp_path):
    out = tmp_path / "documents"
    out.mkdir()
    (out / "thesis.docx").write_text("precious", encoding="utf-8")

    with pytest.raises(OutputFolderError, match="not empty"), staged_output(out):
        pass

    assert (out / "thesis.docx").read_text(encoding="utf-8") == "precious"


def test_as_of_is_a_month_string_in_every_row():
    table = scores_arrow_table(_scores_frame())
    assert set(table["as_of"].to_pylist()) == {dt.date(2024, 6, 1).strftime("%Y-%m")}


# -- end to end on a generated county ------------------------------------------------------------

AS_OF = dt.date(2024, 12, 1)
"""The last month of the shared small county's data (48 months from 2021-01)."""

TRAINED_THROUGH = "2024-06"
"""Its last labelled quarter-end, which ``trained`` calibrates on."""


@pytest.fixture(scope="module")
def county(small_county: GeneratedCounty) -> Path:
    return small_county.folder


@pytest.fixture(scope="module")
def trained(county: Path) -> ResolvedModel:
    """A small model trained on the county itself: enough to rank, not a real evaluation."""
    return small_model(county, max_rounds=40, early_stopping_rounds=15, last_quarters=6)


@pytest.fixture(scope="module")
def progress_reports() -> list[tuple[str, int, int]]:
    """The progress reports of the second of ``two_runs``, as (stage, done, total)."""
    return []


@pytest.fixture(scope="module")
def two_runs(
    county: Path,
    trained: ResolvedModel,
    tmp_path_factory: pytest.TempPathFactory,
    progress_reports: list[tuple[str, int, int]],
):
    base = tmp_path_factory.mktemp("runs")
    first = score_folder(county, AS_OF, trained, base / "first")

    def note(stage: str, done: int, total: int) -> None:
        progress_reports.append((stage, done, total))

    build_features = scoring.build_features

    def noting_build_features(*args: Any, **kwargs: Any) -> pd.DataFrame:
        progress_reports.append(("(build_features called)", 0, 0))
        return build_features(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scoring, "build_features", noting_build_features)
        second = score_folder(county, AS_OF, trained, base / "second", progress=note)
    return first, second


def test_progress_reports_each_stage_in_order_while_it_runs(two_runs, progress_reports):
    stages = [stage for stage, _, _ in progress_reports]
    # Consecutive reports of one stage collapse into one entry: the stages, each once, in order,
    # with the features built after the rules stage ended and before the features stage did.
    assert [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s] == [
        "load",
        "rules",
        "features",
        "(build_features called)",
        "features",
        *BATCH_STAGES[3:],
    ]
    for stage in BATCH_STAGES:
        last_done, last_total = [(d, t) for s, d, t in progress_reports if s == stage][-1]
        assert last_done == last_total, stage


def test_every_household_of_the_input_has_exactly_one_row_in_id_order(county, two_runs):
    report, _ = two_runs
    written = pd.read_parquet(report.out / "scores.parquet")
    households = pq.read_table(county / "households.parquet", columns=["household_id"])["household_id"]

    assert written["household_id"].tolist() == sorted(households.to_pylist())
    assert list(written.columns) == list(SCORE_COLUMNS)


def test_statuses_and_margins_are_those_of_the_rules_at_the_as_of_month(county, two_runs):
    from relapse_risk.features.dataset import load_dataset
    from relapse_risk.features.rules import labels_frame

    written = pd.read_parquet(two_runs[0].out / "scores.parquet")
    labels = (
        labels_frame(load_dataset(county), AS_OF, 6).set_index("household_id").loc[written["household_id"]]
    )

    expected = np.select(
        [labels["under_monitoring"].to_numpy(), labels["triggered_now"].to_numpy()],
        ["under_monitoring", "triggered_now"],
        "scored",
    )
    assert written["status"].tolist() == expected.tolist()
    assert set(written["status"]) == {"scored", "under_monitoring", "triggered_now"}
    np.testing.assert_allclose(
        written["rule_margin"].to_numpy(dtype=float), np.round(labels["margin"].to_numpy(), 4), equal_nan=True
    )
    triggered = written["status"] == "triggered_now"
    assert (
        written.loc[triggered, "triggered_rule"].tolist()
        == labels.loc[triggered.to_numpy(), "triggered_rule"].astype(str).tolist()
    )
    assert written.loc[~triggered, "triggered_rule"].isna().all()


def test_only_scored_households_have_scores_bands_and_ranks(two_runs):
    written = pd.read_parquet(two_runs[0].out / "scores.parquet")
    scored = written["status"] == "scored"

    for column in ("risk_score", "risk_band", "rank_county", "rank_township", "rank_village"):
        assert written.loc[scored, column].notna().all(), column
        assert written.loc[~scored, column].isna().all(), column
    assert written.loc[scored, "risk_score"].between(0, 1).all()
    assert (
        written.loc[scored, "risk_band"] == risk_bands(written.loc[scored, "risk_score"].to_numpy())
    ).all()
    assert not written.loc[~scored, "in_visit_list"].any()


@pytest.mark.parametrize("level", ["county", "township", "village"])
def test_ranks_count_down_the_scores_within_each_area(two_runs, level):
    written = pd.read_parquet(two_runs[0].out / "scores.parquet")
    scored = written[written["status"] == "scored"]

    for _, area in scored.groupby(f"{level}_code"):
        ordered = area.sort_values(f"rank_{level}")
        assert ordered[f"rank_{level}"].tolist() == list(range(1, len(area) + 1))
        assert ordered["risk_score"].is_monotonic_decreasing


def test_the_visit_list_is_the_top_share_of_scored_households_and_all_have_reasons(two_runs):
    written = pd.read_parquet(two_runs[0].out / "scores.parquet")
    scored = written[written["status"] == "scored"]
    listed = written[written["in_visit_list"]]

    assert len(listed) == visit_list_size(0.05, len(scored))
    assert listed["rank_county"].max() == len(listed)
    assert listed["reason_1_code"].notna().all() and listed["reason_1_zh"].notna().all()
    assert listed["reason_1_measure"].notna().all()
    assert written.loc[~written["in_visit_list"], "reason_1_code"].isna().all()
    manifest = json.loads((two_runs[0].out / "manifest.json").read_text(encoding="utf-8"))
    assert sum(manifest["visit_list_per_township"].values()) == len(listed)
    assert manifest["counts_by_status"]["scored"] == len(scored)


def test_scoring_the_same_inputs_again_gives_byte_identical_tables(two_runs):
    first, second = two_runs
    for name in ("scores.parquet", "scores.csv", "rejects.csv"):
        assert (first.out / name).read_bytes() == (second.out / name).read_bytes(), name
    assert first.manifest["files"] == second.manifest["files"]


def test_visit_lists_are_the_same_bytes_again_with_no_save_time_in_the_workbooks(two_runs):
    import zipfile

    first, second = (run.out / "visit_lists" for run in two_runs)
    pages = sorted(path.name for path in first.iterdir())
    assert pages == sorted(path.name for path in second.iterdir())
    for name in pages:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    # The clock must not reach a workbook: a run a second later would otherwise differ.
    with zipfile.ZipFile(next(first.glob("*.xlsx"))) as workbook:
        assert {entry.date_time for entry in workbook.infolist()} == {(2000, 1, 1, 0, 0, 0)}
        assert b"2000-01-01T00:00:00Z</dcterms:modified>" in workbook.read("docProps/core.xml")


def test_the_csv_holds_the_same_table_as_the_parquet(two_runs):
    out = two_runs[0].out
    parquet = pd.read_parquet(out / "scores.parquet")
    csv = pd.read_csv(out / "scores.csv", encoding="utf-8-sig", dtype={c: str for c in SCORE_COLUMNS[:5]})

    assert csv["household_id"].tolist() == parquet["household_id"].tolist()
    assert csv["village_code"].tolist() == parquet["village_code"].tolist()
    np.testing.assert_allclose(csv["risk_score"], parquet["risk_score"].astype(float), equal_nan=True)
    assert (csv["in_visit_list"] == parquet["in_visit_list"]).all()


def test_the_manifest_records_input_model_counts_and_timings(county, two_runs):
    manifest = two_runs[0].manifest
    on_disk = json.loads((two_runs[0].out / "manifest.json").read_text(encoding="utf-8"))

    assert on_disk == manifest
    assert len(manifest["input"]["fingerprint"]) == 64
    assert manifest["as_of"] == "2024-12" and manifest["horizon_months"] == 6
    assert manifest["model"]["name"] == "relapse-risk" and manifest["model"]["version"] == "1"
    assert sum(manifest["counts_by_status"].values()) == manifest["input"]["households"]
    assert set(manifest["timings_seconds"]) == {
        "load",
        "rules",
        "features",
        "score",
        "rank",
        "explain",
        "write",
    }
    assert manifest["package_version"]
    assert manifest["risk_band_cutoffs"] == {"high": 0.30, "medium": 0.10}


def test_visit_lists_are_written_per_township_with_an_index(two_runs):
    report = two_runs[0]
    folder = report.out / "visit_lists"
    listed = report.scores[report.scores["in_visit_list"].astype(bool)]

    townships = sorted(set(listed["township_code"]))
    assert sorted(p.stem for p in folder.glob("*.html") if p.stem != "index") == townships
    assert sorted(p.stem for p in folder.glob("*.xlsx")) == townships
    page = (folder / f"{townships[0]}.html").read_text(encoding="utf-8")
    first = listed[listed["township_code"] == townships[0]].sort_values("rank_township").iloc[0]
    assert first["household_id"] in page and first["reason_1_zh"] in page


def test_rejected_rows_make_their_households_rejected_with_the_reason(county, trained, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(county, broken)
    households = pq.read_table(broken / "households.parquet").to_pandas()
    households.loc[9, "terrain"] = "swamp"  # data row 10
    pq.write_table(pa.Table.from_pandas(households, preserve_index=False), broken / "households.parquet")
    expenses = pq.read_table(broken / "expenses.parquet").to_pandas()
    expenses.loc[0, "reimbursed"] = expenses.loc[0, "amount"] + 100.0  # data row 1
    pq.write_table(pa.Table.from_pandas(expenses, preserve_index=False), broken / "expenses.parquet")

    report = score_folder(broken, AS_OF, trained, tmp_path / "out")
    written = pd.read_parquet(report.out / "scores.parquet").set_index("household_id")

    bad_household = households.loc[9]
    row = written.loc[bad_household["household_id"]]
    assert row["status"] == "rejected"
    assert row["reject_reason"].startswith("households row 10, terrain")
    assert (row["county_code"], row["township_code"], row["village_code"]) == (
        bad_household["county_code"],
        bad_household["township_code"],
        bad_household["village_code"],
    )
    bill = written.loc[expenses.loc[0, "household_id"]]
    assert bill["status"] == "rejected" and bill["reject_reason"].startswith("expenses row 1, reimbursed")
    assert len(written) == len(households)
    rejects = pd.read_csv(report.out / "rejects.csv", encoding="utf-8-sig")
    assert {"households", "expenses"} <= set(rejects["table"])
    assert report.manifest["input"]["rejects"] == len(rejects)


def test_a_folder_that_cannot_be_used_stops_before_anything_is_written(county, trained, tmp_path):
    from relapse_risk.features.dataset import DatasetError

    broken = tmp_path / "broken"
    shutil.copytree(county, broken)
    (broken / "policy.json").unlink()

    with pytest.raises(DatasetError, match="policy.json"):
        score_folder(broken, AS_OF, trained, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken"]


# The scores table's files are written on a second thread beside the visit lists: either may fail.
@pytest.mark.parametrize("writer", ["write_visit_lists", "write_scores_csv"])
def test_a_crash_while_writing_leaves_the_previous_run_in_place(
    county, trained, two_runs, tmp_path, monkeypatch, writer
):
    out = tmp_path / "out"
    shutil.copytree(two_runs[0].out, out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def crash(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(job, writer, crash)
    with pytest.raises(OSError, match="disk full"):
        score_folder(county, dt.date(2024, 9, 1), trained, out)

    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_an_as_of_month_outside_the_data_is_refused_before_writing(county, trained, tmp_path):
    with pytest.raises(ValueError, match="outside the data"):
        score_folder(county, dt.date(2025, 6, 1), trained, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# -- the command, with the model from a registry -------------------------------------------------


@pytest.fixture(scope="module")
def registry(trained: ResolvedModel, county: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A throw-away SQLite MLflow registry holding the trained model as relapse-risk v1 @champion."""
    import mlflow
    from mlflow.tracking import MlflowClient
    from relapse_risk.features.dataset import load_dataset
    from relapse_risk.features.history import build_features
    from relapse_risk.models.pyfunc import log_risk_model

    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    example = build_features(load_dataset(county), AS_OF).head(5)
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    # Registration goes to the registry URI, which an earlier test may have pointed elsewhere.
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        experiment = mlflow.create_experiment(
            "scoring-test", artifact_location=(folder / "artifacts").as_uri()
        )
        with mlflow.start_run(experiment_id=experiment):
            # What a training run records: the horizon and the last as-of month the model learned
            # from (the ``trained`` fixture calibrates on the last labelled quarter-end).
            mlflow.log_params({"horizon": 6, "trained_through": TRAINED_THROUGH})
            info = log_risk_model(trained.model, "risk_model", example, registered_model_name="relapse-risk")
        MlflowClient(uri).set_registered_model_alias(
            "relapse-risk", "champion", info.registered_model_version
        )
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
    return uri


@pytest.mark.slow
def test_relapse_score_resolves_the_champion_and_prints_a_summary(
    county, registry, trained, two_runs, tmp_path
):
    from typer.testing import CliRunner

    from relapse_risk.cli import app

    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        ["score", "--data", str(county), "--as-of", "2024-12", "--out", str(out), "--tracking-uri", registry],
        env={"COLUMNS": "160"},
    )

    assert result.exit_code == 0, result.output
    for heading in ("Households by status", "Visit list per township", "Top reasons", "scores.parquet"):
        assert heading in result.output
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["model"]["version"] == "1" and manifest["model"]["run_id"]
    assert manifest["model"]["uri"] == "models:/relapse-risk@champion"
    assert manifest["model"]["trained_through"] == TRAINED_THROUGH
    # The registered model scores exactly as the model it was logged from.
    assert (out / "scores.parquet").read_bytes() == (two_runs[0].out / "scores.parquet").read_bytes()


@pytest.mark.slow
def test_relapse_score_stops_with_one_message_on_an_unusable_folder_or_unknown_model(
    county, registry, tmp_path
):
    from typer.testing import CliRunner

    from relapse_risk.cli import app

    runner = CliRunner()
    out = tmp_path / "run"
    missing = runner.invoke(
        app,
        ["score", "--data", str(tmp_path / "nowhere"), "--as-of", "2024-12", "--out", str(out)]
        + ["--tracking-uri", registry],
    )
    unknown = runner.invoke(
        app,
        ["score", "--data", str(county), "--as-of", "2024-12", "--out", str(out), "--model", "bronze"]
        + ["--tracking-uri", registry],
    )

    assert missing.exit_code == 2 and "does not exist" in missing.output
    assert unknown.exit_code == 2 and "models:/relapse-risk@bronze" in unknown.output
    assert not out.exists()


def test_relapse_score_without_a_champion_says_in_one_line_to_promote_or_score_the_challenger(
    challenger_only_registry: str, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient
    from typer.testing import CliRunner

    from relapse_risk.cli import app

    empty_registry = f"sqlite:///{tmp_path / 'empty.db'}"
    MlflowClient(
        empty_registry, registry_uri=empty_registry
    ).search_registered_models()  # MLflow logs the creation
    out = tmp_path / "run"
    # The model is looked up before the folder is read: a folder that is not there is never reached.
    command = ["score", "--data", str(tmp_path / "county"), "--as-of", "2023-12", "--out", str(out)]
    runner = CliRunner()
    only_challenger = runner.invoke(app, [*command, "--tracking-uri", challenger_only_registry])
    empty = runner.invoke(app, [*command, "--tracking-uri", empty_registry])

    assert only_challenger.exit_code == 2
    assert message_lines(only_challenger.output) == [
        f"No model at models:/relapse-risk@champion in {challenger_only_registry}: run `relapse train` "
        "then `relapse promote`, or score with the challenger: --model challenger"
    ]
    assert empty.exit_code == 2
    assert message_lines(empty.output) == [
        f"No model at models:/relapse-risk@champion in {empty_registry}: "
        "run `relapse train` then `relapse promote`"
    ]
    assert not out.exists()


def test_reasons_are_computed_only_where_asked_and_never_change_scores(county, trained, two_runs):
    from relapse_risk.features.dataset import load_dataset
    from relapse_risk.serving.scoring import score_dataset

    dataset = load_dataset(county)
    common = {"model_name": "relapse-risk", "model_version": "1", "horizon": 6}
    silent = score_dataset(dataset, AS_OF, trained.model, explain="none", **common)
    listed = two_runs[0].scores

    assert silent[list(REASON_COLUMNS)].isna().all().all()
    pd.testing.assert_frame_equal(
        silent.drop(columns=list(REASON_COLUMNS)), listed.drop(columns=list(REASON_COLUMNS))
    )


def test_reasons_are_the_same_whether_fast_treeshap_or_lightgbm_computes_them(county, trained, monkeypatch):
    from relapse_risk.features.dataset import load_dataset
    from relapse_risk.models import explain
    from relapse_risk.serving import scoring
    from relapse_risk.serving.scoring import score_dataset

    dataset = load_dataset(county)
    common = {"model_name": "relapse-risk", "model_version": "1", "horizon": 6, "explain": "all"}
    by_tables = score_dataset(dataset, AS_OF, trained.model, **common)
    # As for a booster the tables cannot hold: LightGBM's pred_contrib explains every household.
    with monkeypatch.context() as patched:
        for module in (explain, scoring):
            patched.setattr(module, "contribution_tables", lambda model: None)
        by_lightgbm = score_dataset(dataset, AS_OF, trained.model, **common)

    assert by_lightgbm["reason_1_code"].notna().sum() > 100
    pd.testing.assert_frame_equal(by_tables, by_lightgbm)


def test_a_feature_table_without_a_households_row_or_with_two_is_refused_by_name(county, trained):
    from relapse_risk.features.dataset import load_dataset
    from relapse_risk.features.history import build_features
    from relapse_risk.serving.scoring import score_dataset

    dataset = load_dataset(county)
    features = build_features(dataset, AS_OF)
    common = {"model_name": "relapse-risk", "model_version": "1", "horizon": 6, "explain": "none"}
    scores = score_dataset(dataset, AS_OF, trained.model, features=features, **common)
    scored = scores.loc[scores["status"] == "scored", "household_id"]
    missing = scored.iloc[len(scored) // 2]

    with pytest.raises(ValueError, match=rf"no row for 1 household\(s\), e.g. '{missing}'"):
        score_dataset(
            dataset, AS_OF, trained.model, features=features[features.household_id != missing], **common
        )
    twice = pd.concat([features, features[features.household_id == missing]])
    with pytest.raises(ValueError, match=rf"more than one row for household '{missing}'"):
        score_dataset(dataset, AS_OF, trained.model, features=twice, **common)


def test_the_rules_panel_is_built_once_for_statuses_and_features(county, trained, monkeypatch):
    from relapse_risk.features import history
    from relapse_risk.features.dataset import load_dataset
    from relapse_risk.serving import scoring

    built: list[tuple[dt.date | None, int | None, bool]] = []
    real_build_panel = scoring.build_panel

    def counting_build_panel(dataset, through=None, *, months=None, feature_sums=False):
        built.append((through, months, feature_sums))
        return real_build_panel(dataset, through=through, months=months, feature_sums=feature_sums)

    monkeypatch.setattr(scoring, "build_panel", counting_build_panel)
    monkeypatch.setattr(history, "build_panel", counting_build_panel)
    scoring.score_dataset(
        load_dataset(county), AS_OF, trained.model, model_name="m", model_version="1", explain="none"
    )

    # With the sums the features need, so that they make no pass over income or rigid bills of their
    # own, and only the months the features and the rules at AS_OF read.
    assert built == [(AS_OF, history.PANEL_MONTHS, True)]


def test_features_from_a_given_panel_equal_features_built_from_scratch(county):
    from relapse_risk.features.dataset import load_dataset
    from relapse_risk.features.history import build_features
    from relapse_risk.features.rules import build_panel, rule_state

    dataset = load_dataset(county)
    panel = build_panel(dataset, through=AS_OF)
    given = build_features(dataset, AS_OF, panel=panel, state=rule_state(panel, dataset.policy))

    pd.testing.assert_frame_equal(given, build_features(dataset, AS_OF))
    earlier = build_panel(dataset, through=dt.date(2022, 6, 1))
    with pytest.raises(ValueError, match="the panel given ends at 2022-06, not at"):
        build_features(dataset, AS_OF, panel=earlier)
    short = build_panel(dataset, through=AS_OF, months=12)
    with pytest.raises(ValueError, match="the panel given starts at 2024-01: the features need 24 months"):
        build_features(dataset, AS_OF, panel=short)
