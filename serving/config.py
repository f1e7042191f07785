"""Serving constants shared by the batch job and the API: one typed place.

The risk-band cut-offs are part of the output contract (docs/outputs.md: "fixed
probability cut-offs stated in the model card"); change them only together
with models/MODEL_CARD.md. Nothing here reads the environment at import time.
"""

from __future__ import annotations

from typing import Literal

from ..models.registry import (
    DEFAULT_MODEL_ALIAS,
    REGISTRY_MODEL_NAME,
    RISK_BAND_CUTOFFS,
    TRACKING_URI_VARIABLE,
    RiskBandCutoffs,
    default_tracking_uri,
    resolve_tracking_uri,
    risk_bands,
)

__all__ = [
    # The registry's names, re-exported: the serving modules read every constant from here.
    "DEFAULT_MODEL_ALIAS",
    "REGISTRY_MODEL_NAME",
    "RISK_BAND_CUTOFFS",
    "TRACKING_URI_VARIABLE",
    "RiskBandCutoffs",
    "default_tracking_uri",
    "resolve_tracking_uri",
    "risk_bands",
    # Serving's own.
    "DEFAULT_HORIZON_MONTHS",
    "RISK_BANDS",
    "RISK_BAND_ZH",
    "RISK_SCORE_DECIMALS",
    "RULE_MARGIN_DECIMALS",
    "RiskBand",
]

DEFAULT_HORIZON_MONTHS = 6

RiskBand = Literal["high", "medium", "low"]
RISK_BANDS: tuple[RiskBand, ...] = ("high", "medium", "low")
RISK_BAND_ZH: dict[str, str] = {"high": "高", "medium": "中", "low": "低"}

# Decimals of the scores table's floats; ``/score`` answers round the same way, so the
# API and the batch run print the same score for the same household.
RISK_SCORE_DECIMALS = 6
RULE_MARGIN_DECIMALS = 4
