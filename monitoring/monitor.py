"""``relapse monitor``: read both sides, run every check, write the report, log to MLflow."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from relapse_risk.features.contract import format_month
from relapse_risk.features.errors import ExitCode
from relapse_risk.features.stages import StageTimes
from relapse_risk.models.model import RiskModel
from relapse_risk.models.pyfunc import load_model_reference
from relapse_risk.models.registry import (
    REGISTRY_MODEL_NAME,
    ModelNotRegistered,
    registered_version,
    resolve_tracking_uri,
)

from .checks import Check, overall_status
from .config import DEFAULT_THRESHOLDS, MonitorThresholds
from .drift import feature_drift, feature_drift_check, prediction_drift_checks
from .early_warning import ScoredSide, early_warning_check, with_first_reasons
from .inputs import MonitorInputError, MonitorSide, OpenInputs, read_side
from .performance import ExpectedPerformance, performance_by_month, performance_checks
from .quality import scenario_checks
from .report import Summary, evidently_frames, evidently_html, finite, summary_document, write_report

REGISTERED_MODEL = REGISTRY_MODEL_NAME
EXPERIMENT = "relapse-risk"
EXIT_CODES = {"ok": ExitCode.DONE, "warning": ExitCode.DONE, "alert": ExitCode.ALERT}
"""A warning is for the report reader; only an alert changes what a scheduled job does next."""
FAILED = ExitCode.CANNOT_RUN
MONITOR_ANOTHER_MODEL = "monitor with the {label}: --model {spec}"
"""How ``ModelNotRegistered.line`` tells a monitoring user to pick the model the registry does hold."""

STAGE_LABELS = {
    "model": "load the model",
    "checks": "drift and scenario checks",
    "performance": "matured performance",
    "evidently": "Evidently report",
    "report": "write report.html",
    "mlflow": "log to MLflow",
}
"""Words for the log lines of the stages whose names are short keys of ``summary.json``."""

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MonitorOptions:
    reference: str
    current: str
    out: Path
    model: str = ""
    """Alias (champion), version number, models:/ or runs:/ URI, model folder; "" tries the
    champion and goes on without a model when there is none; "none" skips the model."""
    tracking_uri: str | None = None
    horizon: int = 6
    log_to_mlflow: bool = True
    evidently: bool = True
    thresholds: MonitorThresholds = DEFAULT_THRESHOLDS


@dataclass
class MonitorResult:
    status: str
    checks: list[Check]
    summary: Summary
    out: Path
    mlflow_run_id: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    stages: StageTimes = field(default_factory=StageTimes)
    """Wall and CPU seconds of each finer stage (load, county facts, features, ... per side)."""

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI``, else the SQLite store training writes under ./mlruns."""
    return resolve_tracking_uri(None, Path.cwd())


def model_uri(reference: str) -> str:
    if reference.isdigit():
        return f"models:/{REGISTERED_MODEL}/{reference}"
    if ":" in reference or "/" in reference or Path(reference).is_dir():
        return reference
    return f"models:/{REGISTERED_MODEL}@{reference}"


def load_model(
    options: MonitorOptions, tracking_uri: str
) -> tuple[RiskModel | None, ExpectedPerformance, str]:
    """The model, its test metrics from its training run, and a note for the summary."""
    if options.model == "none":
        return None, ExpectedPerformance(), "no model requested: prediction drift and performance skipped"
    uri = model_uri(options.model or "champion")
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        if uri.startswith("models:/"):
            # The registry says plainly when nothing is there, and which model is; loading would
            # only say that some resource does not exist.
            registered_version(uri, tracking_uri)
        model = load_model_reference(uri)
    except ModelNotRegistered as exc:
        if options.model:
            raise
        return (
            None,
            ExpectedPerformance(),
            f"{exc.line(MONITOR_ANOTHER_MODEL)}: prediction drift and performance skipped",
        )
    except Exception as exc:  # noqa: BLE001 - any failure to load means "no model" when none was named
        if options.model:
            raise MonitorInputError(f"cannot load model {uri}: {exc}") from exc
        return (
            None,
            ExpectedPerformance(),
            (f"no model at {uri} ({type(exc).__name__}): prediction drift and performance skipped"),
        )
    return model, expected_performance(uri, tracking_uri), f"model {uri}"


def expected_performance(uri: str, tracking_uri: str) -> ExpectedPerformance:
    """The averaged test metrics training logged for a registered model's run (``model.*``)."""
    if not uri.startswith("models:/"):
        return ExpectedPerformance()
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    name_and_ref = uri.removeprefix("models:/")
    try:
        if "@" in name_and_ref:
            name, alias = name_and_ref.split("@", 1)
            version = client.get_model_version_by_alias(name, alias)
        else:
            name, number = name_and_ref.split("/", 1)
            version = client.get_model_version(name, number)
        metrics = client.get_run(version.run_id).data.metrics if version.run_id else {}
    except Exception:  # noqa: BLE001 - a missing run only means the comparison has no baseline
        return ExpectedPerformance()
    return ExpectedPerformance(
        recall_at_k=metrics.get("model.recall_at_k"),
        precision_at_k=metrics.get("model.precision_at_k"),
        ece=metrics.get("model.ece"),
    )


def run_monitor(options: MonitorOptions, progress: Callable[[str], None] = lambda _: None) -> MonitorResult:
    """Every check of ``options.current`` against ``options.reference``; writes OUT/summary.json and
    OUT/report.html. Raises ValueError (or MonitorInputError) when a side or the model cannot be used.

    County checks aggregate every row. Feature drift, prediction drift and matured performance
    use the households of a seeded sample of villages when a side holds more than
    ``thresholds.max_rows_per_side`` households (see :mod:`.sampling`); ``summary.json``
    says, under ``sampling``, what was sampled and how many.
    """
    with OpenInputs() as inputs:  # the sampled tables live until the run is written
        return _run_monitor(options, progress, inputs)


def _run_monitor(
    options: MonitorOptions, progress: Callable[[str], None], inputs: OpenInputs
) -> MonitorResult:
    thresholds = options.thresholds
    seconds: dict[str, float] = {}
    times = StageTimes(_log, STAGE_LABELS)
    clock = time.perf_counter()
    tracking_uri = options.tracking_uri or default_tracking_uri()
    with times.stage("model"):
        model, expected, model_note = load_model(options, tracking_uri)
    notes = [model_note]

    # One seed for both sides: a county compared with its own past keeps the same villages.
    sides = {}
    for name, spec in (("reference", options.reference), ("current", options.current)):
        progress(f"reading the {name} side")
        sides[name] = read_side(
            spec,
            model,
            thresholds.max_rows_per_side,
            thresholds.seed,
            inputs,
            times=times,
            name=name,
        )
    reference, current = sides["reference"], sides["current"]
    notes += [f"{name}: {side.note}" for name, side in sides.items() if side.note]
    seconds["read"] = time.perf_counter() - clock

    checks: list[Check] = []
    drift = None
    with times.stage("checks"):
        if reference.features is not None and current.features is not None:
            drift = feature_drift(reference.features, current.features, thresholds.column_drift_distance)
            checks.append(feature_drift_check(drift, thresholds))
        else:
            notes.append("feature drift not measured: a side has no features")
        if reference.facts is not None and current.facts is not None:
            checks += scenario_checks(reference.facts, current.facts, thresholds)
        else:
            notes.append(
                "county checks (outage, income unit, migrants, line, mix, rejects) need two dataset folders"
            )
        if reference.scores is not None and current.scores is not None:
            checks += prediction_drift_checks(reference.scores, current.scores, thresholds)
            checks.append(_early_warning(reference, current, model, options.horizon, thresholds, times))
    seconds["checks"] = time.perf_counter() - clock - sum(seconds.values())

    performance = None
    if model is not None and current.sampled is not None:
        progress("scoring matured months against what the rules showed")
        with times.stage("performance"):
            performance = performance_by_month(current.sampled, model, options.horizon)
        if performance.empty:
            notes.append(
                f"performance not measured: no quarter-end of the current data has {options.horizon} "
                "months after it"
            )
        checks += performance_checks(performance, expected, thresholds)
        seconds["performance"] = time.perf_counter() - clock - sum(seconds.values())

    status = overall_status(checks)
    options.out.mkdir(parents=True, exist_ok=True)
    summary = summary_document(
        status,
        checks,
        {"reference": _describe(reference), "current": _describe(current)},
        performance,
        notes,
        sampling_summary(thresholds, sides),
    )
    evidently_file = None
    if options.evidently:
        progress("rendering the Evidently report")
        with times.stage("evidently"):
            columns = drift.top(thresholds.evidently_columns) if drift is not None else []
            frames = evidently_frames(
                reference.features, current.features, reference.scores, current.scores, columns
            )
            if frames is not None:
                evidently_file = options.out / "evidently.html"
                evidently_html(*frames, evidently_file, thresholds.column_drift_distance)
        seconds["evidently"] = time.perf_counter() - clock - sum(seconds.values())
    seconds["total"] = time.perf_counter() - clock
    summary["seconds"] = {k: round(v, 2) for k, v in seconds.items()}
    summary["stages"] = times.rounded()
    summary_path = options.out / "summary.json"
    summary_path.write_text(
        json.dumps(finite(summary), indent=2, ensure_ascii=False, allow_nan=False), encoding="utf-8"
    )
    report_path = options.out / "report.html"
    with times.stage("report"):
        write_report(summary, evidently_file, report_path)
        if evidently_file is not None:
            evidently_file.unlink()  # folded into report.html

    run_id = None
    if options.log_to_mlflow:
        try:
            with times.stage("mlflow"):
                run_id = log_to_mlflow(summary, checks, report_path, summary_path, tracking_uri)
        except (MlflowException, OSError) as exc:
            # The report stands on its own; an unreachable store must not hide an alert.
            summary["notes"].append(f"not logged to MLflow at {tracking_uri}: {exc}")
            summary_path.write_text(
                json.dumps(finite(summary), indent=2, ensure_ascii=False, allow_nan=False), encoding="utf-8"
            )
    return MonitorResult(status, checks, summary, options.out, run_id, seconds, times)


def _early_warning(
    reference: MonitorSide,
    current: MonitorSide,
    model: RiskModel | None,
    horizon: int,
    thresholds: MonitorThresholds,
    times: StageTimes,
) -> Check:
    """The large-scale relapse check; first reasons of dataset sides are computed only when it fires."""
    sides = [ScoredSide(side.scores, side.statuses, side.scale) for side in (reference, current)]  # type: ignore[arg-type]

    def add_reasons() -> tuple[ScoredSide, ScoredSide]:
        with times.stage("reasons of the top households"):
            explained = [
                with_first_reasons(scored, side.features, model)
                if side.features is not None and model is not None and "household_id" in scored.scores
                else scored
                for scored, side in zip(sides, (reference, current), strict=True)
            ]
        return explained[0], explained[1]

    return early_warning_check(sides[0], sides[1], thresholds, horizon, add_reasons)


def sampling_summary(thresholds: MonitorThresholds, sides: dict[str, MonitorSide]) -> dict[str, object]:
    """The ``sampling`` section of ``summary.json``: the rule, and what each side drew."""
    described: dict[str, object] = {
        "max_rows_per_side": thresholds.max_rows_per_side,
        "seed": thresholds.seed,
        "note": "county checks (outage, income unit, migrants, line, mix, rejects, categories) use every "
        "row. When a dataset folder holds more than max_rows_per_side households, feature drift, "
        "prediction drift (the visit list is the top visit_share of the sample) and matured performance "
        "use the households of whole villages drawn in the order of a seeded hash of their code until "
        "the limit; the same seed on both sides draws the same villages of a county compared with its "
        "own past. Scored runs and request logs are sampled by rows (seeded, without replacement).",
    }
    for name, side in sides.items():
        described[name] = side.sampling
        described[f"{name}_rows"] = None if side.features is None else len(side.features)
    return described


def _describe(side: MonitorSide) -> dict[str, object]:
    described: dict[str, object] = {
        "label": side.label,
        "kind": side.kind,
        "path": str(side.path),
        "as_of": format_month(side.as_of) if side.as_of else None,
    }
    if side.facts is not None:
        facts = side.facts
        described.update(
            households=facts.households,
            rejected_households=facts.rejected_households,
            unreported_share_12m=facts.unreported_share_12m,
            median_monthly_income=facts.median_monthly_income,
            migrant_share_3m=facts.migrant_share_3m,
            terrain_shares=facts.terrain_shares,
            income_source_shares=facts.income_source_shares,
            monitoring_line={str(k): v for k, v in facts.monitoring_line.items()},
        )
    if side.scores is not None:
        described["scored_rows"] = len(side.scores)
    if side.statuses:
        described["households_by_status"] = {k: round(v, 1) for k, v in side.statuses.items()}
    return json.loads(json.dumps(described, default=_plain))


def _plain(value: object) -> object:
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value != value:
        return None
    return str(value)


def log_to_mlflow(
    summary: Summary, checks: list[Check], report: Path, summary_path: Path, tracking_uri: str
) -> str:
    """One run in the model's experiment: every check's value, the status, and both files."""
    artifacts = _artifact_folder(tracking_uri)  # a local store is created beside its database
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        experiment_id = client.create_experiment(
            EXPERIMENT, artifact_location=artifacts.resolve().as_uri() if artifacts else None
        )
    else:
        experiment_id = experiment.experiment_id
    current = summary["current"]
    run = client.create_run(
        experiment_id,
        run_name=f"monitor {current.get('as_of') or ''}".strip(),
        tags={"job": "monitor", "monitor.status": str(summary["status"])},
    )
    run_id = run.info.run_id
    for check in checks:
        if check.value is not None and check.value == check.value and abs(check.value) != float("inf"):
            client.log_metric(run_id, f"monitor.{check.name}", check.value)
    client.log_metric(
        run_id, "monitor.status_level", {"ok": 0, "warning": 1, "alert": 2}[str(summary["status"])]
    )
    for row in summary.get("performance_by_month", []):
        step = int(str(row["as_of"]).replace("-", ""))
        for key in ("recall_at_k", "precision_at_k", "ece"):
            value = row.get(key)
            if isinstance(value, int | float):  # a JSON number; null where not measured
                client.log_metric(run_id, f"monitor.month.{key}", float(value), step=step)
    client.log_param(run_id, "reference", str(summary["reference"].get("label")))
    client.log_param(run_id, "current", str(current.get("label")))
    client.log_artifact(run_id, str(summary_path), "monitor")
    client.log_artifact(run_id, str(report), "monitor")
    client.set_terminated(run_id)
    return run_id


def _artifact_folder(uri: str) -> Path | None:
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri == f"{prefix}:memory:":
        return None
    folder = Path(uri[len(prefix) :]).parent / "artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
