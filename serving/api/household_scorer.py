"""What ``POST /score`` loads once and does for each batch, apart from HTTP.

:class:`HouseholdScorer` holds the champion model from the MLflow registry,
the county's policy and the batch runs whose village figures a lone household
is scored with. The server runs it in a process of its own
(serving/api/scoring_process.py); it is a plain object, so it also runs in-process.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from relapse_risk.features.catalogue import FEATURES_BY_NAME
from relapse_risk.features.errors import RelapseRiskError
from relapse_risk.features.policy import Policy, PolicyError, read_policy
from relapse_risk.models.explain import warm_up_explainer
from relapse_risk.models.model import RiskModel
from relapse_risk.models.registry import ModelNotRegistered

from ..config import resolve_tracking_uri
from ..scoring import ResolvedModel
from ..village_context import VILLAGE_CONTEXT_FILE, VillageFigures, read_village_context
from .schemas import FeatureInfo, ModelInfo
from .score_rounds import (
    PreparedBatch,
    RoundLoader,
    ScoredBatch,
    load_request_tables,
    score_prepared,
)
from .scored_runs import RunCatalog
from .settings import ApiSettings

# Metrics a training run logs for its test months (averaged), as training/train.py names them;
# timings, tuning and per-month series are left out.
TEST_METRIC_PREFIXES = ("model.", "rule_baseline.", "oracle.", "ratio.")
FINGERPRINT_KEYS = ("data_fingerprint", "relapse.data_fingerprint")
SERVE_ANOTHER_MODEL = "serve the {label} with RELAPSE_MODEL_URI={uri}"
"""How the server tells its operator to pick another model: the variable a Bento reads."""


class ApiStartupError(RelapseRiskError, RuntimeError):
    """The server cannot start: the message names the setting or resource at fault."""


class HouseholdScorer:
    """The served model, the policy and the runs' village figures; scores batches of households."""

    def __init__(
        self,
        *,
        served: ResolvedModel,
        policy: Policy,
        runs: RunCatalog,
        info: ModelInfo,
        loader: RoundLoader = load_request_tables,
    ) -> None:
        self.served = served
        self.policy = policy
        self.runs = runs
        self.info = info
        self.loader = loader
        self._contexts: dict[tuple[Path, int], VillageFigures | None] = {}

    @classmethod
    def start(cls, settings: ApiSettings) -> HouseholdScorer:
        """Load the model named by ``settings.model_uri`` from the registry, the policy and the runs."""
        # Imported here: loading a model brings in MLflow's pyfunc flavour, which the
        # HTTP worker (it imports this module for ApiStartupError) never needs.
        from ..registered_model import ModelSpecError, resolve_model

        tracking_uri = resolve_tracking_uri(settings.tracking_uri, Path.cwd())
        try:
            policy = read_policy(settings.policy_file)
        except PolicyError as exc:
            raise ApiStartupError(str(exc)) from None
        try:
            resolved = resolve_model(settings.model_uri, tracking_uri)
        except ModelNotRegistered as exc:
            raise ApiStartupError(exc.line(SERVE_ANOTHER_MODEL)) from None
        except ModelSpecError as exc:
            raise ApiStartupError(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - MLflow's and the flavour's errors do not say which model
            raise ApiStartupError(
                f"{settings.model_uri} is in the registry at {tracking_uri} but could not be loaded: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        if isinstance(resolved.model, RiskModel) and resolved.model.is_fitted:
            # The TreeSHAP tables and kernels every answer's reasons use: built before the first request.
            warm_up_explainer(resolved.model)
        return cls(
            served=resolved,
            policy=policy,
            runs=RunCatalog(settings.runs_dir),
            info=registry_model_info(resolved, tracking_uri, clock_now=dt.datetime.now(dt.UTC)),
        )

    def score(self, batch: PreparedBatch) -> ScoredBatch:
        """One answer per household of a prepared batch, in order, and the feature rows the model saw."""
        return score_prepared(
            batch,
            served=self.served,
            policy=self.policy,
            village_contexts=self.village_context,
            loader=self.loader,
        )

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


def registry_model_info(served: ResolvedModel, tracking_uri: str, *, clock_now: dt.datetime) -> ModelInfo:
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
        trained_through=served.trained_through,
        training_data_fingerprint=fingerprint,
        test_metrics=dict(sorted(metrics.items())),
        test_months=test_months,
        features=features,
        loaded_at=clock_now.isoformat(timespec="seconds"),
    )
