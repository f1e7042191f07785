"""Serving constants shared by the batch job and the API: one typed place.

The risk-band cut-offs are part of the output contract (outputs.md: "fixed
probability cut-offs stated in the model card"); change them only together
with models/MODEL_CARD.md. Nothing here reads the environment at import time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

REGISTRY_MODEL_NAME = "relapse-risk"
"""Name of the model in the MLflow registry; training registers under the same name."""

DEFAULT_MODEL_ALIAS = "champion"
TRACKING_URI_VARIABLE = "MLFLOW_TRACKING_URI"
DEFAULT_HORIZON_MONTHS = 6

RiskBand = Literal["high", "medium", "low"]
RISK_BANDS: tuple[RiskBand, ...] = ("high", "medium", "low")
RISK_BAND_ZH: dict[str, str] = {"high": "高", "medium": "中", "low": "低"}


class RiskBandCutoffs(BaseModel):
    """Calibrated-probability cut-offs: high if score >= high, medium if >= medium, else low.

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


def default_tracking_uri(work_dir: Path) -> str:
    """The embedded MLflow store training writes by default: SQLite inside ``<work_dir>/mlruns``."""
    return f"sqlite:///{(work_dir / 'mlruns' / 'mlflow.db').resolve()}"


def resolve_tracking_uri(explicit: str | None, work_dir: Path) -> str:
    """Explicit option, else ``MLFLOW_TRACKING_URI``, else the embedded store in ``work_dir``."""
    if explicit:
        return explicit
    from_environment = os.environ.get(TRACKING_URI_VARIABLE, "").strip()
    if from_environment:
        return from_environment
    return default_tracking_uri(work_dir)
