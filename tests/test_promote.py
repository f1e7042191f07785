"""Promotion moves `champion` only to a challenger that beats the baseline, leaves no group worse off
than today's practice or than the champion, and is calibrated."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from relapse_risk.features.catalogue import FEATURE_NAMES
from relapse_risk.features.contract import parse_month
from relapse_risk.features.loading import load_dataset
from relapse_risk.training.config import TrainingSettings
from relapse_risk.training.promote import (
    Candidate,
    PromotionError,
    candidate_from_evaluation,
    judge,
    promote,
)
from relapse_risk.training.subgroups import (
    GROUP_FLAGS,
    GateLimits,
    champion_table,
    household_groups,
    subgroup_table,
    worse_than_p,
)
from relapse_risk.training.tracking import CHALLENGER, CHAMPION, configure_tracking, version_by_alias
from relapse_risk.training.train import TrainingData, prepare_training_data, train_prepared
from typer.testing import CliRunner

from relapse_risk.cli import app

MODEL = "relapse-risk"


def gate_frames(
    positives: int, model_catches: int, baseline_catches: int, group_size: int = 400
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A ranking of one month: an elderly-only group and everyone else, with chosen catches.

    Outside the group, 300 positives of 3,000 rows; the model catches 200, the baseline 100.
    Scores are calibrated: each row's score is its group's positive rate.
    """
    rows = []
    for elderly, size, pos, model, base in (
        (True, group_size, positives, model_catches, baseline_catches),
        (False, 3000, 300, 200, 100),
    ):
        for i in range(size):
            label = i < pos
            rows.append(
                {
                    "household_id": f"{'e' if elderly else 'o'}{i:05d}",
                    "label": int(label),
                    "risk_score": pos / size,
                    "in_top_k_model": label and i < model,
                    "in_top_k_rule_baseline": label and (pos - 1 - i) < base,
                    "elderly_only": elderly,
                }
            )
    frame = pd.DataFrame(rows).assign(as_of=pd.Timestamp("2024-06-01"))
    groups = frame[["household_id", "as_of", "elderly_only"]].assign(township_code="532328101")
    for column, _ in GROUP_FLAGS:
        if column != "elderly_only":
            groups[column] = False
    ranked = frame.drop(columns=["elderly_only"])
    return ranked, groups


def candidate(ranked: pd.DataFrame, groups: pd.DataFrame, **changes: object) -> Candidate:
    ranking = ranked.merge(groups, on=["household_id", "as_of"])
    evaluation = {
        "months": ["2024-06"],
        "averaged": [
            {
                "method": "model",
                "recall_at_k": 0.60,
                "precision_at_k": 0.4,
                "median_lead_time_months": 3.0,
                "ece": 0.01,
            },
            {"method": "rule_baseline", "recall_at_k": 0.30},
        ],
    }
    base = candidate_from_evaluation("challenger", "2", evaluation, ranking, TrainingSettings())
    return dataclasses.replace(base, **changes)


class TestFairnessGate:
    """The gate refuses a model that leaves a group worse off than today's practice, on evidence only."""

    limits = GateLimits()

    def test_a_group_the_model_serves_worse_than_the_baseline_is_refused(self) -> None:
        ranked, groups = gate_frames(positives=80, model_catches=5, baseline_catches=30)
        table = subgroup_table(ranked, groups, self.limits).set_index("group")
        assert table.loc["elderly_only", "below_baseline"]
        assert not table.loc["overall", "below_baseline"]

    def test_a_small_group_is_not_refused_for_noise(self) -> None:
        ranked, groups = gate_frames(positives=6, model_catches=1, baseline_catches=3, group_size=60)
        table = subgroup_table(ranked, groups, self.limits).set_index("group")
        assert table.loc["elderly_only", "recall_at_k"] < table.loc["elderly_only", "baseline_recall_at_k"]
        assert not table.loc["elderly_only", "flagged"]

    def test_low_parity_alone_never_refuses(self) -> None:
        """0.5x the overall recall, but still above the baseline's: a harder group, not a worse-off one."""
        ranked, groups = gate_frames(positives=80, model_catches=27, baseline_catches=20)
        table = subgroup_table(ranked, groups, self.limits).set_index("group")
        assert table.loc["elderly_only", "parity"] < 0.8
        assert not table.loc["elderly_only", "flagged"]

    def test_a_group_whose_scores_are_far_off_is_refused_as_miscalibrated(self) -> None:
        ranked, groups = gate_frames(positives=80, model_catches=60, baseline_catches=30)
        elderly = groups["elderly_only"].to_numpy()
        ranked.loc[elderly, "risk_score"] = ranked.loc[elderly, "risk_score"] / 3
        table = subgroup_table(ranked, groups, self.limits).set_index("group")
        assert table.loc["elderly_only", "miscalibrated"]
        assert table.loc["elderly_only", "calibration_ratio"] > 2

    @hypothesis_settings(deadline=None, max_examples=40)  # each example builds a 3,400-row ranking
    @given(
        positives=st.integers(min_value=0, max_value=120),
        baseline=st.integers(min_value=0, max_value=120),
        extra=st.integers(min_value=0, max_value=120),
    )
    def test_a_model_that_catches_whatever_the_baseline_catches_is_never_below_it(
        self, positives: int, baseline: int, extra: int
    ) -> None:
        baseline = min(baseline, positives)
        model = min(baseline + extra, positives)
        # The baseline's catches are the last ``baseline`` positives; make the model's include them.
        ranked, groups = gate_frames(positives=positives, model_catches=0, baseline_catches=baseline)
        elderly_positive = groups["elderly_only"].to_numpy() & ranked["label"].astype(bool).to_numpy()
        caught = ranked["in_top_k_rule_baseline"].to_numpy().copy()
        order = np.flatnonzero(elderly_positive & ~caught)[: model - baseline]
        caught[order] = True
        ranked["in_top_k_model"] = np.where(groups["elderly_only"], caught, ranked["in_top_k_model"])
        table = subgroup_table(ranked, groups, self.limits).set_index("group")
        assert not table.loc["elderly_only", "below_baseline"]

    def test_worse_than_p_is_an_exact_one_sided_sign_test(self) -> None:
        assert worse_than_p(0, 0) == 1.0
        assert worse_than_p(5, 5) > 0.5
        assert worse_than_p(0, 10) == pytest.approx(0.5**10)
        assert worse_than_p(10, 0) == 1.0

    def test_a_group_that_fell_against_the_champion_is_named(self) -> None:
        ranked, groups = gate_frames(positives=80, model_catches=10, baseline_catches=0)
        champion = ranked.copy()
        champion.loc[
            champion["household_id"].str.startswith("e") & champion["label"].astype(bool), "in_top_k_model"
        ] = True
        table = champion_table(ranked, champion, groups, self.limits).set_index("group")
        assert table.loc["elderly_only", "fell"]
        assert not champion_table(ranked, ranked, groups, self.limits)["fell"].any()


class TestJudge:
    settings = TrainingSettings()

    def test_a_challenger_that_passes_every_check_is_accepted(self) -> None:
        assert judge(candidate(*gate_frames(80, 40, 30)), self.settings) == []

    def test_a_tie_with_the_baseline_is_not_enough(self) -> None:
        (reason,) = judge(candidate(*gate_frames(80, 40, 30), recall_at_k=0.30), self.settings)
        assert "does not beat the rule baseline" in reason

    def test_each_failed_check_gives_its_own_reason_naming_the_group(self) -> None:
        off = pd.DataFrame({"as_of": [pd.Timestamp("2024-06-01")], "ece_after_level_shift": [0.05]})
        reasons = judge(candidate(*gate_frames(80, 5, 30), calibration=off), self.settings)
        assert len(reasons) == 2
        assert "after each month's level shift 0.0500 is above the limit 0.02" in reasons[0]
        assert reasons[1].startswith("elderly_only: recall@k 0.062 is below the rule baseline's 0.375")

    def test_an_undefined_metric_never_passes(self) -> None:
        unknown = pd.DataFrame({"as_of": [pd.Timestamp("2024-06-01")], "ece_after_level_shift": [math.nan]})
        gate = candidate(*gate_frames(80, 40, 30), recall_at_k=math.nan, calibration=unknown)
        assert len(judge(gate, self.settings)) == 2

    def test_a_level_shift_alone_is_reported_not_refused(self) -> None:
        """Every score twice the outcome rate, in the same order: a shock's level, not a bad shape."""
        ranked, groups = gate_frames(80, 40, 30)
        challenger = candidate(ranked.assign(risk_score=ranked["risk_score"] * 2), groups)
        assert challenger.calibration["observed_over_predicted"].iloc[0] == pytest.approx(0.5)
        assert challenger.ece_after_level_shift < 0.02
        assert judge(challenger, self.settings) == []


# ----------------------------------------------------------------------------- against a real registry


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> TrainingSettings:
    work_dir = tmp_path_factory.mktemp("promote")
    return TrainingSettings(
        work_dir=work_dir,
        tracking_uri=f"sqlite:///{work_dir / 'mlruns' / 'mlflow.db'}",
        threads=1,
        shap_sample_rows=200,
    )


@pytest.fixture(scope="module")
def prepared(small_county, settings: TrainingSettings) -> TrainingData:
    return prepare_training_data(load_dataset(small_county.folder), settings, small_county.truth)


def with_shuffled_labels(data: TrainingData, seed: int) -> TrainingData:
    """The same rows, but every label outside the test months permuted: a model that learns nothing."""
    table = data.table.copy()
    learn = ~table["as_of"].isin(pd.to_datetime(list(data.split.test))).to_numpy()
    labels = table.loc[learn, "label"].to_numpy()
    table.loc[learn, "label"] = np.random.default_rng(seed).permutation(labels)
    return dataclasses.replace(data, table=table)


def with_group_shuffled(data: TrainingData, group: str, seed: int) -> TrainingData:
    """The same rows, but the feature rows of one group's households permuted among themselves at every
    month: the model learns and scores that group from other households' histories."""
    months = sorted(data.table["as_of"].dt.date.unique())
    facts = household_groups(data.dataset, months)
    table = data.table.merge(
        facts[["household_id", "as_of", group]], on=["household_id", "as_of"], how="left"
    )
    members = np.flatnonzero(table[group].fillna(False).to_numpy(dtype=bool))
    shuffled = np.random.default_rng(seed).permutation(members)
    features = list(FEATURE_NAMES)
    table.loc[members, features] = table.loc[shuffled, features].to_numpy()
    return dataclasses.replace(data, table=table.drop(columns=[group]))


def through(data: TrainingData, last: str, test: tuple[dt.date, ...]) -> TrainingData:
    """``data`` as a champion trained earlier: refit through ``last`` and tested on ``test``."""
    layout = data.layout
    refit = tuple(m for m in layout.refit_months if m <= parse_month(last))
    split = dataclasses.replace(layout.split, test=test)
    return dataclasses.replace(
        data,
        layout=dataclasses.replace(layout, split=split, refit_months=refit, calibration_months=refit[-3:]),
    )


@pytest.fixture(scope="module")
def versions(prepared: TrainingData, settings: TrainingSettings) -> dict[str, str]:
    """v1: shuffled labels; v2: the real labels; v3: trained through 2023-06 and tested on one month
    fewer (a champion from an earlier quarter)."""
    tracking = configure_tracking(settings)
    shuffled = train_prepared(with_shuffled_labels(prepared, seed=3), settings, tracking)
    real = train_prepared(prepared, settings, tracking)
    earlier = train_prepared(through(prepared, "2023-06", prepared.split.test[:-1]), settings, tracking)
    return {
        "shuffled": shuffled.model_version,
        "real": real.model_version,
        "earlier": earlier.model_version,
    }


def set_aliases(settings: TrainingSettings, challenger: str, champion: str | None) -> None:
    client = configure_tracking(settings).client
    client.set_registered_model_alias(MODEL, CHALLENGER, challenger)
    if champion is None:
        if version_by_alias(client, MODEL, CHAMPION) is not None:
            client.delete_registered_model_alias(MODEL, CHAMPION)
    else:
        client.set_registered_model_alias(MODEL, CHAMPION, champion)


def champion_version(settings: TrainingSettings) -> str | None:
    version = version_by_alias(configure_tracking(settings).client, MODEL, CHAMPION)
    return str(version.version) if version is not None else None


def test_promote_refuses_a_model_trained_on_shuffled_labels(settings, versions) -> None:
    set_aliases(settings, challenger=versions["shuffled"], champion=None)
    result = CliRunner().invoke(
        app, ["promote", "--tracking-uri", settings.tracking_uri], env={"COLUMNS": "200"}
    )
    output = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    assert "Refused" in output and "does not beat the rule baseline" in output
    assert f"challenger (v{versions['shuffled']})" in output and "rule baseline" in output
    assert champion_version(settings) is None


def test_promote_makes_a_better_first_model_champion_and_prints_the_gate(settings, versions) -> None:
    set_aliases(settings, challenger=versions["real"], champion=None)
    result = CliRunner().invoke(
        app, ["promote", "--tracking-uri", settings.tracking_uri], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "Fairness gate" in result.output and "elderly_only" in result.output
    assert champion_version(settings) == versions["real"]


@pytest.mark.slow
def test_a_degraded_challenger_is_refused_naming_the_group_it_fails(medium_county, tmp_path) -> None:
    """The elderly's feature rows shuffled among themselves: the model ranks the elderly blind, which
    leaves them worse off than the rule baseline does. The gate must see it and name them."""
    settings = TrainingSettings(
        work_dir=tmp_path, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", threads=1, shap_sample_rows=100
    )
    prepared = prepare_training_data(load_dataset(medium_county.folder), settings)
    degraded = train_prepared(
        with_group_shuffled(prepared, "elderly_only", seed=5), settings, configure_tracking(settings)
    )
    decision = promote(settings)
    assert not decision.promoted
    refusal = next(r for r in decision.reasons if r.startswith("elderly_only: recall@k"))
    assert "below the rule baseline's" in refusal and "worse off than today's practice" in refusal
    assert champion_version(settings) is None
    assert degraded.model_version == decision.challenger.version


def test_the_champion_keeps_its_title_against_a_worse_challenger(settings, versions) -> None:
    set_aliases(settings, challenger=versions["shuffled"], champion=versions["real"])
    decision = promote(settings)
    assert not decision.promoted
    assert "paired household by household" in decision.basis
    assert any(
        r.startswith("overall: recall@k") and "fell from the champion's" in r for r in decision.reasons
    )
    assert champion_version(settings) == versions["real"]


def test_a_champion_from_an_earlier_quarter_is_compared_on_the_months_it_never_learned(
    settings, versions
) -> None:
    """Trained through 2023-06, the champion never saw the outcomes of quarter-ends from 2023-12 on."""
    set_aliases(settings, challenger=versions["real"], champion=versions["earlier"])
    decision = promote(settings)
    assert "re-scored" in decision.basis
    assert decision.champion is not None
    assert decision.challenger.months == ("2023-09", "2023-12", "2024-03", "2024-06")
    assert decision.champion.months == ("2023-12", "2024-03", "2024-06")
    assert decision.versus_champion is not None
    assert decision.promoted, decision.reasons
    assert champion_version(settings) == versions["real"]


def test_a_champion_that_learned_every_test_month_is_not_compared(settings, versions) -> None:
    """The refit champion learned the outcomes of all the challenger's months: comparing there would
    flatter it."""
    set_aliases(settings, challenger=versions["earlier"], champion=versions["real"])
    decision = promote(settings)
    assert decision.champion is None and decision.versus_champion is None
    assert "is not compared" in decision.basis


def test_a_version_whose_run_logged_no_backtest_cannot_be_judged(settings, versions) -> None:
    """A version registered by hand (or by an older release) has no ranking to judge groups on."""
    import mlflow

    tracking = configure_tracking(settings)
    with mlflow.start_run(experiment_id=tracking.experiment_id) as run:
        mlflow.log_param("horizon", 6)
    bare = tracking.client.create_model_version(MODEL, source=run.info.artifact_uri, run_id=run.info.run_id)
    set_aliases(settings, challenger=str(bare.version), champion=None)
    with pytest.raises(PromotionError, match=f"version {bare.version} .* has no evaluation.json.*retrain it"):
        promote(settings)


def test_promote_cannot_judge_without_a_challenger(settings) -> None:
    never_trained = settings.model_copy(update={"model_name": "relapse-risk-never-trained"})
    with pytest.raises(PromotionError, match="no 'challenger'.*run `relapse train` first"):
        promote(never_trained)


def test_promote_refuses_to_judge_the_champion_against_itself(settings, versions) -> None:
    set_aliases(settings, challenger=versions["real"], champion=versions["real"])
    with pytest.raises(PromotionError, match=f"version {versions['real']} already is the champion"):
        promote(settings)
