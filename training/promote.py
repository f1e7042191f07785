"""``relapse promote``: move the ``champion`` alias to the challenger only when it earns it.

Promotion judges the challenger's *backtest*, the figures its training run
measured on test months its procedure never saw (training/train.py), and asks
whether deploying it would leave any household group worse off:

1. it beats the rule baseline on mean recall@k (strictly: a model that only ties
   the thresholds staff already use is not worth deploying);
2. it is calibrated: the mean over test months of the expected calibration
   error after each month's level is set right (``ece_after_level_shift`` of
   :func:`training.assessment.calibration_by_month`) is at most ``max_ece``.
   The level itself, the county's outcome rate over the mean score, moves with
   shocks and trends for every model alike; the refit re-estimates it on the
   latest months, so it is printed per month and not judged. On a generated
   lockdown county the backtest model's raw ECE was 0.054 (observed/predicted
   0.38 at the worst month) while its shape error was 0.012;
3. the fairness gate (training/subgroups.py): no group whose recall@k is below
   the rule baseline's in that group, and no group whose calibration differs
   from the county's beyond ``group_calibration_tolerance``, each judged on
   evidence (a one-sided test at ``gate_alpha`` shared by every group), so a small
   group is not refused for noise;
4. against the current champion, on the same months: no group (the county as a
   whole included) falls by more than noise.

Parity, a group's recall over the county's, is printed for the model, the
baseline and the oracle, and logged, but never refuses by itself: some groups
are harder to foresee for every method. On the default generated county the
oracle itself reaches only 0.79x the overall recall@k for single-person
households, so a parity rule would refuse a perfect ranking.

"Same months" for the champion comparison:

- when both runs tested on the same months of the same data (equal
  fingerprint), their logged rankings are paired household by household;
- otherwise both are re-scored on the challenger's test months that the
  champion has not learned from (t >= its ``trained_through`` + H): the
  champion that serves was refit on every labelled month of its data, so
  months it learned from would flatter it. The challenger is re-scored with its
  backtest model. When no such month exists yet (its data gained less than a
  horizon), the comparison is skipped and the basis says so.

There is no ``--force``: overriding the gate is a decision someone should own
in the registry itself (setting the alias by hand there is recorded), not a
flag that makes the checks decorative.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from relapse_risk.features.contract import month_index, parse_month
from relapse_risk.features.errors import RelapseRiskError
from relapse_risk.features.loading import load_dataset
from relapse_risk.models.metrics import BASELINE
from relapse_risk.models.model import RiskModel
from relapse_risk.models.pyfunc import load_risk_model

from .assessment import MODEL, Assessment, AssessmentJson, calibration_by_month
from .config import TrainingSettings
from .evaluate import assess_on_dataset
from .subgroups import champion_table, subgroup_table
from .tracking import CHALLENGER, CHAMPION, Tracking, configure_tracking, version_by_alias
from .train import BACKTEST_MODEL_DIR, BACKTEST_RANKING_FILE, EVALUATION_FILE
from .truth import find_truth

Progress = Callable[[str], None]


class PromotionError(RelapseRiskError, RuntimeError):
    """Promotion cannot even be judged (no challenger, missing data to compare on)."""


@dataclass(frozen=True, eq=False)
class Candidate:
    """What promotion needs to know about one registered version, on the compared months."""

    role: str
    version: str
    recall_at_k: float
    baseline_recall_at_k: float
    precision_at_k: float
    median_lead_time_months: float
    ece: float
    months: tuple[str, ...]
    gate: pd.DataFrame
    """:func:`training.subgroups.subgroup_table` under the promotion's limits."""
    ranking: pd.DataFrame
    """The ranked rows with their group facts (:meth:`Assessment.ranking_with_groups`)."""
    calibration: pd.DataFrame
    """:func:`training.assessment.calibration_by_month` of the ranking."""
    trained_through: str | None = None

    @property
    def ece_after_level_shift(self) -> float:
        return float(self.calibration["ece_after_level_shift"].mean())

    @property
    def flagged_groups(self) -> tuple[str, ...]:
        return tuple(self.gate.loc[self.gate["flagged"], "group"])


@dataclass(frozen=True, eq=False)
class PromotionDecision:
    promoted: bool
    challenger: Candidate
    champion: Candidate | None
    basis: str
    versus_champion: pd.DataFrame | None = None
    """:func:`training.subgroups.champion_table` on the compared months, when a champion was compared."""
    reasons: list[str] = field(default_factory=list)
    """Why the challenger was refused; empty when promoted."""

    def comparison(self) -> pd.DataFrame:
        """Challenger, champion and rule baseline side by side on the compared months."""
        rows = []
        for candidate in (self.challenger, self.champion):
            if candidate is None:
                continue
            rows.append(
                {
                    "who": f"{candidate.role} (v{candidate.version})",
                    "months": ", ".join(candidate.months),
                    "recall_at_k": candidate.recall_at_k,
                    "precision_at_k": candidate.precision_at_k,
                    "median_lead_time_months": candidate.median_lead_time_months,
                    "ece": candidate.ece,
                    "ece_after_level_shift": candidate.ece_after_level_shift,
                    "observed_over_predicted": ", ".join(
                        f"{ratio:.2f}" for ratio in candidate.calibration["observed_over_predicted"]
                    ),
                    "flagged_groups": ", ".join(candidate.flagged_groups) or "none",
                }
            )
        rows.append(
            {
                "who": "rule baseline",
                "months": ", ".join(self.challenger.months),
                "recall_at_k": self.challenger.baseline_recall_at_k,
                "precision_at_k": math.nan,
                "median_lead_time_months": math.nan,
                "ece": math.nan,
                "ece_after_level_shift": math.nan,
                "observed_over_predicted": "",
                "flagged_groups": "",
            }
        )
        return pd.DataFrame(rows)


def _mean(averaged: list[dict[str, object]], method: str, metric: str) -> float:
    for row in averaged:
        if row["method"] == method:
            value = row.get(metric)
            if value is None:
                return math.nan
            if isinstance(value, int | float | str):  # a JSON number (or its text)
                return float(value)
            raise TypeError(f"{metric} of {method} is {type(value).__name__}, not a number")
    return math.nan


RANKED_COLUMNS = frozenset({"label", "lead_time_months", "risk_score", "k"})
"""Columns of a ranking that are not group facts (besides ``rank_*`` and ``in_top_k_*``)."""


def _group_facts(ranking: pd.DataFrame) -> pd.DataFrame:
    """The group columns of a ranking with groups, keyed by household and month."""
    return ranking[
        [c for c in ranking.columns if c not in RANKED_COLUMNS and not c.startswith(("rank_", "in_top_k_"))]
    ]


def _ranked_only(ranking: pd.DataFrame) -> pd.DataFrame:
    facts = set(_group_facts(ranking).columns) - {"household_id", "as_of"}
    return ranking[[c for c in ranking.columns if c not in facts]]


def candidate_from_evaluation(
    role: str,
    version: str,
    evaluation: LoggedEvaluation,
    ranking: pd.DataFrame,
    settings: TrainingSettings,
) -> Candidate:
    """A candidate from a run's logged evaluation and ranking; the gate is recomputed under ``settings``.

    Recomputed rather than read from the run, so the promotion's limits decide, not the ones
    training happened to use.
    """
    averaged = evaluation["averaged"]
    return Candidate(
        role=role,
        version=version,
        recall_at_k=_mean(averaged, MODEL, "recall_at_k"),
        baseline_recall_at_k=_mean(averaged, BASELINE, "recall_at_k"),
        precision_at_k=_mean(averaged, MODEL, "precision_at_k"),
        median_lead_time_months=_mean(averaged, MODEL, "median_lead_time_months"),
        ece=_mean(averaged, MODEL, "ece"),
        months=tuple(evaluation.get("months", ())),
        gate=subgroup_table(_ranked_only(ranking), _group_facts(ranking), settings.gate_limits),
        ranking=ranking,
        calibration=calibration_by_month(ranking),
        trained_through=evaluation.get("trained_through"),
    )


def candidate_from_assessment(
    role: str, version: str, assessment: Assessment, settings: TrainingSettings, trained_through: str | None
) -> Candidate:
    evaluation: LoggedEvaluation = {**assessment.to_json_dict(), "trained_through": trained_through}
    return candidate_from_evaluation(role, version, evaluation, assessment.ranking_with_groups(), settings)


class LoggedEvaluation(AssessmentJson, total=False):
    """What promotion reads of an evaluation: a training run's ``evaluation.json`` (train.py writes it).

    The assessment's keys are always there; the run's facts are where the evaluation came from a
    training run (``trained_through`` also for an assessment made here).
    """

    trained_through: str | None
    horizon: int
    data_path: str
    data_fingerprint: str


@dataclass(frozen=True)
class LoggedRun:
    """What a version's training run logged for promotion: its evaluation and its test ranking."""

    evaluation: LoggedEvaluation
    ranking: pd.DataFrame
    run_id: str


def logged_run(tracking: Tracking, version: ModelVersion) -> LoggedRun:
    """The ``evaluation.json`` and ``backtest_ranking.parquet`` the training run of ``version`` logged."""
    if not version.run_id:
        raise PromotionError(f"version {version.version} has no training run to read its evaluation from")
    files = {}
    for name in (EVALUATION_FILE, BACKTEST_RANKING_FILE):
        try:
            files[name] = mlflow.artifacts.download_artifacts(
                run_id=version.run_id, artifact_path=name, tracking_uri=tracking.uri
            )
        except (OSError, MlflowException) as exc:
            raise PromotionError(
                f"version {version.version} (run {version.run_id}) has no {name}: it was trained before "
                f"promotion could judge it group by group; retrain it with `relapse train` ({exc})"
            ) from None
    evaluation: LoggedEvaluation = json.loads(Path(files[EVALUATION_FILE]).read_text(encoding="utf-8"))
    return LoggedRun(evaluation, pd.read_parquet(files[BACKTEST_RANKING_FILE]), version.run_id)


def judge(
    challenger: Candidate,
    settings: TrainingSettings,
    versus_champion: pd.DataFrame | None = None,
    champion_version: str | None = None,
) -> list[str]:
    """Reasons to refuse the challenger (empty: promote). Pure: the rules of the module docstring."""
    reasons = []
    if not challenger.recall_at_k > challenger.baseline_recall_at_k:
        reasons.append(
            f"mean recall@k {challenger.recall_at_k:.4f} does not beat the rule baseline's "
            f"{challenger.baseline_recall_at_k:.4f} on the same months"
        )
    if not challenger.ece_after_level_shift <= settings.max_ece:
        reasons.append(
            "expected calibration error after each month's level shift "
            f"{challenger.ece_after_level_shift:.4f} is above the limit {settings.max_ece}"
        )
    gate = challenger.gate
    for row in gate[gate["below_baseline"]].to_dict(orient="records"):
        reasons.append(
            f"{row['group']}: recall@k {row['recall_at_k']:.3f} is below the rule baseline's "
            f"{row['baseline_recall_at_k']:.3f} in that group ({row['positives']} positives, "
            f"p = {row['below_baseline_p']:.2g}): the model would leave it worse off than today's practice"
        )
    for row in gate[gate["miscalibrated"]].to_dict(orient="records"):
        reasons.append(
            f"{row['group']}: observed rate {row['observed_rate']:.4f} against predicted "
            f"{row['predicted_rate']:.4f}, {row['calibration_ratio']:.2f}x the county's ratio, beyond the "
            f"tolerance of {1 + settings.group_calibration_tolerance:g}x (p = {row['miscalibrated_p']:.2g})"
        )
    if versus_champion is not None:
        for row in versus_champion[versus_champion["fell"]].to_dict(orient="records"):
            reasons.append(
                f"{row['group']}: recall@k {row['recall_at_k']:.3f} fell from the champion's "
                f"(v{champion_version}) {row['champion_recall_at_k']:.3f} on the same months, beyond noise "
                f"(p = {row['fell_p']:.2g})"
            )
    return reasons


def promote(
    settings: TrainingSettings, data: Path | None = None, progress: Progress | None = None
) -> PromotionDecision:
    """Judge the challenger and move ``champion`` to it when every check passes.

    Raises :class:`PromotionError` when there is no challenger, the challenger already
    is the champion, or the runs lack what they need to be compared.
    """
    say = progress or (lambda _message: None)
    tracking = configure_tracking(settings)
    challenger_version = version_by_alias(tracking.client, settings.model_name, CHALLENGER)
    if challenger_version is None:
        raise PromotionError(
            f"{settings.model_name} has no '{CHALLENGER}' in the registry at {tracking.uri}; "
            "run `relapse train` first"
        )
    champion_version = version_by_alias(tracking.client, settings.model_name, CHAMPION)
    if champion_version is not None and champion_version.version == challenger_version.version:
        raise PromotionError(f"version {challenger_version.version} already is the {CHAMPION}")

    ours = logged_run(tracking, challenger_version)
    challenger = candidate_from_evaluation(
        CHALLENGER, str(challenger_version.version), ours.evaluation, ours.ranking, settings
    )
    champion: Candidate | None = None
    versus: pd.DataFrame | None = None
    basis = f"the challenger's backtest, test months {', '.join(challenger.months)}"
    if champion_version is not None:
        theirs = logged_run(tracking, champion_version)
        same_months = theirs.evaluation.get("months") == ours.evaluation.get("months")
        same_data = theirs.evaluation.get("data_fingerprint") == ours.evaluation.get("data_fingerprint")
        if same_months and same_data:
            champion = candidate_from_evaluation(
                CHAMPION, str(champion_version.version), theirs.evaluation, theirs.ranking, settings
            )
            versus = champion_table(
                challenger.ranking, champion.ranking, _group_facts(challenger.ranking), settings.gate_limits
            )
            basis = (
                f"both runs' backtests, paired household by household: same months "
                f"({', '.join(challenger.months)}) and same data fingerprint"
            )
        else:
            compared = _rescore_both(
                tracking, settings, challenger_version, champion_version, ours, theirs, data, say
            )
            if compared is None:
                basis += (
                    f"; the champion (v{champion_version.version}, trained through "
                    f"{theirs.evaluation.get('trained_through')}) has learned the outcomes of every one of "
                    "them, so it is not compared: the gate judges the challenger against the rule baseline"
                )
            else:
                rescored, champion, basis = compared
                versus = champion_table(
                    rescored.ranking, champion.ranking, _group_facts(rescored.ranking), settings.gate_limits
                )

    reasons = judge(challenger, settings, versus, champion.version if champion is not None else None)
    if not reasons:
        tracking.client.set_registered_model_alias(settings.model_name, CHAMPION, challenger.version)
        if champion_version is not None:
            tracking.client.set_model_version_tag(
                settings.model_name, challenger.version, "replaced_champion", str(champion_version.version)
            )
        say(f"{CHAMPION} -> version {challenger.version}")
    return PromotionDecision(not reasons, challenger, champion, basis, versus, reasons)


def comparable_months(
    test_months: list[str], champion_trained_through: str | None, horizon: int
) -> list[str]:
    """The test months whose outcomes the champion never learned: t >= trained_through + H."""
    if not champion_trained_through:
        return []
    first = month_index(parse_month(champion_trained_through)) + horizon
    return [m for m in test_months if month_index(parse_month(m)) >= first]


def _rescore_both(
    tracking: Tracking,
    settings: TrainingSettings,
    challenger_version: ModelVersion,
    champion_version: ModelVersion,
    ours: LoggedRun,
    theirs: LoggedRun,
    data: Path | None,
    say: Progress,
) -> tuple[Candidate, Candidate, str] | None:
    """Both models re-scored on the challenger's months the champion has not learned; None when none."""
    horizon = int(ours.evaluation.get("horizon") or settings.horizon)
    months = comparable_months(
        list(ours.evaluation["months"]),
        theirs.evaluation.get("trained_through"),
        horizon,
    )
    if not months:
        return None
    logged_path = str(ours.evaluation.get("data_path") or "")
    folder = data if data is not None else (Path(logged_path) if logged_path else None)
    if folder is None or not folder.is_dir():
        raise PromotionError(
            "the champion was tested on other months or data than the challenger, and the challenger's "
            f"dataset folder {folder or '(not recorded)'} is not available to re-score both; pass --data"
        )
    say(f"re-scoring challenger and champion on {folder}, months {', '.join(months)}")
    dataset = load_dataset(folder)
    truth_path = find_truth(folder)
    mlflow.set_tracking_uri(tracking.uri)
    backtest_folder = mlflow.artifacts.download_artifacts(
        run_id=ours.run_id, artifact_path=BACKTEST_MODEL_DIR, tracking_uri=tracking.uri
    )
    models = {
        CHALLENGER: RiskModel.load(backtest_folder),
        CHAMPION: load_risk_model(f"models:/{settings.model_name}/{champion_version.version}"),
    }
    versions = {CHALLENGER: challenger_version, CHAMPION: champion_version}
    assessed = {}
    for role, model in models.items():
        assessment: Assessment = assess_on_dataset(
            dataset, model, [parse_month(m) for m in months], horizon, settings, truth_path
        )
        trained_through = (ours if role == CHALLENGER else theirs).evaluation.get("trained_through")
        assessed[role] = candidate_from_assessment(
            role,
            str(versions[role].version),
            assessment,
            settings,
            trained_through,
        )
    basis = (
        f"both re-scored on {folder} (fingerprint {dataset.fingerprint[:12]}), the challenger's test months "
        f"the champion has not learned from ({', '.join(months)}): the challenger's backtest model against "
        f"the champion (v{champion_version.version}, trained through "
        f"{theirs.evaluation.get('trained_through')})"
    )
    return assessed[CHALLENGER], assessed[CHAMPION], basis
