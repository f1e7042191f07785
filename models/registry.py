"""Where models are registered and what their scores mean in bands: one place.

Training registers under these names, serving and monitoring load from them;
none of those may import each other, so the shared facts live beside the model.
Nothing here reads the environment at import time.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

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

    Part of the output contract (outputs.md: "fixed probability cut-offs stated
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
