"""Promotion moves `champion` only to a challenger that beats baseline and champion and passes the checks."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from relapse_risk.features.loading import load_dataset
from relapse_risk.training.config import TrainingSettings
from relapse_risk.training.promote import Candidate, PromotionError, flagged_groups, judge, promote
from relapse_risk.training.split import TimeSplit
from relapse_risk.training.tracking import CHALLENGER, CHAMPION, configure_tracking, version_by_alias
from relapse_risk.training.train import TrainingData, prepare_training_data, train_prepared
from typer.testing import CliRunner

from relapse_risk.cli import app

MODEL = "relapse-risk"


def candidate(**changes: object) -> Candidate:
    base = Candidate(
        role="challenger",
        version="2",
        recall_at_k=0.60,
        baseline_recall_at_k=0.30,
        precision_at_k=0.4,
        median_lead_time_months=3.0,
        ece=0.01,
        flagged_groups=(),
        months=("2024-06",),
    )
    return dataclasses.replace(base, **changes)


class TestJudge:
    settings = TrainingSettings()

    def test_a_challenger_that_passes_every_check_is_accepted(self) -> None:
        champion = candidate(role="champion", version="1", recall_at_k=0.55)
        assert judge(candidate(), champion, self.settings) == []

    def test_a_tie_with_the_champion_is_enough_but_a_tie_with_the_baseline_is_not(self) -> None:
        assert judge(candidate(), candidate(role="champion", recall_at_k=0.60), self.settings) == []
        (reason,) = judge(candidate(recall_at_k=0.30), None, self.settings)
        assert "does not beat the rule baseline" in reason

    def test_each_failed_check_gives_its_own_reason(self) -> None:
        reasons = judge(
            candidate(recall_at_k=0.50, ece=0.05, flagged_groups=("mountain", "township:532328101")),
            candidate(role="champion", version="1", recall_at_k=0.55),
            self.settings,
        )
        assert len(reasons) == 3
        assert "below the champion's (v1) 0.5500" in reasons[0]
        assert "calibration error 0.0500 is above the limit 0.02" in reasons[1]
        assert "mountain, township:532328101" in reasons[2]

    def test_an_undefined_metric_never_passes(self) -> None:
        assert len(judge(candidate(recall_at_k=math.nan, ece=math.nan), None, self.settings)) == 2

    def test_groups_with_few_positives_are_not_judged(self) -> None:
        table = [
            {"group": "overall", "positives": 300, "recall_at_k": 0.5},
            {"group": "mountain", "positives": 40, "recall_at_k": 0.39},
            {"group": "single_person", "positives": 19, "recall_at_k": 0.1},
            {"group": "elderly_only", "positives": 60, "recall_at_k": 0.41},
        ]
        assert flagged_groups(table, TrainingSettings(subgroup_min_positives=20)) == ("mountain",)


# ----------------------------------------------------------------------------- against a real registry


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> TrainingSettings:
    work_dir = tmp_path_factory.mktemp("promote")
    # A 2,000-household county's groups hold a few dozen positives each; judging them at
    # this size would test the county's luck, so the group check is exercised in TestJudge.
    return TrainingSettings(
        work_dir=work_dir,
        tracking_uri=f"sqlite:///{work_dir / 'mlruns' / 'mlflow.db'}",
        threads=1,
        shap_sample_rows=200,
        subgroup_min_positives=1_000,
    )


@pytest.fixture(scope="module")
def prepared(small_county, settings: TrainingSettings) -> TrainingData:
    return prepare_training_data(load_dataset(small_county.folder), settings, small_county.truth)


def with_shuffled_labels(data: TrainingData, seed: int) -> TrainingData:
    """The same rows, but the training and validation labels permuted: a model that learns nothing."""
    table = data.table.copy()
    learn = table["as_of"].isin(pd.to_datetime([*data.split.train, *data.split.validation])).to_numpy()
    labels = table.loc[learn, "label"].to_numpy()
    table.loc[learn, "label"] = np.random.default_rng(seed).permutation(labels)
    return dataclasses.replace(data, table=table)


@pytest.fixture(scope="module")
def versions(prepared: TrainingData, settings: TrainingSettings) -> dict[str, str]:
    """v1: trained on shuffled labels; v2: trained on the real labels (same months, same data)."""
    tracking = configure_tracking(settings)
    shuffled = train_prepared(with_shuffled_labels(prepared, seed=3), settings, tracking)
    real = train_prepared(prepared, settings, tracking)
    return {"shuffled": shuffled.model_version, "real": real.model_version}


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


def test_promote_makes_a_better_first_model_champion(settings, versions) -> None:
    set_aliases(settings, challenger=versions["real"], champion=None)
    decision = promote(settings)
    assert decision.promoted, decision.reasons
    assert decision.challenger.recall_at_k > decision.challenger.baseline_recall_at_k
    assert champion_version(settings) == versions["real"]


def test_the_champion_keeps_its_title_against_a_worse_challenger(settings, versions) -> None:
    set_aliases(settings, challenger=versions["shuffled"], champion=versions["real"])
    decision = promote(settings)
    assert not decision.promoted
    assert "logged test figures of both runs" in decision.basis
    assert any("below the champion's" in reason for reason in decision.reasons)
    assert champion_version(settings) == versions["real"]


def test_a_challenger_tested_on_other_months_is_compared_after_rescoring_both(
    settings, versions, prepared
) -> None:
    """Same training months, one test month fewer: the two boosters are identical, so after
    re-scoring both on the challenger's months their recall must tie, and a tie keeps the title."""
    split = prepared.split
    shorter = TimeSplit(split.horizon, split.train, split.validation, split.test[1:], split.gap)
    later = dataclasses.replace(prepared, split=shorter)
    challenger = train_prepared(later, settings, configure_tracking(settings))
    set_aliases(settings, challenger=challenger.model_version, champion=versions["real"])
    decision = promote(settings)
    assert "re-scored" in decision.basis
    assert decision.champion is not None
    assert decision.challenger.months == decision.champion.months == ("2023-12", "2024-03", "2024-06")
    assert decision.challenger.recall_at_k == decision.champion.recall_at_k
    assert decision.promoted
    assert champion_version(settings) == challenger.model_version


def test_promote_cannot_judge_without_a_challenger(settings) -> None:
    never_trained = settings.model_copy(update={"model_name": "relapse-risk-never-trained"})
    with pytest.raises(PromotionError, match="no 'challenger'.*run `relapse train` first"):
        promote(never_trained)


def test_promote_refuses_to_judge_the_champion_against_itself(settings, versions) -> None:
    set_aliases(settings, challenger=versions["real"], champion=versions["real"])
    with pytest.raises(PromotionError, match=f"version {versions['real']} already is the champion"):
        promote(settings)
