"""``relapse promote``: move the ``champion`` alias to the challenger only when it earns it.

The challenger must, on the same test months,

1. beat the rule baseline on mean recall@k (strictly: a model that only ties
   the thresholds staff already use is not worth deploying),
2. do at least as well as the current champion on mean recall@k (when there is one),
3. be calibrated: mean expected calibration error at most ``max_ece``,
4. leave no household group behind: no subgroup with enough positives to judge
   (``subgroup_min_positives``) whose recall@k is below ``subgroup_recall_ratio``
   x the overall.

"Same test months": when the champion was tested on the same months of the
same data (equal fingerprint), the figures both runs logged are compared.
Otherwise both models are re-scored on the challenger's test months of the
challenger's dataset (or ``--data``): after new months arrive, the champion's
training months all end before the challenger's test months, so that
comparison is fair to both.

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
from relapse_risk.features.contract import format_month, parse_month
from relapse_risk.features.loading import load_dataset
from relapse_risk.models.metrics import BASELINE
from relapse_risk.models.pyfunc import load_risk_model

from .assessment import MODEL, Assessment
from .config import TrainingSettings
from .evaluate import assess_on_dataset
from .tracking import CHALLENGER, CHAMPION, Tracking, configure_tracking, version_by_alias
from .train import EVALUATION_FILE
from .truth import find_truth

Progress = Callable[[str], None]


class PromotionError(RuntimeError):
    """Promotion cannot even be judged (no challenger, missing data to compare on)."""


@dataclass(frozen=True)
class Candidate:
    """What promotion needs to know about one registered version, on the compared months."""

    role: str
    version: str
    recall_at_k: float
    baseline_recall_at_k: float
    precision_at_k: float
    median_lead_time_months: float
    ece: float
    flagged_groups: tuple[str, ...]
    months: tuple[str, ...]


@dataclass(frozen=True)
class PromotionDecision:
    promoted: bool
    challenger: Candidate
    champion: Candidate | None
    basis: str
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
                    "recall_at_k": candidate.recall_at_k,
                    "precision_at_k": candidate.precision_at_k,
                    "median_lead_time_months": candidate.median_lead_time_months,
                    "ece": candidate.ece,
                    "flagged_groups": ", ".join(candidate.flagged_groups) or "none",
                }
            )
        rows.append(
            {
                "who": "rule baseline",
                "recall_at_k": self.challenger.baseline_recall_at_k,
                "precision_at_k": math.nan,
                "median_lead_time_months": math.nan,
                "ece": math.nan,
                "flagged_groups": "",
            }
        )
        return pd.DataFrame(rows)


def _mean(averaged: list[dict[str, object]], method: str, metric: str) -> float:
    for row in averaged:
        if row["method"] == method:
            value = row.get(metric)
            return float(value) if value is not None else math.nan  # type: ignore[arg-type]
    return math.nan


def flagged_groups(subgroups: list[dict[str, object]], settings: TrainingSettings) -> tuple[str, ...]:
    """Groups judged (enough positives) whose recall@k is below the settings' share of the overall.

    Recomputed from the subgroup table rather than read from the run, so the promotion
    settings, not the ones training happened to use, decide.
    """
    overall = next((row for row in subgroups if row["group"] == "overall"), None)
    if overall is None or overall.get("recall_at_k") is None:
        return ()
    limit = settings.subgroup_recall_ratio * float(overall["recall_at_k"])  # type: ignore[arg-type]
    return tuple(
        str(row["group"])
        for row in subgroups
        if row["group"] != "overall"
        and int(row["positives"]) >= settings.subgroup_min_positives  # type: ignore[call-overload]
        and row.get("recall_at_k") is not None
        and float(row["recall_at_k"]) < limit  # type: ignore[arg-type]
    )


def candidate_from_evaluation(
    role: str, version: str, evaluation: dict[str, object], settings: TrainingSettings
) -> Candidate:
    averaged = evaluation["averaged"]  # type: ignore[assignment]
    return Candidate(
        role=role,
        version=version,
        recall_at_k=_mean(averaged, MODEL, "recall_at_k"),  # type: ignore[arg-type]
        baseline_recall_at_k=_mean(averaged, BASELINE, "recall_at_k"),  # type: ignore[arg-type]
        precision_at_k=_mean(averaged, MODEL, "precision_at_k"),  # type: ignore[arg-type]
        median_lead_time_months=_mean(averaged, MODEL, "median_lead_time_months"),  # type: ignore[arg-type]
        ece=_mean(averaged, MODEL, "ece"),  # type: ignore[arg-type]
        flagged_groups=flagged_groups(evaluation.get("subgroups", []), settings),  # type: ignore[arg-type]
        months=tuple(evaluation.get("months", ())),  # type: ignore[arg-type]
    )


def candidate_from_assessment(
    role: str, version: str, assessment: Assessment, settings: TrainingSettings
) -> Candidate:
    return candidate_from_evaluation(role, version, assessment.to_json_dict(), settings)


def logged_evaluation(tracking: Tracking, version: ModelVersion) -> dict[str, object]:
    """The ``evaluation.json`` the training run of ``version`` logged."""
    if not version.run_id:
        raise PromotionError(f"version {version.version} has no training run to read its evaluation from")
    path = mlflow.artifacts.download_artifacts(
        run_id=version.run_id, artifact_path=EVALUATION_FILE, tracking_uri=tracking.uri
    )
    return json.loads(Path(path).read_text(encoding="utf-8"))


def judge(challenger: Candidate, champion: Candidate | None, settings: TrainingSettings) -> list[str]:
    """Reasons to refuse the challenger (empty: promote). Pure: the rules of the module docstring."""
    reasons = []
    if not challenger.recall_at_k > challenger.baseline_recall_at_k:
        reasons.append(
            f"mean recall@k {challenger.recall_at_k:.4f} does not beat the rule baseline's "
            f"{challenger.baseline_recall_at_k:.4f} on the same months"
        )
    if champion is not None and not challenger.recall_at_k >= champion.recall_at_k:
        reasons.append(
            f"mean recall@k {challenger.recall_at_k:.4f} is below the champion's "
            f"(v{champion.version}) {champion.recall_at_k:.4f} on the same months"
        )
    if not challenger.ece <= settings.max_ece:
        reasons.append(
            f"expected calibration error {challenger.ece:.4f} is above the limit {settings.max_ece}"
        )
    if challenger.flagged_groups:
        reasons.append(
            f"recall@k below {settings.subgroup_recall_ratio}x the overall for: "
            + ", ".join(challenger.flagged_groups)
            + f" (groups with fewer than {settings.subgroup_min_positives} positives are not judged)"
        )
    return reasons


def promote(
    settings: TrainingSettings, data: Path | None = None, progress: Progress | None = None
) -> PromotionDecision:
    """Judge the challenger and move ``champion`` to it when every check passes.

    Raises :class:`PromotionError` when there is no challenger, the challenger already
    is the champion, or the models cannot be compared on the same months.
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

    challenger_logged = logged_evaluation(tracking, challenger_version)
    challenger = candidate_from_evaluation(
        CHALLENGER, str(challenger_version.version), challenger_logged, settings
    )
    champion = None
    basis = f"challenger's logged test months {', '.join(challenger.months)}"
    if champion_version is not None:
        champion_logged = logged_evaluation(tracking, champion_version)
        same_months = champion_logged.get("months") == challenger_logged.get("months")
        same_data = champion_logged.get("data_fingerprint") == challenger_logged.get("data_fingerprint")
        if same_months and same_data:
            champion = candidate_from_evaluation(
                CHAMPION, str(champion_version.version), champion_logged, settings
            )
            basis = (
                f"logged test figures of both runs: same months ({', '.join(challenger.months)}) "
                "and same data fingerprint"
            )
        else:
            challenger, champion, basis = _rescore_both(
                tracking, settings, challenger_version, champion_version, challenger_logged, data, say
            )

    reasons = judge(challenger, champion, settings)
    if not reasons:
        tracking.client.set_registered_model_alias(settings.model_name, CHAMPION, challenger.version)
        if champion is not None:
            tracking.client.set_model_version_tag(
                settings.model_name, challenger.version, "replaced_champion", champion.version
            )
        say(f"{CHAMPION} -> version {challenger.version}")
    return PromotionDecision(not reasons, challenger, champion, basis, reasons)


def _rescore_both(
    tracking: Tracking,
    settings: TrainingSettings,
    challenger_version: ModelVersion,
    champion_version: ModelVersion,
    challenger_logged: dict[str, object],
    data: Path | None,
    say: Progress,
) -> tuple[Candidate, Candidate, str]:
    logged_path = str(challenger_logged.get("data_path") or "")
    folder = data if data is not None else (Path(logged_path) if logged_path else None)
    if folder is None or not folder.is_dir():
        raise PromotionError(
            "the champion was tested on other months or data than the challenger, and the challenger's "
            f"dataset folder {folder or '(not recorded)'} is not available to re-score both; pass --data"
        )
    months = [parse_month(m) for m in challenger_logged["months"]]  # type: ignore[union-attr]
    horizon = int(challenger_logged.get("horizon") or settings.horizon)  # type: ignore[arg-type]
    listed = ", ".join(format_month(m) for m in months)
    say(f"re-scoring challenger and champion on {folder}, months {listed}")
    dataset = load_dataset(folder)
    truth_path = find_truth(folder)
    mlflow.set_tracking_uri(tracking.uri)
    assessed = {}
    for role, version in ((CHALLENGER, challenger_version), (CHAMPION, champion_version)):
        model = load_risk_model(f"models:/{settings.model_name}/{version.version}")
        assessment = assess_on_dataset(dataset, model, months, horizon, settings, truth_path)
        assessed[role] = candidate_from_assessment(role, str(version.version), assessment, settings)
    basis = (
        f"both models re-scored on {folder} (fingerprint {dataset.fingerprint[:12]}), "
        f"the challenger's test months {', '.join(format_month(m) for m in months)}"
    )
    return assessed[CHALLENGER], assessed[CHAMPION], basis
