"""The model a scoring run uses: a ``--model`` spec or ``RELAPSE_MODEL_URI`` found in the registry and loaded.

Shared by the quarterly batch job (``relapse score``, :mod:`serving.batch`) and
the API's scoring process (:mod:`serving.api.household_scorer`), so both name
models the same way (``champion``, ``3`` or a ``models:/`` URI), load the
version the alias pointed to when they started, and record the same registry
facts.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from relapse_risk.features.errors import RelapseRiskError
from relapse_risk.models.pyfunc import load_risk_model
from relapse_risk.models.registry import models_uri, parse_models_uri, registered_version

from .config import REGISTRY_MODEL_NAME
from .scoring import ResolvedModel


class ModelSpecError(RelapseRiskError, ValueError):
    """``--model`` names no model the registry holds; the message says what was tried."""


def registry_uri(spec: str, registry_name: str = REGISTRY_MODEL_NAME) -> str:
    """``champion`` -> ``models:/relapse-risk@champion``; ``3`` -> ``models:/relapse-risk/3``.

    A ``models:/`` URI is returned unchanged. Anything else is an error.
    """
    try:
        return models_uri(spec, registry_name)
    except ValueError as exc:
        raise ModelSpecError(str(exc)) from None


def resolve_model(spec: str, tracking_uri: str, registry_name: str = REGISTRY_MODEL_NAME) -> ResolvedModel:
    """Find the model version ``spec`` names in the registry at ``tracking_uri`` and load it.

    Raises :class:`ModelNotRegistered` when the registry holds no such version:
    each command tells its user in its own words which model to use instead.
    """
    uri = registry_uri(spec, registry_name)
    name, _, _ = _parse_models_uri(uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        version = registered_version(uri, tracking_uri)
    except MlflowException as exc:
        raise ModelSpecError(f"{uri}: the registry at {tracking_uri} cannot be read: {exc.message}") from None
    horizon = None
    trained_through = None
    params: dict[str, str] = {}
    if version.run_id:
        try:
            params = client.get_run(version.run_id).data.params
        except MlflowException:
            params = {}
        if str(params.get("horizon", "")).isdigit():
            horizon = int(params["horizon"])
        trained_through = params.get("trained_through") or None
    # Loading through models:/NAME/VERSION (not the alias) pins what was
    # resolved, even if the alias moves while the job runs.
    pinned = f"models:/{name}/{version.version}"
    with _tracking_uri(tracking_uri):
        model = load_risk_model(pinned)
    return ResolvedModel(
        model=model,
        name=name,
        version=str(version.version),
        uri=uri,
        run_id=version.run_id,
        horizon=horizon,
        trained_through=trained_through,
        count_calibration=count_calibration_of(params),
    )


@contextlib.contextmanager
def _tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's process-wide tracking and registry URIs at ``uri`` for the block only."""
    previous_tracking, previous_registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous_tracking)
        mlflow.set_registry_uri(previous_registry)


def _parse_models_uri(uri: str) -> tuple[str, str, bool]:
    try:
        return parse_models_uri(uri)
    except ValueError as exc:
        raise ModelSpecError(str(exc)) from None


def count_calibration_of(params: dict[str, str]) -> dict[str, object] | None:
    """What training recorded of the backtest's expected counts (``count_relative_error`` and
    ``first_rule_shares``), for the run's manifest and ``relapse outlook``; None for a model
    trained before training recorded them, or when they cannot be read."""
    try:
        return {
            "relative_error": float(params["count_relative_error"]),
            "first_rule_shares": json.loads(params["first_rule_shares"]),
        }
    except (KeyError, ValueError):
        return None
