"""``relapse evaluate``: the metric table (docs/rules-and-labels.md) and the subgroup table for any folder.

Works on folders the model has never seen (another county, another seed, a
lockdown) and without a truth file (the oracle row is then left out). The
as-of months default to the folder's last labelled quarter-ends, the months a
training run on that folder would have tested on.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from relapse_risk.features.contract import format_month, month_index, parse_month
from relapse_risk.features.dataset import Dataset
from relapse_risk.features.errors import RelapseRiskError
from relapse_risk.features.loading import load_dataset
from relapse_risk.features.stages import StageTimes
from relapse_risk.features.training_table import build_training_table, quarter_ends
from relapse_risk.models.baseline import read_truth
from relapse_risk.models.model import RiskModel
from relapse_risk.models.pyfunc import load_risk_model

from .assessment import Assessment, assess
from .config import TrainingSettings
from .split import TrainingDataError
from .subgroups import household_groups
from .tracking import configure_tracking, model_uri, resolve_version
from .truth import find_truth


class UnknownModelError(RelapseRiskError, LookupError):
    """The registry holds no version or alias by the name `relapse evaluate` was given."""


Progress = Callable[[str], None]

STAGE_LABELS = {
    "model": "load the model",
    "load": "load and validate",
    "assessment": "features, scores and metrics of the as-of months",
}
"""Words for the log lines of the stages of :func:`evaluate_folder`."""

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    model: RiskModel
    uri: str
    name: str
    version: str | None
    run_id: str | None
    horizon: int | None
    """The horizon the model was trained for (its run's ``horizon`` parameter), when known."""
    trained_through: str | None = None
    """The latest as-of month whose label the model learned from (its run's parameter), when known."""
    data_fingerprint: str | None = None
    """Fingerprint of the data the model was trained on, when known."""


@dataclass(frozen=True)
class EvaluationReport:
    folder: Path
    model: LoadedModel
    horizon: int
    truth_path: Path | None
    assessment: Assessment
    fingerprint: str

    @property
    def months_learned(self) -> list[str]:
        """Evaluated months whose outcomes the model learned (t < trained_through + H): flattering figures.

        Only on the data the model was trained on (same fingerprint); another folder's months are new to it.
        """
        if self.model.trained_through is None or self.model.data_fingerprint != self.fingerprint:
            return []
        first_unseen = month_index(parse_month(self.model.trained_through)) + self.horizon
        return [format_month(m) for m in self.assessment.months if month_index(m) < first_unseen]

    def to_json_dict(self) -> dict[str, object]:
        return {
            "data_path": str(self.folder),
            "data_fingerprint": self.fingerprint,
            "model_uri": self.model.uri,
            "model_name": self.model.name,
            "model_version": self.model.version,
            "model_run_id": self.model.run_id,
            "horizon": self.horizon,
            "trained_through": self.model.trained_through,
            "months_learned": self.months_learned,
            "truth_path": str(self.truth_path) if self.truth_path else None,
            **self.assessment.to_json_dict(),
        }


def load_registered_model(settings: TrainingSettings, reference: str) -> LoadedModel:
    """Load a model by alias (``champion``), version number or URI from the configured registry."""
    tracking = configure_tracking(settings)
    uri = model_uri(settings.model_name, reference)
    version = resolve_version(tracking.client, settings.model_name, reference)
    if version is None and not (":" in reference or "/" in reference):
        raise UnknownModelError(
            f"{settings.model_name} has no version or alias {reference!r} in the registry at {tracking.uri}; "
            "train one with `relapse train` (and `relapse promote` for champion)"
        )
    horizon = None
    trained_through = fingerprint = None
    if version is not None and version.run_id:
        params = tracking.client.get_run(version.run_id).data.params
        horizon_param = params.get("horizon", "")
        horizon = int(horizon_param) if horizon_param.isdigit() else None
        trained_through = params.get("trained_through") or None
        fingerprint = params.get("data_fingerprint") or None
    # Pin the version the alias named, so a promotion during the job cannot swap models.
    pinned = f"models:/{settings.model_name}/{version.version}" if version is not None else uri
    return LoadedModel(
        model=load_risk_model(pinned),
        uri=uri,
        name=settings.model_name,
        version=str(version.version) if version is not None else None,
        run_id=version.run_id if version is not None else None,
        horizon=horizon,
        trained_through=trained_through,
        data_fingerprint=fingerprint,
    )


def default_months(dataset: Dataset, horizon: int, count: int) -> list[dt.date]:
    """The last ``count`` labelled quarter-ends of the dataset."""
    months = quarter_ends(dataset.policy, horizon)
    if not months:
        raise TrainingDataError(
            f"{dataset.source or 'dataset'}: no quarter-end as-of month has a year of history and a "
            f"complete {horizon}-month label window before data_end {format_month(dataset.policy.data_end)}"
        )
    return months[-count:]


def assess_on_dataset(
    dataset: Dataset,
    model: RiskModel,
    months: Sequence[dt.date],
    horizon: int,
    settings: TrainingSettings,
    truth_path: Path | None = None,
) -> Assessment:
    """Score ``months`` of ``dataset`` with ``model`` and assess against baseline and oracle."""
    table = build_training_table(dataset, months, horizon)
    if table.empty:
        raise TrainingDataError(f"{dataset.source or 'dataset'}: no eligible household at the as-of months")
    visit_share = settings.visit_share if settings.visit_share is not None else dataset.policy.visit_share
    return assess(
        table,
        model.predict_proba(table),
        visit_share=visit_share,
        groups=household_groups(dataset, months),
        truth=read_truth(truth_path) if truth_path is not None else None,
        limits=settings.gate_limits,
    )


def evaluate_folder(
    folder: Path,
    settings: TrainingSettings,
    model_reference: str = "champion",
    truth_path: Path | None = None,
    months: Sequence[dt.date] | None = None,
    progress: Progress | None = None,
) -> EvaluationReport:
    """Evaluate a registered model on a dataset folder (truth: given, else beside the folder, else none)."""
    say = progress or (lambda _message: None)
    times = StageTimes(_log, STAGE_LABELS)
    with times.stage("model"):
        loaded = load_registered_model(settings, model_reference)
    say(f"model {loaded.name} version {loaded.version or '?'} ({loaded.uri})")
    with times.stage("load"):
        dataset = load_dataset(folder)
    horizon = loaded.horizon or settings.horizon
    chosen = list(months) if months else default_months(dataset, horizon, settings.test_months)
    truth_path = truth_path if truth_path is not None else find_truth(folder)
    say(
        f"as-of months {', '.join(format_month(m) for m in chosen)}, horizon {horizon}, "
        f"truth {truth_path or 'none (oracle omitted)'}"
    )
    with times.stage("assessment"):
        assessment = assess_on_dataset(dataset, loaded.model, chosen, horizon, settings, truth_path)
    return EvaluationReport(Path(folder), loaded, horizon, truth_path, assessment, dataset.fingerprint)


def write_report(report: EvaluationReport, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_json_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
