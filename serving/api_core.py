"""What the API does, without HTTP: the BentoML service (serving/service.py) only adapts this.

:class:`RiskApi` holds what the server loads once at start-up (the champion
model from the MLflow registry, the county's policy, the batch runs folder,
the request log) and answers the four endpoints as plain method calls, so
its behaviour is testable in-process and the service module stays thin.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from relapse_risk.features.catalogue import FEATURES_BY_NAME
from relapse_risk.features.policy import Policy, PolicyError, read_policy
from relapse_risk.models.explain import warm_up_explainer

from .api_models import (
    FeatureInfo,
    HouseholdInput,
    HouseholdResponse,
    HouseholdScore,
    ModelInfo,
    Reason,
    RunInfo,
    ScoredHousehold,
    VisitListEntry,
    VisitListRequest,
    VisitListResponse,
)
from .api_scoring import RoundLoader, ServedModel, load_request_tables, score_households
from .api_settings import ApiSettings
from .config import resolve_tracking_uri
from .request_log import LOGGED_ANSWER_FIELDS, RequestLog, request_log_records
from .scored_runs import RunCatalog, ScoredRun, household_row, reasons_of, visit_list
from .village_context import VILLAGE_CONTEXT_FILE, VillageFigures, read_village_context

# Metrics a training run logs for its test months (averaged), as training/train.py names them;
# timings, tuning and per-month series are left out.
TEST_METRIC_PREFIXES = ("model.", "rule_baseline.", "oracle.", "ratio.")
FINGERPRINT_KEYS = ("data_fingerprint", "relapse.data_fingerprint")


class ApiStartupError(RuntimeError):
    """The server cannot start: the message names the setting or resource at fault."""


class RiskApi:
    """The loaded model, policy, runs and request log, and the four answers."""

    def __init__(
        self,
        *,
        served: ServedModel,
        policy: Policy,
        runs: RunCatalog,
        request_log: RequestLog,
        info: ModelInfo,
        loader: RoundLoader = load_request_tables,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.served = served
        self.policy = policy
        self.runs = runs
        self.request_log = request_log
        self.info = info
        self.loader = loader
        self.clock = clock
        self._contexts: dict[tuple[Path, int], VillageFigures | None] = {}

    @classmethod
    def start(cls, settings: ApiSettings) -> RiskApi:
        """Load the model named by ``settings.model_uri`` from the registry, the policy and the runs."""
        # Imported here: the batch module pulls in the visit-list writers, which
        # the rest of this module does not need.
        from .batch import ModelSpecError, resolve_model

        tracking_uri = resolve_tracking_uri(settings.tracking_uri, Path.cwd())
        try:
            policy = read_policy(settings.policy_file)
        except PolicyError as exc:
            raise ApiStartupError(str(exc)) from None
        try:
            resolved = resolve_model(settings.model_uri, tracking_uri)
        except ModelSpecError as exc:
            raise ApiStartupError(str(exc)) from None
        if hasattr(resolved.model, "booster_"):
            # The TreeSHAP tables and kernels every answer's reasons use: built before the first request.
            warm_up_explainer(resolved.model)  # type: ignore[arg-type]
        served = ServedModel(
            model=resolved.model,
            name=resolved.name,
            version=resolved.version,
            uri=resolved.uri,
            run_id=resolved.run_id,
            horizon=resolved.horizon,
        )
        return cls(
            served=served,
            policy=policy,
            runs=RunCatalog(settings.runs_dir),
            request_log=RequestLog(settings.request_log),
            info=registry_model_info(served, tracking_uri, clock_now=dt.datetime.now(dt.UTC)),
        )

    # -- POST /score ----------------------------------------------------------------------------

    def score(self, items: Sequence[HouseholdInput]) -> list[HouseholdScore]:
        """One answer per household, in order; every answer is appended to the request log."""
        batch = score_households(
            items,
            served=self.served,
            policy=self.policy,
            village_contexts=self.village_context,
            loader=self.loader,
        )
        # Field by field from the answers (what model_dump gives for these plain fields), with no frame:
        # a frame from one dict per answer costs pandas a look at every key of every row.
        answers = {name: [getattr(a, name) for a in batch.answers] for name in LOGGED_ANSWER_FIELDS}
        records = request_log_records(
            answers, batch.features, self.served.model.feature_names_, time=self.clock()
        )
        self.request_log.append(records)
        return batch.answers

    def village_context(self, as_of: str) -> tuple[str, VillageFigures] | None:
        """The village figures of the latest batch run at or before ``as_of`` that wrote them.

        Each file is read and indexed once (again when it changes): every round of that month uses it.
        """
        for run in self.runs.latest_up_to(as_of):
            path = run.folder / VILLAGE_CONTEXT_FILE
            try:
                key = (path, path.stat().st_mtime_ns)
            except OSError:
                continue
            if key not in self._contexts:
                for stale in [k for k in self._contexts if k[0] == path]:
                    del self._contexts[stale]
                context = read_village_context(path)
                self._contexts[key] = (
                    VillageFigures.of(context) if context is not None and len(context) else None
                )
            figures = self._contexts[key]
            if figures is not None:
                return run.as_of, figures
        return None

    # -- POST /visit_list -----------------------------------------------------------------------

    def visit_list(self, request: VisitListRequest) -> VisitListResponse | None:
        """The ranked list of the latest run for that month and area; None when no run has the month."""
        run = self.runs.latest(request.as_of)
        if run is None:
            return None
        level = "county" if request.county_code is not None else "township"
        code = request.county_code if request.county_code is not None else request.township_code
        assert code is not None  # the request model guarantees one of the two
        rows, scored = visit_list(run, level, code, request.capacity)
        entries = [
            VisitListEntry(rank=position, household=scored_household(row))
            for position, row in enumerate(rows.to_dict("records"), start=1)
        ]
        return VisitListResponse(
            run=run_info(run),
            area_level=level,
            area_code=code,
            capacity=request.capacity,
            scored_households=scored,
            households=entries,
        )

    # -- POST /household ------------------------------------------------------------------------

    def household(self, household_id: str) -> HouseholdResponse | None:
        """The household's row in the latest run that has it; None when no run has it."""
        found = household_row(self.runs.runs(), household_id)
        if found is None:
            return None
        run, row = found
        return HouseholdResponse(run=run_info(run), household=scored_household(row))

    # -- POST /model_info -----------------------------------------------------------------------

    def model_info(self) -> ModelInfo:
        return self.info


def run_info(run: ScoredRun) -> RunInfo:
    return RunInfo(
        run=run.folder.name,
        as_of=run.as_of,
        model_name=run.model_name,
        model_version=run.model_version,
        created_at=run.written_at.isoformat(timespec="seconds"),
    )


def _present(value: object) -> object:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and value != value:
        return None
    return value


def scored_household(row: dict[str, object]) -> ScoredHousehold:
    """A scores-table row as the API shows it."""

    def get(column: str) -> object:
        return _present(row.get(column))

    def integer(column: str) -> int | None:
        value = get(column)
        return None if value is None else int(value)  # type: ignore[call-overload]

    def number(column: str) -> float | None:
        value = get(column)
        return None if value is None else float(value)  # type: ignore[arg-type]

    def text(column: str) -> str | None:
        value = get(column)
        return None if value is None else str(value)

    return ScoredHousehold(
        household_id=str(row["household_id"]),
        county_code=text("county_code"),
        township_code=text("township_code"),
        village_code=text("village_code"),
        status=str(row["status"]),  # type: ignore[arg-type]
        risk_score=number("risk_score"),
        risk_band=text("risk_band"),  # type: ignore[arg-type]
        rank_county=integer("rank_county"),
        rank_township=integer("rank_township"),
        rank_village=integer("rank_village"),
        in_visit_list=bool(get("in_visit_list") or False),
        rule_margin=number("rule_margin"),
        triggered_rule=text("triggered_rule"),
        reasons=[Reason(**reason) for reason in reasons_of(row)],
        reject_reason=text("reject_reason"),
    )


def registry_model_info(served: ServedModel, tracking_uri: str, *, clock_now: dt.datetime) -> ModelInfo:
    """Name, version, training data fingerprint, test metrics and feature catalogue of the served model."""
    metrics: dict[str, float] = {}
    fingerprint: str | None = None
    test_months: list[str] = []
    horizon = served.horizon
    if served.run_id:
        try:
            run = MlflowClient(tracking_uri=tracking_uri).get_run(served.run_id)
        except MlflowException:
            run = None
        if run is not None:
            metrics = {k: float(v) for k, v in run.data.metrics.items() if k.startswith(TEST_METRIC_PREFIXES)}
            facts = {**run.data.params, **run.data.tags}
            fingerprint = next((str(facts[k]) for k in FINGERPRINT_KEYS if facts.get(k)), None)
            test_months = [m for m in str(facts.get("test_months", "")).split(",") if m]
    features = []
    for name in served.model.feature_names_:
        spec = FEATURES_BY_NAME.get(name)
        if spec is None:
            features.append(FeatureInfo(name=name))
            continue
        features.append(
            FeatureInfo(
                name=name,
                family=spec.family,
                unit=spec.unit,
                window=spec.window,
                meaning=spec.meaning,
                label_zh=spec.label_zh,
                categorical=spec.categorical,
            )
        )
    return ModelInfo(
        model_name=served.name,
        model_version=served.version,
        model_uri=served.uri,
        run_id=served.run_id,
        horizon_months=horizon,
        training_data_fingerprint=fingerprint,
        test_metrics=dict(sorted(metrics.items())),
        test_months=test_months,
        features=features,
        loaded_at=clock_now.isoformat(timespec="seconds"),
    )
