"""`relapse outlook`: expected threshold crossings with honest intervals, by area and rule, and 防贫保."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from relapse_risk.features.dataset import load_dataset
from relapse_risk.features.rules import RISK_TYPE_NAMES, labels_for_months
from relapse_risk.features.triggers import IncomeBelow, OutOfPocketAbove, read_trigger, trigger_labels
from relapse_risk.models.expected_counts import (
    count_change,
    expected_by_rule,
    expected_count,
    first_rule_shares,
    relative_count_error,
)
from relapse_risk.serving.outlook.insurance import insured_share
from typer.testing import CliRunner

from relapse_risk.cli import app

probabilities = st.lists(st.floats(0.0, 1.0), min_size=1, max_size=200).map(np.array)


# -- the arithmetic ------------------------------------------------------------------------------


@given(probabilities, st.floats(0.0, 1.0))
def test_the_interval_holds_the_expected_count_and_never_goes_below_zero(p: np.ndarray, error: float) -> None:
    count = expected_count(p, error)

    assert count.expected == pytest.approx(p.sum())
    assert 0.0 <= count.low <= count.expected <= count.high


@given(probabilities, st.floats(0.0, 0.5), st.floats(0.0, 0.5))
def test_a_larger_calibration_error_never_narrows_the_interval(p: np.ndarray, a: float, b: float) -> None:
    narrow, wide = expected_count(p, min(a, b)), expected_count(p, max(a, b))

    assert wide.high >= narrow.high and wide.low <= narrow.low


def test_with_exact_probabilities_the_interval_is_chance_alone() -> None:
    count = expected_count(np.full(10_000, 0.05), relative_error=0.0)

    assert count.chance_sd == pytest.approx(math.sqrt(10_000 * 0.05 * 0.95))
    assert count.high - count.expected == pytest.approx(1.6449 * count.chance_sd, rel=1e-3)


def test_a_change_between_runs_adds_both_runs_uncertainty() -> None:
    before, after = expected_count(np.full(1000, 0.04), 0.1), expected_count(np.full(1000, 0.06), 0.1)
    change = count_change(before, after)

    assert change.change == pytest.approx(20.0)
    assert change.low < 20.0 < change.high
    assert change.high - change.change > after.high - after.expected


def test_the_count_error_is_what_chance_does_not_explain() -> None:
    # Observed exactly as expected: no error. Off by 20 % on every month: 20 % (less chance).
    assert (
        relative_count_error(np.array([100.0, 200.0]), np.array([100.0, 200.0]), np.array([90.0, 180.0])) == 0
    )
    error = relative_count_error(np.array([1200.0]), np.array([1000.0]), np.array([0.0]))
    assert error == pytest.approx(0.2)


def test_first_rule_shares_split_each_band_and_the_split_adds_up_to_the_expected_count() -> None:
    bands = pd.Series(["high", "high", "high", "medium", "low", "low"])
    labels = pd.Series([1, 1, 0, 1, 0, 0])
    rules = pd.Series(["income_drop", "rigid_expenditure", None, "income_shortfall", None, None])

    shares = first_rule_shares(bands, labels, rules, RISK_TYPE_NAMES)
    split = expected_by_rule(pd.Series([0.5, 0.2, 0.01]), pd.Series(["high", "medium", "low"]), shares)

    assert shares["high"] == {"income_shortfall": 0.0, "rigid_expenditure": 0.5, "income_drop": 0.5}
    assert shares["low"] == pytest.approx({rule: 1 / 3 for rule in RISK_TYPE_NAMES})  # no positives: pooled
    assert all(sum(by_rule.values()) == pytest.approx(1.0) for by_rule in shares.values())
    assert sum(split.values()) == pytest.approx(0.71)


@settings(max_examples=50)
@given(probabilities, st.floats(0.05, 1.0))
def test_the_insured_share_holds_the_asked_share_of_expected_claims(
    p: np.ndarray, claims_share: float
) -> None:
    share = insured_share(p, claims_share)
    if p.sum() == 0:
        assert share == 0.0
        return
    insured = int(round(share * p.size))
    held = np.sort(p)[::-1][:insured].sum() / p.sum()

    assert held >= claims_share - 1e-9
    assert np.sort(p)[::-1][: insured - 1].sum() / p.sum() < claims_share + 1e-9


# -- the trigger file and its labels ------------------------------------------------------------


def test_a_trigger_file_in_toml_or_json_is_read_and_a_bad_one_names_the_field(tmp_path: Path) -> None:
    toml = tmp_path / "income.toml"
    toml.write_text('kind = "income_below"\nline = 6000\npayout = 5000\n', encoding="utf-8")
    json_file = tmp_path / "medical.json"
    json_file.write_text('{"kind": "out_of_pocket_above", "amount": 20000, "payout": 8000}', encoding="utf-8")
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'kind = "out_of_pocket_above"\namount = -1\npayout = 1\ncategories = ["food"]\n', encoding="utf-8"
    )

    assert read_trigger(toml) == IncomeBelow(kind="income_below", line=6000, payout=5000)
    assert read_trigger(json_file).categories == ("medical",)  # type: ignore[union-attr]
    with pytest.raises(ValueError, match=r"bad\.toml: not a trigger: out_of_pocket_above\.amount"):
        read_trigger(bad)


def test_an_income_trigger_at_the_rules_line_is_rule_r1_in_the_label_window(small_county) -> None:
    dataset = load_dataset(small_county.folder)
    month = dataset.policy.data_start.replace(year=dataset.policy.data_start.year + 2)
    never = trigger_labels(dataset, IncomeBelow(kind="income_below", line=1e-3, payout=1), [month], 6)
    always = trigger_labels(dataset, IncomeBelow(kind="income_below", line=1e9, payout=1), [month], 6)
    costly = trigger_labels(
        dataset, OutOfPocketAbove(kind="out_of_pocket_above", amount=5000, payout=1), [month], 6
    )
    rules = labels_for_months(dataset, [month], 6)

    assert never["label"].sum() == 0
    # Everyone with a defined income in the window is below a line of a billion yuan.
    assert always["label"].sum() > 0.9 * len(always)
    assert 0 < costly["label"].sum() < len(costly)
    assert list(always["household_id"]) == list(rules["household_id"])


# -- the command, end to end ----------------------------------------------------------------------


def test_outlook_sums_the_runs_scores_by_area_and_rule_with_the_models_count_error(
    trained_small_county, tmp_path: Path
) -> None:
    runner = CliRunner()
    folder, uri = str(trained_small_county.county.folder), trained_small_county.tracking_uri
    runs = {}
    for as_of in ("2024-06", "2024-12"):
        runs[as_of] = tmp_path / as_of
        scored = runner.invoke(
            app,
            ["score", "--data", folder, "--as-of", as_of, "--out", str(runs[as_of]), "--model", "challenger"]
            + ["--tracking-uri", uri, "--explain", "none"],
        )
        assert scored.exit_code == 0, scored.output
    trigger = tmp_path / "trigger.toml"
    trigger.write_text('kind = "income_below"\nline = 5000\npayout = 4000\n', encoding="utf-8")
    out = tmp_path / "outlook.json"

    result = runner.invoke(
        app,
        ["outlook", "--run", str(runs["2024-12"]), "--previous", str(runs["2024-06"]), "--out", str(out)]
        + ["--insurance", str(trigger)],
        env={"COLUMNS": "160"},
    )

    assert result.exit_code == 0, result.output
    outlook = json.loads(out.read_text(encoding="utf-8"))
    scores = pd.read_parquet(runs["2024-12"] / "scores.parquet")
    scored = scores[scores["status"] == "scored"]
    county = outlook["county"]
    assert county["expected"] == pytest.approx(scored["risk_score"].sum(), abs=0.06)
    assert county["low"] <= county["expected"] <= county["high"]
    assert sum(t["expected"] for t in outlook["townships"].values()) == pytest.approx(
        county["expected"], abs=1
    )
    assert sum(v["households"] for v in outlook["villages"].values()) == len(scored)
    assert sum(county["by_rule"].values()) == pytest.approx(county["expected"], abs=1)
    assert county["triggered_now"] == int((scores["status"] == "triggered_now").sum())
    assert county["change"]["low"] <= county["change"]["change"] <= county["change"]["high"]
    # The model's own error from its test months, not the fallback; the measured coverage is printed.
    manifest = json.loads((runs["2024-12"] / "manifest.json").read_text(encoding="utf-8"))
    assert outlook["interval"]["relative_error"] == manifest["model"]["count_calibration"]["relative_error"]
    assert outlook["notes"] == []
    assert "measured coverage of matured quarter-ends" in result.output
    insurance = outlook["insurance"]
    assert insurance["households"] == len(scores)
    assert insurance["expected_payout"]["expected"] == pytest.approx(
        insurance["expected_claims"]["expected"] * 4000, rel=1e-3, abs=4000
    )
    assert 0 < insurance["insured_share"] <= 1
    assert [q["as_of"] for q in insurance["test"]["quarters"]] == ["2024-03", "2024-06"]
    assert "防贫保" in result.output


def test_outlook_of_a_folder_that_is_not_a_run_says_what_it_needs(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["outlook", "--run", str(tmp_path), "--out", str(tmp_path / "o.json")])

    assert result.exit_code == 2
    assert "manifest.json: not found" in result.output and "relapse score" in result.output
