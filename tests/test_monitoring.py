"""Specification of `relapse monitor` and `relapse retrain`.

Counties of 2,000 households x 36 months (2021-01 .. 2023-12) are generated once
per session: a reference, a quiet current county with another seed, and one
current county per scenario monitoring must catch and name.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from conftest import message_lines
from hypothesis import given, settings
from hypothesis import strategies as st
from relapse_risk.features.errors import ExitCode
from relapse_risk.monitoring.checks import overall_status
from relapse_risk.monitoring.config import Level, MonitorThresholds
from relapse_risk.monitoring.drift import (
    column_drift,
    population_stability,
    prediction_drift_checks,
    township_shift,
    wasserstein_1d,
)
from relapse_risk.monitoring.early_warning import ScoredSide, count_ratio, early_warning_check
from relapse_risk.monitoring.monitor import MonitorOptions, load_model, run_monitor
from relapse_risk.monitoring.quality import line_deviation
from relapse_risk.monitoring.sampling import choose_villages, sampled_dataset, village_rank, village_sample
from typer.testing import CliRunner

from relapse_risk.cli import app

HOUSEHOLDS = 2000
MONTHS = 36


@dataclass(frozen=True)
class Counties:
    root: Path
    reference: Path
    quiet: Path
    scenarios: dict[str, Path]
    model: Path
    twin: Path
    """The scenarios' county (seed 3000) without a scenario: what a shock is measured against."""


def _generate(folder: Path, seed: int, **scenario: object) -> Path:
    from relapse_risk.generator.config import CountyConfig, Scenario
    from relapse_risk.generator.run import generate

    if not folder.exists():
        config = CountyConfig(households=HOUSEHOLDS, months=MONTHS, seed=seed, scenario=Scenario(**scenario))
        generate(config, folder, truth=None)
    return folder


def _income_in_ten_thousands(source: Path, target: Path) -> Path:
    """The pipeline bug: the same county with income amounts in units of 10,000 yuan."""
    if not target.exists():
        shutil.copytree(source, target)
        original, copied = source / "income.parquet", target / "income.parquet"
        duckdb.execute(
            f"COPY (SELECT * REPLACE (amount / 10000 AS amount) FROM read_parquet('{original}'))"
            f" TO '{copied}' (FORMAT parquet)"
        )
    return target


def _small_model(folder: Path, data: Path) -> Path:
    """A real risk model, trained briefly on its own county, saved as a model folder."""
    from relapse_risk.features.catalogue import CATEGORICAL_FEATURES, FEATURE_NAMES
    from relapse_risk.features.dataset import load_dataset
    from relapse_risk.features.training_table import build_training_table
    from relapse_risk.models.model import RiskModel

    if folder.exists():
        return folder
    table = build_training_table(load_dataset(data))
    last = table["as_of"].max()
    train, valid = table[table["as_of"] < last], table[table["as_of"] == last]
    model = RiskModel(
        max_rounds=200, early_stopping_rounds=30, seed=7, categorical_features=CATEGORICAL_FEATURES
    )
    model.fit(train, train["label"], valid, valid["label"], feature_names=list(FEATURE_NAMES))
    model.save(folder)
    return folder


@pytest.fixture(scope="session")
def cases(shared_tmp_root: Path) -> Counties:
    """The monitoring cases: a reference, a quiet county, the named scenarios and their twin, and a
    model trained on a county of its own (so every test that takes them is marked slow)."""
    from relapse_risk.generator.config import LineJump, parse_window

    root = shared_tmp_root / "monitoring-counties"
    root.mkdir(parents=True, exist_ok=True)
    with (root / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        reference = _generate(root / "reference", 1000)
        quiet = _generate(root / "quiet", 2000)
        twin = _generate(root / "twin", 3000)  # the scenarios' county without any scenario
        scenarios = {
            "lockdown": _generate(root / "lockdown", 3000, lockdown=parse_window("2023-10:2023-12")),
            "line_jump": _generate(root / "line_jump", 3000, line_jump=LineJump(year=2023, share=0.2)),
            "other_county": _generate(root / "other_county", 3000, profile="mountain_agri"),
            "outage": _generate(
                root / "outage", 3000, outage=parse_window("2023-04:2023-12"), outage_share=0.4
            ),
            "income_unit": _income_in_ten_thousands(quiet, root / "income_unit"),
        }
        model = _small_model(root / "model", _generate(root / "model_county", 4000))
    return Counties(root, reference, quiet, scenarios, model, twin)


def _monitor(reference: Path | str, current: Path | str, out: Path, **options: object):
    settings = {"model": "none", "log_to_mlflow": False, "evidently": False} | options
    return run_monitor(MonitorOptions(str(reference), str(current), out, **settings))  # type: ignore[arg-type]


# -- the statistics ---------------------------------------------------------------------------


def test_level_judges_in_the_direction_that_is_bad() -> None:
    rise = Level(warning=0.1, alert=0.2)
    drop = Level(warning=-0.1, alert=-0.3, higher_is_worse=False)
    assert [rise.status(v) for v in (0.05, 0.1, 0.25, None)] == ["ok", "warning", "alert", "ok"]
    assert [drop.status(v) for v in (0.0, -0.2, -0.5)] == ["ok", "warning", "alert"]
    with pytest.raises(ValueError, match="past the alert level"):
        Level(warning=0.3, alert=0.2)


def test_identical_samples_do_not_drift_and_shifted_ones_do() -> None:
    values = np.random.default_rng(0).normal(size=5000)
    assert column_drift(values, values) == 0.0
    assert population_stability(values, values) == pytest.approx(0.0)
    assert column_drift(values, values + 0.5) == pytest.approx(0.5, rel=0.05)
    assert population_stability(values, values + 1.0) > 0.25
    assert np.isnan(column_drift(values, np.full(10, np.nan)))


def test_wasserstein_distance_matches_scipy_with_ties_and_unequal_sizes() -> None:
    from scipy.stats import wasserstein_distance

    rng = np.random.default_rng(2)
    for n, m in ((1, 1), (7, 1), (5, 3), (2000, 1500)):
        first, second = rng.normal(size=n), rng.exponential(size=m)
        first[: n // 3], second[: m // 4] = 0.0, 0.0  # ties, as in count features
        assert wasserstein_1d(first, second) == pytest.approx(wasserstein_distance(first, second), rel=1e-12)


def test_line_deviation_follows_the_reference_trend_and_catches_a_jump() -> None:
    reference = {2021: 6000.0, 2022: 6300.0}
    on_trend = {2021: 6000.0, 2022: 6300.0, 2023: 6615.0}
    jumped = {2021: 6000.0, 2022: 6300.0, 2023: 8000.0}
    assert line_deviation(reference, on_trend, dt.date(2023, 12, 1)) == pytest.approx(0.0, abs=1e-9)
    assert line_deviation(reference, jumped, dt.date(2023, 12, 1)) == pytest.approx(8000 / 6615 - 1)
    assert line_deviation(reference, {2021: 6600.0, 2022: 6300.0}, dt.date(2022, 6, 1)) == pytest.approx(0.1)


def test_prediction_drift_names_a_shifted_visit_list() -> None:
    rng = np.random.default_rng(1)
    n = 4000

    def scores(shift: float, towns: list[str], boost_in_a: float = 0.0) -> pd.DataFrame:
        township = rng.choice(towns, n)
        risk = np.clip(rng.beta(1, 20, n) + shift + boost_in_a * (township == "a"), 0, 1)
        frame = pd.DataFrame({"household_id": [f"h{i}" for i in range(n)], "risk_score": risk})
        frame["risk_band"] = np.where(risk >= 0.3, "high", np.where(risk >= 0.1, "medium", "low"))
        frame["in_visit_list"] = frame["risk_score"].rank(ascending=False) <= 200
        frame["township_code"] = township
        return frame

    same = prediction_drift_checks(scores(0, ["a", "b"]), scores(0, ["a", "b"]), MonitorThresholds())
    assert overall_status(same) == "ok"
    shifted = prediction_drift_checks(
        scores(0, ["a", "b"]), scores(0.15, ["a", "b"], boost_in_a=0.1), MonitorThresholds()
    )
    named = {c.name: c.status for c in shifted}
    assert named["score_drift"] == "alert"
    assert named["risk_band_shares"] == "alert"
    assert named["visit_list_townships"] != "ok"


def test_a_visit_list_that_follows_its_townships_sizes_is_not_a_drift() -> None:
    """Another sample of villages (here: town b holds 90 % of households instead of half) changes
    the list's township shares, but not any township's visit rate: no township drift."""
    rng = np.random.default_rng(2)

    def scores(towns: list[str], n: int) -> pd.DataFrame:
        risk = rng.beta(1, 20, n)
        return pd.DataFrame(
            {
                "risk_score": risk,
                "risk_band": "low",
                "in_visit_list": risk >= np.quantile(risk, 0.95),
                "township_code": rng.choice(towns, n),
            }
        )

    reference, resampled = scores(["a", "b"], 6000), scores(["a"] + ["b"] * 9, 6000)
    assert township_shift(reference, resampled, {"a", "b"}) < 0.05
    only_a = resampled["township_code"].eq("a") & (resampled["risk_score"] > 0.02)
    moved = resampled.assign(in_visit_list=only_a)
    assert township_shift(reference, moved, {"a", "b"}) > 0.5


def test_a_growing_tail_that_psi_barely_sees_moves_the_top_k_share() -> None:
    """The shape of the lockdown measured on another generator: a few per cent of households move
    from the middle of the scores to above the visit-list cut; the deciles hardly change."""
    rng = np.random.default_rng(3)
    n = 20_000
    risk = rng.beta(1, 30, n)
    reference = pd.DataFrame({"risk_score": risk, "risk_band": "low"})
    reference["in_visit_list"] = reference["risk_score"].rank(ascending=False, method="first") <= n // 20
    cut = reference.loc[reference["in_visit_list"], "risk_score"].min()
    moved = risk.copy()
    middle = np.flatnonzero((risk > np.quantile(risk, 0.4)) & (risk < np.quantile(risk, 0.6)))[: n // 25]
    moved[middle] = cut + rng.uniform(0, 0.1, middle.size)
    current = pd.DataFrame({"risk_score": moved, "risk_band": "low"})
    checks = {c.name: c for c in prediction_drift_checks(reference, current, MonitorThresholds())}
    assert checks["score_drift"].status == "ok", checks["score_drift"]
    assert checks["top_k_share"].value == pytest.approx(1.8, abs=0.05)
    assert checks["top_k_share"].status != "ok"
    assert "5.0% -> 9.0%" in checks["top_k_share"].message
    assert checks["mean_score_change"].value > 1.0


def _scored(risk: np.ndarray, towns: np.ndarray, reasons: np.ndarray | None = None) -> ScoredSide:
    frame = pd.DataFrame(
        {
            "household_id": [f"h{i}" for i in range(risk.size)],
            "risk_score": risk,
            "township_code": towns,
            "village_code": [f"{t}{i % 10}" for i, t in enumerate(towns)],
        }
    )
    frame["in_visit_list"] = frame["risk_score"].rank(ascending=False, method="first") <= risk.size // 20
    if reasons is not None:
        frame["reason_1_code"] = reasons
    return ScoredSide(frame, {"scored": float(risk.size), "triggered_now": 50.0}, 1.0)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(50, 5000),
    level=st.floats(0.005, 0.3),
)
def test_identical_sides_have_an_expected_crossings_ratio_of_1_and_no_alarm(
    seed: int, n: int, level: float
) -> None:
    rng = np.random.default_rng(seed)
    side = _scored(np.clip(rng.beta(1, 1 / level, n), 1e-6, 1), rng.choice(np.array(["t1", "t2"]), n))
    check = early_warning_check(side, side, MonitorThresholds())
    assert check.value == pytest.approx(1.0)
    low, high = check.details["interval_90"]
    assert low < 1.0 < high
    assert check.status == "ok"
    assert overall_status([check]) == "ok"


def test_the_ratio_interval_narrows_with_households_and_admits_village_clustering() -> None:
    rng = np.random.default_rng(4)
    small = count_ratio(rng.beta(1, 30, 60), 1.2 * rng.beta(1, 30, 60))
    large = count_ratio(rng.beta(1, 30, 50_000), 1.2 * rng.beta(1, 30, 50_000))
    assert small.low < 1.0 < small.high, "x1.2 over 60 households is within noise"
    assert large.low > 1.0 and large.high - large.low < 0.05
    # the same scores, where each of 5 villages moved together: wider than households alone say
    shift = np.repeat(rng.normal(0, 0.01, 5), 2000)
    values = np.clip(rng.beta(1, 30, 10_000) + shift, 0, 1)
    villages = np.repeat(np.arange(5), 2000)
    alone, clustered = count_ratio(values, values), count_ratio(values, values, villages, villages)
    assert clustered.clustered and clustered.high > alone.high


def test_a_large_rise_of_expected_crossings_names_large_scale_relapse_its_townships_and_reasons() -> None:
    rng = np.random.default_rng(5)
    n = 20_000
    towns = rng.choice(np.array(["t1", "t2", "t3"]), n)
    reasons = rng.choice(np.array(["illness_bills", "work_gap"]), n)
    reference = _scored(rng.beta(1, 30, n), towns, reasons)
    risk = rng.beta(1, 30, n)
    hit = (towns == "t2") & (rng.random(n) < 0.5)  # a shock in one township, through lost work
    risk[hit] = np.clip(risk[hit] * 5, 0, 1)
    current_reasons = np.where(hit, "job_loss", reasons)
    current = _scored(risk, towns, current_reasons)
    check = early_warning_check(reference, current, MonitorThresholds())
    assert check.status == "alert", check.message
    assert check.group == "large-scale relapse"
    assert "可能发生规模性返贫" in check.message and "可能发生规模性返贫" in check.action
    assert list(check.details["townships"])[0] == "t2"
    assert list(check.details["reasons"])[0] == "job_loss"
    assert "crossing a rule now 50 -> 50" in check.message
    low, _ = check.details["interval_90"]
    assert low > 1.0 and check.value >= MonitorThresholds().expected_crossings_ratio.alert


def test_a_rise_beyond_the_90_percent_interval_but_within_three_standard_errors_only_warns() -> None:
    """Two sides whose scores are the same two values, the current ones x1.3: only the number of
    households decides how far the rise is from noise (0.28 standard errors per sqrt(household))."""

    def side(n: int, factor: float) -> ScoredSide:
        return ScoredSide(pd.DataFrame({"risk_score": np.tile([0.01, 0.05], n // 2) * factor}))

    thresholds = MonitorThresholds()
    assert thresholds.expected_crossings_ratio.alert <= 1.3
    few = early_warning_check(side(64, 1.0), side(64, 1.3), thresholds)
    many = early_warning_check(side(400, 1.0), side(400, 1.3), thresholds)
    assert few.value == pytest.approx(1.3) == many.value
    assert 1.645 < few.details["z"] < thresholds.expected_crossings_alert_z
    assert few.status == "warning" and "可能发生规模性返贫" not in few.message
    assert many.details["z"] > thresholds.expected_crossings_alert_z and many.status == "alert"


def test_a_rise_within_noise_is_not_an_alarm_however_large() -> None:
    rng = np.random.default_rng(6)
    towns = np.array(["t1"] * 60)
    check = early_warning_check(
        _scored(rng.beta(1, 30, 60), towns), _scored(2 * rng.beta(1, 30, 60), towns), MonitorThresholds()
    )
    low, _ = check.details["interval_90"]
    if low <= 1.0:
        assert check.status == "ok" and "within noise" in check.message


# -- whole runs on generated counties -----------------------------------------------------------


def test_a_quiet_county_against_another_seed_is_ok(cases: Counties, tmp_path: Path) -> None:
    result = _monitor(cases.reference, cases.quiet, tmp_path)
    assert result.status == "ok", [(c.name, c.value) for c in result.checks if c.status != "ok"]
    assert result.exit_code == 0


def test_a_quiet_county_against_its_own_past_year_is_ok(cases: Counties, tmp_path: Path) -> None:
    result = _monitor(f"{cases.quiet}@2022-12", cases.quiet, tmp_path)
    assert result.status == "ok", [(c.name, c.value) for c in result.checks if c.status != "ok"]
    assert result.summary["reference"]["as_of"] == "2022-12"


@pytest.mark.parametrize(
    ("scenario", "named", "action_words"),
    [
        ("lockdown", "migrant_work_drop", "retrain"),
        ("line_jump", "monitoring_line_change", "review the monitoring line"),
        ("other_county", "different_county", "intended county"),
        ("outage", "reporting_outage", "check the data feed"),
        ("income_unit", "income_unit_error", "check the data feed"),
    ],
)
def test_each_scenario_raises_an_alert_that_names_it(
    cases: Counties, tmp_path: Path, scenario: str, named: str, action_words: str
) -> None:
    result = _monitor(cases.reference, cases.scenarios[scenario], tmp_path)
    check = next(c for c in result.checks if c.name == named)
    assert check.status == "alert", check
    assert result.status == "alert" and result.exit_code == ExitCode.ALERT == 3
    assert named in result.summary["named_causes"]
    assert any(action_words in action for action in result.summary["actions"])


def test_summary_json_has_status_and_checks_with_thresholds(cases: Counties, tmp_path: Path) -> None:
    _monitor(cases.reference, cases.scenarios["outage"], tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert summary["status"] in ("ok", "warning", "alert")
    assert summary["checks"], "no checks"
    for check in summary["checks"]:
        assert set(check) >= {"name", "value", "threshold", "status", "message", "action"}
        assert set(check["threshold"]) == {"warning", "alert"}
        assert check["status"] in ("ok", "warning", "alert")
    assert summary["reference"]["as_of"] == "2023-12" and summary["current"]["kind"] == "dataset"
    assert summary["sampling"]["max_rows_per_side"] == MonitorThresholds().max_rows_per_side


# -- a large county: drift on a sample of whole villages, county checks on every row -------------


def test_villages_are_drawn_in_seeded_hash_order_up_to_the_limit() -> None:
    codes = [f"5301020010{i:02d}" for i in range(40)]
    sizes = [100 + i for i in range(40)]
    chosen = choose_villages(codes, sizes, limit=1000, seed=5)
    ranked = sorted(codes, key=lambda code: village_rank(code, 5))
    assert chosen == ranked[: len(chosen)], "a prefix of the seeded order"
    size = dict(zip(codes, sizes, strict=True))
    assert sum(size[c] for c in chosen) <= 1000 < sum(size[c] for c in ranked[: len(chosen) + 1])
    assert choose_villages(codes, sizes, limit=1000, seed=5) == chosen
    assert set(choose_villages(codes, sizes, limit=1000, seed=6)) != set(chosen)
    assert choose_villages(codes, sizes, limit=10**6, seed=5) == codes, "everything when it fits"
    assert len(choose_villages(codes, sizes, limit=50, seed=5)) == 1, "a village is never split"


def test_sampled_villages_have_exactly_the_features_of_the_full_county(cases: Counties) -> None:
    from relapse_risk.features.contract import TABLES
    from relapse_risk.features.dataset import load_dataset
    from relapse_risk.features.history import build_features

    dataset = load_dataset(cases.reference)
    as_of = dataset.policy.data_end
    full = build_features(dataset, as_of).set_index("household_id")
    sample = village_sample(dataset, limit=1000, seed=3)
    assert 0 < sample.sampled_households <= 1000 < sample.households == 2000
    with sampled_dataset(dataset, sample) as part:
        ids = part.sql("SELECT household_id FROM households").df()["household_id"]
        assert len(ids) == sample.sampled_households
        for table in TABLES:
            if table.household_column is not None:
                outside = part.sql(
                    f"SELECT count(*) FROM {table.name} WHERE household_id NOT IN "
                    "(SELECT household_id FROM households)"
                ).fetchall()[0][0]
                assert outside == 0, table.name
        sampled = build_features(part, as_of).set_index("household_id")
    # village features (village_households, village_share_*) included: whole villages were drawn
    expected = full.loc[sampled.index]
    np.testing.assert_allclose(sampled.to_numpy(np.float64), expected.to_numpy(np.float64), rtol=1e-6)
    assert dataset.row_count("households") == 2000, "the full county is untouched"


def test_a_county_over_the_limit_is_sampled_by_villages_and_its_county_checks_stay_exact(
    cases: Counties, tmp_path: Path
) -> None:
    past, now = f"{cases.quiet}@2022-12", cases.quiet
    whole = _monitor(past, now, tmp_path / "whole")
    sampled = _monitor(past, now, tmp_path / "sampled", thresholds=MonitorThresholds(max_rows_per_side=1000))
    sampling = sampled.summary["sampling"]
    for side in ("reference", "current"):
        drawn = sampling[side]
        assert drawn["unit"] == "village" and drawn["sampled"] is True and drawn["households"] == 2000
        assert 0 < drawn["sampled_households"] <= 1000 == drawn["limit"]
        assert sampling[f"{side}_rows"] == drawn["sampled_households"]
    assert sampling["reference"]["sampled_villages"] == sampling["current"]["sampled_villages"]
    assert whole.summary["sampling"]["current"]["sampled"] is False
    county_checks = {c.name: c.value for c in whole.checks if c.group != "data drift"}
    sampled_county_checks = {c.name: c.value for c in sampled.checks if c.group != "data drift"}
    # approx: DuckDB's parallel sums may add in another order from one run to the next
    assert sampled_county_checks == pytest.approx(county_checks)
    assert {"reference: features", "current: county facts (every row)"} <= set(sampled.summary["stages"])
    assert "whole villages" in (tmp_path / "sampled" / "report.html").read_text(encoding="utf-8")


def test_the_cli_exits_0_ok_3_alert_2_cannot_run_and_writes_one_html_report(
    cases: Counties, tmp_path: Path
) -> None:
    runner = CliRunner()
    base = ["monitor", "--reference", str(cases.reference), "--model", "none", "--no-mlflow"]
    quiet = runner.invoke(app, [*base, "--current", str(cases.quiet), "--out", str(tmp_path / "quiet")])
    assert quiet.exit_code == 0, quiet.output
    report = (tmp_path / "quiet" / "report.html").read_text(encoding="utf-8")
    assert "Relapse-risk monitoring" in report and "evidently" in report.lower()
    assert not (tmp_path / "quiet" / "evidently.html").exists()

    outage = runner.invoke(
        app, [*base, "--current", str(cases.scenarios["outage"]), "--out", str(tmp_path / "outage")]
    )
    assert outage.exit_code == 3, outage.output

    missing = runner.invoke(
        app, [*base, "--current", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]
    )
    assert missing.exit_code == 2
    assert "nowhere" in missing.output


def test_monitor_asked_for_a_champion_the_registry_lacks_says_in_one_line_to_promote_or_use_the_challenger(
    challenger_only_registry: str, tmp_path: Path
) -> None:
    # The model is looked up before either side is read: folders that are not there are never reached.
    result = CliRunner().invoke(
        app,
        ["monitor", "--reference", str(tmp_path / "reference"), "--current", str(tmp_path / "current")]
        + ["--out", str(tmp_path / "out"), "--model", "champion", "--tracking-uri", challenger_only_registry]
        + ["--no-mlflow"],
    )

    assert result.exit_code == 2  # "cannot run": 3 is an alert
    assert message_lines(result.output) == [
        f"No model at models:/relapse-risk@champion in {challenger_only_registry}: run `relapse train` "
        "then `relapse promote`, or monitor with the challenger: --model challenger"
    ]


def test_monitor_without_a_model_option_goes_on_without_the_missing_champion_and_says_what_to_run(
    challenger_only_registry: str, tmp_path: Path
) -> None:
    options = MonitorOptions(reference="r", current="c", out=tmp_path, log_to_mlflow=False)

    model, _, note = load_model(options, challenger_only_registry)

    assert model is None
    assert "`relapse promote`" in note and "--model challenger" in note
    assert note.endswith("prediction drift and performance skipped")


def test_an_as_of_month_outside_the_data_cannot_run_exit_2(cases: Counties, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "monitor",
            "--reference",
            f"{cases.reference}@2030-01",
            "--current",
            str(cases.quiet),
            "--out",
            str(tmp_path),
            "--model",
            "none",
            "--no-mlflow",
        ],
    )
    assert result.exit_code == 2
    assert "2030-01" in result.output


def test_with_a_model_scores_drift_and_matured_performance_are_checked(
    cases: Counties, tmp_path: Path
) -> None:
    result = _monitor(f"{cases.reference}@2023-06", cases.quiet, tmp_path, model=str(cases.model))
    names = {c.name for c in result.checks}
    assert {"score_drift", "risk_band_shares", "visit_list_townships", "calibration_error"} <= names
    months = result.summary["performance_by_month"]
    assert [row["as_of"] for row in months][-1] == "2023-06"  # the last quarter-end with 6 months after it
    assert all(0 <= row["recall_at_k"] <= 1 and row["k"] > 0 for row in months)


def test_a_lockdown_against_the_same_county_without_it_warns_of_large_scale_relapse(
    cases: Counties, tmp_path: Path
) -> None:
    result = _monitor(cases.twin, cases.scenarios["lockdown"], tmp_path, model=str(cases.model))
    checks = {c.name: c for c in result.checks}
    warning = checks["expected_crossings"]
    assert warning.status == "alert" and warning.group == "large-scale relapse", warning.message
    assert warning.message.startswith("可能发生规模性返贫")
    assert warning.details["townships"], "the townships driving the rise are named"
    assert warning.details["reasons"], "the first reasons of the top households are named"
    assert warning.details["crossing_now"]["current"] > 0
    assert "reasons of the top households" in result.summary["stages"]
    assert checks["top_k_share"].status == "alert"
    assert any("可能发生规模性返贫" in action for action in result.summary["actions"])
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    written = next(c for c in summary["checks"] if c["name"] == "expected_crossings")
    assert written["details"]["interval_90"][0] > 1.0
    assert summary["current"]["households_by_status"]["triggered_now"] > 0


def test_a_quiet_county_against_another_seed_raises_no_early_warning(cases: Counties, tmp_path: Path) -> None:
    result = _monitor(cases.reference, cases.quiet, tmp_path, model=str(cases.model))
    checks = {c.name: c for c in result.checks}
    for name in ("expected_crossings", "top_k_share", "mean_score_change"):
        assert checks[name].status == "ok", checks[name]
    assert "reasons of the top households" not in result.summary["stages"], "reasons only when it fires"


def test_a_scored_run_and_a_request_log_can_be_compared(cases: Counties, tmp_path: Path) -> None:
    from relapse_risk.features.dataset import load_dataset
    from relapse_risk.features.history import build_features
    from relapse_risk.models.model import RiskModel
    from relapse_risk.monitoring.inputs import score_households

    dataset = load_dataset(cases.quiet)
    features = build_features(dataset, dataset.policy.data_end)
    scored = score_households(dataset, features, dataset.policy.data_end, RiskModel.load(cases.model))
    run = tmp_path / "run"
    run.mkdir()
    scored.assign(status="scored").to_parquet(run / "scores.parquet")
    (run / "manifest.json").write_text(json.dumps({"as_of": "2023-12"}), encoding="utf-8")
    log = tmp_path / "requests.jsonl"
    with log.open("w", encoding="utf-8") as lines:
        merged = scored.merge(features, on="household_id")
        for row in merged.head(500).itertuples(index=False):
            record = {
                "v": 1,
                "as_of": "2023-12",
                "household_id": row.household_id,
                "status": "scored",
                "risk_score": row.risk_score,
                "risk_band": row.risk_band,
                "features": {"income_total_mean_12m": row.income_total_mean_12m},
            }
            lines.write(json.dumps(record) + "\n")
    result = _monitor(run, log, tmp_path / "out")
    names = {c.name for c in result.checks}
    assert {"score_drift", "risk_band_shares"} <= names
    assert result.summary["current"]["kind"] == "request_log"
    assert any("county checks" in note for note in result.summary["notes"])


def test_metrics_and_report_are_logged_to_mlflow(cases: Counties, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    (tmp_path / "mlruns").mkdir()
    result = _monitor(
        cases.reference,
        cases.scenarios["outage"],
        tmp_path / "out",
        log_to_mlflow=True,
        tracking_uri=uri,
    )
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(result.mlflow_run_id)
    assert run.data.tags["monitor.status"] == "alert"
    assert run.data.metrics["monitor.reporting_outage"] > 0.1
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "monitor")}
    assert logged == {"monitor/summary.json", "monitor/report.html"}


@pytest.mark.slow
def test_retrain_registers_a_challenger_and_leaves_the_champion(trained_small_county, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    store = tmp_path / "mlruns"
    shutil.copytree(Path(trained_small_county.tracking_uri.removeprefix("sqlite:///")).parent, store)
    uri = f"sqlite:///{store / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    first = client.get_model_version_by_alias("relapse-risk", "challenger")
    client.set_registered_model_alias("relapse-risk", "champion", first.version)

    result = CliRunner().invoke(
        app,
        [
            "retrain",
            "--data",
            str(trained_small_county.county.folder),
            "--threads",
            "1",
            "--tracking-uri",
            uri,
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert client.get_model_version_by_alias("relapse-risk", "champion").version == first.version
    assert int(client.get_model_version_by_alias("relapse-risk", "challenger").version) > int(first.version)


def test_thresholds_can_be_overridden_from_a_file(cases: Counties, tmp_path: Path) -> None:
    lenient = tmp_path / "thresholds.json"
    levels = {"warning": 0.5, "alert": 0.9}
    lenient.write_text(json.dumps({"unreported_share_change": levels, "feature_drift": {}}), encoding="utf-8")
    args = [
        "monitor",
        "--reference",
        str(cases.reference),
        "--current",
        str(cases.scenarios["outage"]),
        "--out",
        str(tmp_path / "out"),
        "--model",
        "none",
        "--no-mlflow",
        "--thresholds",
        str(lenient),
    ]
    unknown_field = CliRunner().invoke(app, args)
    assert unknown_field.exit_code == 2 and "feature_drift" in unknown_field.output

    lenient.write_text(json.dumps({"unreported_share_change": levels}), encoding="utf-8")
    result = CliRunner().invoke(app, args)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    outage = next(c for c in summary["checks"] if c["name"] == "reporting_outage")
    assert outage["threshold"] == levels and outage["status"] == "ok"
    assert result.exit_code in (0, 2)


def test_a_county_growing_less_risky_is_no_mean_score_alarm() -> None:
    # The demo's quiet county against itself 18 months and a season earlier: every score about halved.
    rng = np.random.default_rng(5)
    reference = pd.DataFrame({"risk_score": rng.beta(1, 30, 4000), "risk_band": "low"})
    current = reference.assign(risk_score=reference["risk_score"] * 0.5)
    checks = {c.name: c for c in prediction_drift_checks(reference, current, MonitorThresholds())}

    assert checks["mean_score_change"].value == pytest.approx(0.5)
    assert checks["mean_score_change"].status == "ok"
    risen = {c.name: c for c in prediction_drift_checks(current, reference, MonitorThresholds())}
    assert risen["mean_score_change"].status == "alert"  # x2 the other way
