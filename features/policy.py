"""``policy.json``: monitoring lines and rule parameters (docs/rules-and-labels.md)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from .contract import CONTRACT_VERSION, format_month, month_index, parse_month
from .errors import RelapseRiskError


class PolicyError(RelapseRiskError, ValueError):
    """``policy.json`` is missing or broken; the message names the file and the fault."""


def _month(value: object) -> dt.date:
    if isinstance(value, dt.date):
        return value.replace(day=1)
    if isinstance(value, str):
        return parse_month(value)
    raise ValueError(f"{value!r} is not a month (YYYY-MM)")


Month = Annotated[dt.date, BeforeValidator(_month)]


class RuleParameters(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    min_reported_months: int = Field(ge=1, le=12)
    rigid_expense_ratio: float = Field(gt=0)
    income_drop_share: float = Field(gt=0, lt=1)
    income_drop_band: float = Field(gt=0)


class Policy(BaseModel):
    """A region's monitoring lines and rule parameters."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    contract_version: int
    region: str = ""
    data_start: Month
    data_end: Month
    monitoring_line: dict[int, float]
    rules: RuleParameters
    visit_share: float = Field(gt=0, le=1)

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        if self.contract_version != CONTRACT_VERSION:
            raise ValueError(
                f"contract_version {self.contract_version} is not supported (expected {CONTRACT_VERSION})"
            )
        if self.data_end < self.data_start:
            raise ValueError("data_end is before data_start")
        years = range(self.data_start.year, self.data_end.year + 1)
        missing = [y for y in years if y not in self.monitoring_line]
        if missing:
            raise ValueError(f"monitoring_line has no line for year(s) {', '.join(map(str, missing))}")
        bad = [y for y, line in self.monitoring_line.items() if not line > 0]
        if bad:
            raise ValueError(f"monitoring_line must be positive; year(s) {', '.join(map(str, bad))} are not")
        return self

    def line(self, year: int) -> float:
        """Monitoring line L in yuan per person per year for a calendar year."""
        return self.monitoring_line[year]

    @property
    def first_month_index(self) -> int:
        return month_index(self.data_start)

    @property
    def last_month_index(self) -> int:
        return month_index(self.data_end)

    def to_json_dict(self) -> dict[str, object]:
        return {
            "contract_version": self.contract_version,
            "region": self.region,
            "data_start": format_month(self.data_start),
            "data_end": format_month(self.data_end),
            "monitoring_line": {str(y): v for y, v in sorted(self.monitoring_line.items())},
            "rules": self.rules.model_dump(),
            "visit_share": self.visit_share,
        }


def read_policy(path: Path) -> Policy:
    """Read and check ``policy.json``; raise :class:`PolicyError` naming the file."""
    if not path.is_file():
        raise PolicyError(f"{path}: required file is missing")
    try:
        raw = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise PolicyError(f"{path}: expected a JSON object at the top level")
    try:
        return Policy.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'policy'}: {err['msg']}" for err in exc.errors()
        )
        raise PolicyError(f"{path}: {problems}") from None
