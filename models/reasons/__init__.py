"""Reasons: a household's risk drivers turned into sentences a village cadre can act on.

Three parts, one module each:

- :mod:`.measures`: the support measures a reason points to (缺什么补什么);
- :mod:`.templates`: one template per fact a reason can state, each right
  below the function that renders its Chinese and English sentences;
- :mod:`.selection`: choosing up to three reasons per household from its
  TreeSHAP contributions.

Callers import the names below from this package, never from its modules, so
the split stays an inside matter.
"""

from __future__ import annotations

from .measures import MEASURES, Measure
from .selection import REASON_COLUMNS, Reason, choose_reasons
from .templates import NO_SINGLE_DRIVER, TEMPLATES, TEMPLATES_BY_CODE, ReasonTemplate, reason_catalogue

__all__ = [
    "MEASURES",
    "NO_SINGLE_DRIVER",
    "REASON_COLUMNS",
    "TEMPLATES",
    "TEMPLATES_BY_CODE",
    "Measure",
    "Reason",
    "ReasonTemplate",
    "choose_reasons",
    "reason_catalogue",
]
