"""One monitoring check: a statistic, its threshold, its status, and what to do about it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, TypedDict

from .config import Level

Status = Literal["ok", "warning", "alert"]
STATUS_ORDER: dict[str, int] = {"ok": 0, "warning": 1, "alert": 2}

RETRAIN = "retrain the model on fresh data (`relapse retrain`) and compare the challenger before promoting it"
CHECK_FEED = "check the data feed: ask the county which export, field or reporting step changed"
REVIEW_LINE = "review the monitoring line in policy.json with the county, then re-score and retrain"
REVIEW_POPULATION = "confirm this is the intended county; a different population needs its own model"
WATCH = "no action; keep watching"


class CheckJson(TypedDict):
    """A check as a line of ``summary.json``."""

    name: str
    group: str
    value: float | None
    threshold: dict[str, float]
    status: Status
    message: str
    action: str
    details: dict[str, object]


@dataclass(frozen=True)
class Check:
    """One line of ``summary.json``; ``value`` is None when the statistic could not be measured."""

    name: str
    group: str
    value: float | None
    threshold: dict[str, float]
    status: Status
    message: str
    action: str
    details: dict[str, object] = field(default_factory=dict)
    """Figures behind the message that a machine may want (intervals, counts, named townships)."""

    def as_json(self) -> CheckJson:
        return {
            "name": self.name,
            "group": self.group,
            "value": self.value if self.value is None or math.isfinite(self.value) else None,
            "threshold": dict(self.threshold),
            "status": self.status,
            "message": self.message,
            "action": self.action,
            "details": dict(self.details),
        }


def judged(name: str, group: str, value: float | None, level: Level, message: str, action: str) -> Check:
    """A check whose status comes from ``level``; ``action`` is only given when it is not ok."""
    status: Status = level.status(value)  # type: ignore[assignment]
    return Check(
        name=name,
        group=group,
        value=None if value is None else float(value),
        threshold={"warning": level.warning, "alert": level.alert},
        status=status,
        message=message,
        action=action if status != "ok" else WATCH,
    )


def overall_status(checks: list[Check]) -> Status:
    """The worst status of any check (``ok`` when there are none)."""
    worst = max((STATUS_ORDER[c.status] for c in checks), default=0)
    return ("ok", "warning", "alert")[worst]
