"""Where runs and models are recorded: the embedded SQLite store or a tracking server.

By default MLflow keeps runs in ``<work_dir>/mlruns/mlflow.db`` and artifacts in
``<work_dir>/mlruns/artifacts``, so a laptop needs no server. Setting
``MLFLOW_TRACKING_URI`` (or ``TrainingSettings.tracking_uri``) sends everything
to a real tracking server instead, whose own artifact store then applies.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from .config import TrainingSettings, resolve_tracking_uri

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class Tracking:
    """A configured store: its URI, the experiment runs go to, and a client for both."""

    uri: str
    experiment_id: str
    client: MlflowClient


def configure_tracking(settings: TrainingSettings) -> Tracking:
    """Point MLflow at the store of ``settings`` and make sure the experiment exists.

    MLflow's fluent API keeps the URI process-wide; every job calls this first so
    that the process-wide value always matches the settings of the job running.
    """
    uri = resolve_tracking_uri(settings)
    artifacts = local_artifact_folder(uri)
    if artifacts is not None:
        artifacts.parent.mkdir(parents=True, exist_ok=True)  # SQLite creates the file, not its folder
        # The database's schema migrations log at INFO on first use; that is noise for a CLI user.
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name(settings.experiment_name)
    if experiment is not None:
        return Tracking(uri, experiment.experiment_id, client)
    if artifacts is not None:
        # MLflow would otherwise put a local database's artifacts under the directory the
        # command happened to run in; keep them beside the database instead.
        artifacts.mkdir(parents=True, exist_ok=True)
        experiment_id = client.create_experiment(
            settings.experiment_name, artifact_location=artifacts.resolve().as_uri()
        )
    else:
        experiment_id = client.create_experiment(settings.experiment_name)
    return Tracking(uri, experiment_id, client)


def local_artifact_folder(uri: str) -> Path | None:
    """``artifacts`` beside a SQLite database file; None for servers (they keep their own store)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri == f"{prefix}:memory:":
        return None
    return Path(uri[len(prefix) :]).parent / "artifacts"


def version_by_alias(client: MlflowClient, model_name: str, alias: str) -> ModelVersion | None:
    """The registered version behind an alias, or None when the model or alias does not exist."""
    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None


def model_uri(model_name: str, reference: str) -> str:
    """``models:/NAME@alias`` for an alias, ``models:/NAME/7`` for a version number.

    A reference that already is a URI (``models:/...``, ``runs:/...``, a path) is returned as is.
    """
    if ":" in reference or "/" in reference:
        return reference
    if reference.isdigit():
        return f"models:/{model_name}/{reference}"
    return f"models:/{model_name}@{reference}"


def resolve_version(client: MlflowClient, model_name: str, reference: str) -> ModelVersion | None:
    """The registered version an alias or number names; None for other references or when absent."""
    if ":" in reference or "/" in reference:
        return None
    if reference.isdigit():
        try:
            return client.get_model_version(model_name, reference)
        except MlflowException:
            return None
    return version_by_alias(client, model_name, reference)
