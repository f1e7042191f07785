"""Where models are registered and what their scores mean in bands: one place.

Training registers under these names, serving and monitoring load from them;
none of those may import each other, so the shared facts live beside the model.
Nothing here reads the environment at import time.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from relapse_risk.features.errors import RelapseRiskError

if TYPE_CHECKING:  # MLflow takes seconds to import: only the functions that query the registry do
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

REGISTRY_MODEL_NAME = "relapse-risk"
"""Name of the model in the MLflow registry (and of the experiment its runs go to)."""
DEFAULT_MODEL_ALIAS = "champion"
TRACKING_URI_VARIABLE = "MLFLOW_TRACKING_URI"


def default_tracking_uri(work_dir: Path) -> str:
    """The embedded MLflow store: SQLite inside ``<work_dir>/mlruns``."""
    return f"sqlite:///{(work_dir / 'mlruns' / 'mlflow.db').resolve()}"


def resolve_tracking_uri(explicit: str | None, work_dir: Path) -> str:
    """Explicit option, else ``MLFLOW_TRACKING_URI``, else the embedded store in ``work_dir``."""
    if explicit:
        return explicit
    from_environment = os.environ.get(TRACKING_URI_VARIABLE, "").strip()
    if from_environment:
        return from_environment
    return default_tracking_uri(work_dir)


class RiskBandCutoffs(BaseModel):
    """Calibrated-probability cut-offs: high if score >= high, medium if >= medium, else low.

    Part of the output contract (docs/outputs.md: "fixed probability cut-offs stated
    in the model card"); change them only together with models/MODEL_CARD.md.
    With 2-5 % of eligible households reaching a rule within six months, a
    household at 0.30 is six or more times as likely as the average one to
    fall back, and one at 0.10 two or more times.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    high: float = Field(default=0.30, gt=0, lt=1)
    medium: float = Field(default=0.10, gt=0, lt=1)

    @model_validator(mode="after")
    def _ordered(self) -> RiskBandCutoffs:
        if not self.medium < self.high:
            raise ValueError(f"medium cut-off {self.medium} must be below the high cut-off {self.high}")
        return self


RISK_BAND_CUTOFFS = RiskBandCutoffs()


def risk_bands(risk_score: np.ndarray, cutoffs: RiskBandCutoffs = RISK_BAND_CUTOFFS) -> np.ndarray:
    """``high`` / ``medium`` / ``low`` per score; None where the score is NaN (not scored)."""
    bands = np.select([risk_score >= cutoffs.high, risk_score >= cutoffs.medium], ["high", "medium"], "low")
    labelled = bands.astype(object)
    labelled[np.isnan(risk_score)] = None
    return labelled


# -- is a model there? --------------------------------------------------------------------------

PREFERRED_ALTERNATIVES = ("challenger", "champion")
"""Aliases offered, in this order, when the one asked for holds no model: training registers a challenger."""


_VERSION = re.compile(r"^[0-9]+$")
_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


def models_uri(spec: str, registry_name: str = REGISTRY_MODEL_NAME) -> str:
    """``champion`` -> ``models:/relapse-risk@champion``; ``3`` -> ``models:/relapse-risk/3``.

    A ``models:/`` URI is returned unchanged. Anything else is a ``ValueError``.
    """
    spec = spec.strip()
    if spec.startswith("models:/"):
        return spec
    if _VERSION.match(spec):
        return f"models:/{registry_name}/{spec}"
    if _ALIAS.match(spec):
        return f"models:/{registry_name}@{spec}"
    raise ValueError(
        f"--model {spec!r}: expected an alias (champion), a version number (3) or a models:/ URI"
    )


def parse_models_uri(uri: str) -> tuple[str, str, bool]:
    """``models:/NAME@ALIAS`` -> (NAME, ALIAS, True); ``models:/NAME/VERSION`` -> (NAME, VERSION, False)."""
    rest = uri.removeprefix("models:/")
    if uri.startswith("models:/") and "@" in rest:
        name, alias = rest.split("@", 1)
        if name and alias and "/" not in name:
            return name, alias, True
    elif uri.startswith("models:/"):
        parts = rest.split("/")
        if len(parts) == 2 and parts[0] and _VERSION.match(parts[1]):
            return parts[0], parts[1], False
    raise ValueError(f"{uri}: expected models:/NAME@ALIAS or models:/NAME/VERSION")


class ModelNotRegistered(RelapseRiskError, LookupError):
    """The registry holds no model version under a URI.

    Each command says in its own words how to pick another model, so the
    exception keeps the facts and :meth:`line` writes the sentence.
    """

    def __init__(self, uri: str, tracking_uri: str, alternative: tuple[str, str] | None) -> None:
        self.uri = uri
        self.tracking_uri = tracking_uri
        self.alternative = alternative
        """(what to call it, its --model spec): an alias or version the registry does hold, if any."""
        super().__init__(self.line())

    def line(self, use_instead: str = "use the {label} with --model {spec}") -> str:
        """What is missing where and what to run; ``use_instead`` may name {label}, {spec} and {uri}."""
        advice = "run `relapse train` then `relapse promote`"
        if self.alternative is not None:
            label, spec = self.alternative
            other_uri = models_uri(spec, parse_models_uri(self.uri)[0])
            advice += ", or " + use_instead.format(label=label, spec=spec, uri=other_uri)
        return f"No model at {self.uri} in {self.tracking_uri}: {advice}"


def registered_version(uri: str, tracking_uri: str) -> ModelVersion:
    """The registry's ``ModelVersion`` under a ``models:/`` URI, looked up without loading the model.

    Raises :class:`ModelNotRegistered` when the registered model, the alias or
    the version is not there, ``ValueError`` for a URI of another form, and
    lets other ``MlflowException`` (a registry that cannot be read) through.
    A few registry queries: cheap enough to run before starting a server.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode
    from mlflow.tracking import MlflowClient

    name, reference, is_alias = parse_models_uri(uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    missing = ErrorCode.Name(RESOURCE_DOES_NOT_EXIST)
    try:
        registered = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == missing:
            raise ModelNotRegistered(uri, tracking_uri, None) from None
        raise
    aliases: dict[str, str] = {alias: str(version) for alias, version in (registered.aliases or {}).items()}
    version = aliases.get(reference) if is_alias else reference
    if version is not None:
        try:
            return client.get_model_version(name, version)
        except MlflowException as exc:
            if exc.error_code != missing:
                raise
    raise ModelNotRegistered(uri, tracking_uri, _alternative(client, name, aliases, reference))


def _alternative(
    client: MlflowClient, name: str, aliases: dict[str, str], unwanted: str
) -> tuple[str, str] | None:
    """An alias the registry does hold (the challenger first), else its latest version, else None."""
    others = sorted(
        (alias for alias in aliases if alias != unwanted),
        key=lambda alias: (
            PREFERRED_ALTERNATIVES.index(alias)
            if alias in PREFERRED_ALTERNATIVES
            else len(PREFERRED_ALTERNATIVES),
            alias,
        ),
    )
    if others:
        return others[0], others[0]
    versions = [int(v.version) for v in client.search_model_versions(f"name='{name}'")]
    versions = [v for v in versions if str(v) != unwanted]
    return (f"version {max(versions)}", str(max(versions))) if versions else None
