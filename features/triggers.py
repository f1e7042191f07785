"""Insurance triggers (防贫保) as labels: did a household meet the trigger within the horizon?

Anti-poverty insurance pays a household when its income falls below a line or
when illness, disaster or accident costs pass an amount (docs/calibration.md,
"Insurance and the county's duty"). A county budgeting for it needs the
expected number of claims, which is the same kind of question the risk model
answers with another label. A trigger is read from a small TOML or JSON file:

.. code-block:: toml

    # per-capita income below a line (yuan per person per year), as rule R1 measures income
    kind = "income_below"
    line = 6000
    payout = 5000                 # yuan per claim

    # or: out-of-pocket costs of some bill categories, added over the horizon's months
    kind = "out_of_pocket_above"
    amount = 20000
    categories = ["medical"]
    payout = 8000

A household meets an ``income_below`` trigger at t when, in some month
m = t+1 .. t+H, its annualised per-capita income I(m) / n(m) (the quantity of
rule R1, docs/rules-and-labels.md) is defined and below ``line``. It meets an
``out_of_pocket_above`` trigger when its out-of-pocket costs of the listed
categories dated in t+1 .. t+H add up to more than ``amount``. As for the risk
labels, nothing after t enters the features.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from .contract import EXPENSE_CATEGORIES, format_month, month_index
from .dataset import Dataset
from .errors import RelapseRiskError
from .rules import build_panel, out_of_pocket_by_month, rule_state


class IncomeBelow(BaseModel):
    """Annualised per-capita income below ``line`` yuan per person per year."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["income_below"]
    line: float = Field(gt=0)
    payout: float = Field(gt=0)
    """Yuan paid per claim."""

    def describe(self) -> str:
        return f"per-capita income below {self.line:,.0f} yuan a year"


class OutOfPocketAbove(BaseModel):
    """Out-of-pocket costs of ``categories`` over the horizon above ``amount`` yuan."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["out_of_pocket_above"]
    amount: float = Field(gt=0)
    categories: tuple[str, ...] = ("medical",)
    payout: float = Field(gt=0)

    def describe(self) -> str:
        return f"out-of-pocket {'/'.join(self.categories)} costs above {self.amount:,.0f} yuan"


Trigger = Annotated[IncomeBelow | OutOfPocketAbove, Field(discriminator="kind")]
_TRIGGER: TypeAdapter[IncomeBelow | OutOfPocketAbove] = TypeAdapter(Trigger)


class TriggerFileError(RelapseRiskError, ValueError):
    """The trigger file cannot be read or does not describe a trigger."""


def read_trigger(path: Path) -> IncomeBelow | OutOfPocketAbove:
    """The trigger of a ``.toml`` or ``.json`` file; :class:`TriggerFileError` naming the field otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
        raw = tomllib.loads(text) if path.suffix.lower() == ".toml" else None
        trigger = _TRIGGER.validate_python(raw) if raw is not None else _TRIGGER.validate_json(text)
    except OSError as exc:
        raise TriggerFileError(f"{path}: cannot read the trigger file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise TriggerFileError(f"{path}: not TOML: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'file'}: {error['msg']}" for error in exc.errors()
        )
        raise TriggerFileError(f"{path}: not a trigger: {problems}") from None
    if isinstance(trigger, OutOfPocketAbove):
        unknown = sorted(set(trigger.categories) - set(EXPENSE_CATEGORIES))
        if unknown or not trigger.categories:
            raise TriggerFileError(
                f"{path}: categories: {', '.join(unknown) or 'none given'}; the contract's expense "
                f"categories are {', '.join(EXPENSE_CATEGORIES)}"
            )
    return trigger


def trigger_labels(
    dataset: Dataset, trigger: IncomeBelow | OutOfPocketAbove, as_of_months: Sequence[dt.date], horizon: int
) -> pd.DataFrame:
    """household_id, as_of (datetime64) and ``label`` (int8; null where t+H runs past data_end) of every
    household of the households table at each as-of month, households sorted by id."""
    policy = dataset.policy
    panel = build_panel(dataset)
    if isinstance(trigger, IncomeBelow):
        per_capita = rule_state(panel, policy).I / panel.size
        below = np.isfinite(per_capita) & (per_capita < trigger.line)

        def met(window: slice) -> np.ndarray:
            return np.asarray(below[:, window].any(axis=1))
    else:
        costs = out_of_pocket_by_month(dataset, trigger.categories)
        amount = trigger.amount

        def met(window: slice) -> np.ndarray:
            return np.asarray(costs[:, window].sum(axis=1) > amount)

    frames = []
    for month in as_of_months:
        t = month_index(month) - policy.first_month_index
        if not 0 <= t < panel.n_months:
            raise ValueError(f"as-of month {format_month(month)} is outside the data")
        if t + horizon < panel.n_months:
            label = pd.array(met(slice(t + 1, t + horizon + 1)).astype(np.int8), dtype="Int8")
        else:
            label = pd.array([pd.NA] * panel.n_households, dtype="Int8")
        frames.append(
            pd.DataFrame({"household_id": panel.household_ids, "as_of": pd.Timestamp(month), "label": label})
        )
    return pd.concat(frames, ignore_index=True)
