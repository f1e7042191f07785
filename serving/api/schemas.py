"""Request and response bodies of the case-management API (serving/api/service.py).

Two layers of checking, on purpose:

- These models check the *shape* of a request: the right keys, a month that
  parses, table rows that are JSON objects of scalars, sizes within bounds.
  A request that fails here is answered 422 with one message per field and
  nothing is scored.
- The *contract* (types, enums, ranges, keys, dates up to as_of) is checked
  per household by the loader's own validation, so one household that breaks
  it gets its own ``error`` in the response while the others are scored.

Every request model hides input values from validation messages
(``hide_input_in_errors``): BentoML logs validation failures with their text,
and household data must not reach the logs.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)
from relapse_risk.features.contract import TABLES, format_month, parse_month

from ..cells import ScoresRow, text_or_none
from ..scoring import REASON_SLOTS

MAX_HOUSEHOLDS_PER_REQUEST = 1000
MAX_ROWS_PER_TABLE = 5000
"""Bounds that keep one request's memory small; a household has far fewer rows than this."""

ScoreStatus = Literal["scored", "under_monitoring", "triggered_now", "rejected"]
SCORE_STATUSES: tuple[ScoreStatus, ...] = ("scored", "under_monitoring", "triggered_now", "rejected")
RiskBand = Literal["high", "medium", "low"]
RISK_BANDS: tuple[RiskBand, ...] = ("high", "medium", "low")

JsonScalar = Annotated[
    StrictStr | StrictBool | StrictInt | StrictFloat | None, Field(union_mode="left_to_right")
]
"""A JSON scalar kept as the JSON type it arrived as (an int stays an int, true a bool).

Strict members tried in order give what pydantic's "smart" union gives for JSON
input at half the cost (the union is validated for every cell of every row)."""
Row = dict[str, JsonScalar]
"""One table row as a JSON object: column name to value, as in a CSV export
(months ``YYYY-MM``, dates ``YYYY-MM-DD``, booleans ``true``/``false``)."""


def _month_text(value: str) -> str:
    # Canonicalise "2024-06-01" to "2024-06"; parse_month's message names the
    # offending text. The pattern has already checked a bare YYYY-MM (ASCII
    # digits: a regex \d would also take other scripts' digits), and strptime
    # would be 1 % of a /score request's interpreter time.
    return value if len(value) == 7 else format_month(parse_month(value))


MonthText = Annotated[
    str,
    Field(
        min_length=7,
        max_length=10,
        pattern=r"^(19|20)[0-9]{2}-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?$",
        examples=["2024-06"],
        description="A month, YYYY-MM (YYYY-MM-DD is read as its month).",
    ),
    AfterValidator(_month_text),
]


TableRows = Annotated[list[Row], Field(max_length=MAX_ROWS_PER_TABLE)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class HouseholdTables(_Request):
    """One household's rows in the contract's tables: the shape of a dataset folder, in JSON.

    ``households`` holds exactly the one household; every other row must
    belong to it (through ``household_id``, ``member_id`` or ``loan_id``).
    """

    households: list[Row] = Field(min_length=1, max_length=1, description="The household's one row.")
    members: TableRows = Field(default_factory=list)
    income: TableRows = Field(default_factory=list)
    employment: TableRows = Field(default_factory=list)
    expenses: TableRows = Field(default_factory=list)
    events: TableRows = Field(default_factory=list)
    loans: TableRows = Field(default_factory=list)
    loan_status: TableRows = Field(default_factory=list)
    assistance: TableRows = Field(default_factory=list)
    monitoring: TableRows = Field(default_factory=list)

    def table_rows(self) -> dict[str, list[Row]]:
        """Table name to rows, in the contract's table order."""
        return {table.name: list(getattr(self, table.name)) for table in TABLES}


class HouseholdInput(_Request):
    """One household to score at one as-of month."""

    as_of: MonthText = Field(
        description="Last month of data the score may use; rows dated later break the contract."
    )
    tables: HouseholdTables

    @property
    def as_of_month(self) -> dt.date:
        return parse_month(self.as_of)


class ScoreRequest(_Request):
    """Body of ``POST /score``."""

    households: list[HouseholdInput] = Field(min_length=1, max_length=MAX_HOUSEHOLDS_PER_REQUEST)


class VisitListRequest(_Request):
    """Body of ``POST /visit_list``: exactly one of county_code and township_code."""

    county_code: str | None = Field(default=None, pattern=r"^\d{6}$", examples=["530101"])
    township_code: str | None = Field(default=None, pattern=r"^\d{9}$", examples=["530101001"])
    as_of: MonthText
    capacity: int = Field(ge=1, le=100_000, description="How many households staff can visit.")

    @model_validator(mode="after")
    def _one_area(self) -> VisitListRequest:
        if (self.county_code is None) == (self.township_code is None):
            raise ValueError("give exactly one of county_code and township_code")
        return self


class HouseholdRequest(_Request):
    """Body of ``POST /household``."""

    household_id: str = Field(min_length=1, max_length=128)


class ModelInfoRequest(_Request):
    """Body of ``POST /model_info``: empty."""


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True)


class Reason(_Response):
    """One risk driver, strongest first: a stable code, a sentence for a cadre, and a measure."""

    code: str
    zh: str | None = None
    en: str | None = None
    measure: str | None = None


class ContractProblem(_Response):
    """One row of the request that breaks the data contract."""

    table: str
    row: int = Field(description="1-based position of the row in that table of this household.")
    column: str
    rule: str = Field(description="Short stable name of the broken rule, e.g. `enum`, `foreign_key`.")
    reason: str


class HouseholdScore(_Response):
    """The answer for one household of ``POST /score``, in request order."""

    household_id: str | None = Field(description="From the households row; null when it could not be read.")
    as_of: str
    status: ScoreStatus
    risk_score: float | None = Field(
        default=None, description="Calibrated probability that a rule fires within the horizon."
    )
    risk_band: RiskBand | None = None
    rule_margin: float | None = None
    triggered_rule: str | None = None
    horizon_months: int | None = None
    reasons: list[Reason] = Field(default_factory=list)
    village_context_as_of: str | None = Field(
        default=None,
        description=(
            "As-of month of the batch run whose village figures (share of village households with a "
            "shock, under monitoring, ...) were used; null: computed from this request's households alone."
        ),
    )
    error: str | None = Field(default=None, description="Why the household was not scored.")
    problems: list[ContractProblem] = Field(default_factory=list)
    model_name: str
    model_version: str


class RunInfo(_Response):
    """Which batch-scored run an answer comes from."""

    run: str = Field(description="Folder name of the run.")
    as_of: str
    model_name: str | None = None
    model_version: str | None = None
    created_at: str | None = None


class ScoredHousehold(_Response):
    """One household's row of a batch-scored run."""

    household_id: str
    county_code: str | None = None
    township_code: str | None = None
    village_code: str | None = None
    status: ScoreStatus
    risk_score: float | None = None
    risk_band: RiskBand | None = None
    rank_county: int | None = None
    rank_township: int | None = None
    rank_village: int | None = None
    in_visit_list: bool = False
    rule_margin: float | None = None
    triggered_rule: str | None = None
    reasons: list[Reason] = Field(default_factory=list)
    reject_reason: str | None = None


class VisitListEntry(_Response):
    rank: int = Field(ge=1, description="1 = highest risk in the requested area.")
    household: ScoredHousehold


class VisitListResponse(_Response):
    run: RunInfo
    area_level: Literal["county", "township"]
    area_code: str
    capacity: int
    scored_households: int = Field(description="Scored households of the area in the run.")
    households: list[VisitListEntry]


class HouseholdResponse(_Response):
    run: RunInfo
    household: ScoredHousehold


class FeatureInfo(_Response):
    """One input of the model, from the feature catalogue."""

    name: str
    family: str | None = Field(default=None, description="Driver family, e.g. income, health, loans.")
    unit: str | None = None
    window: str | None = Field(default=None, description="Look-back window counted from the as-of month.")
    meaning: str | None = None
    label_zh: str | None = None
    categorical: bool = False


class ModelInfo(_Response):
    model_name: str
    model_version: str
    model_uri: str
    run_id: str | None = None
    horizon_months: int | None = None
    trained_through: str | None = Field(
        default=None, description="The latest as-of month (YYYY-MM) whose label the model learned from."
    )
    training_data_fingerprint: str | None = None
    test_metrics: dict[str, float] = Field(
        default_factory=dict,
        description="Averaged over the test months: the model's, the rule baseline's and their ratios.",
    )
    test_months: list[str] = Field(default_factory=list)
    features: list[FeatureInfo] = Field(default_factory=list)
    loaded_at: str


class ErrorBody(_Response):
    """Body of 401 and 404 answers."""

    error: str


# -- from a scores-table row (serving/cells.py) -------------------------------------------------


def score_status(value: str) -> ScoreStatus:
    """A scores row's status as a :data:`ScoreStatus`; ValueError (as the models raise) for other text."""
    for status in SCORE_STATUSES:
        if value == status:
            return status
    raise ValueError(f"{value!r} is not a status of the scores table")


def risk_band(value: str | None) -> RiskBand | None:
    """A scores row's risk band as a :data:`RiskBand` (None stays None); ValueError for other text."""
    if value is None:
        return None
    for band in RISK_BANDS:
        if value == band:
            return band
    raise ValueError(f"{value!r} is not a risk band")


def reasons_of(row: ScoresRow) -> list[Reason]:
    """The filled reason slots of a scores row, strongest first."""
    reasons = []
    for slot in REASON_SLOTS:
        code = text_or_none(row.get(f"reason_{slot}_code"))
        if code is None:
            continue
        reasons.append(
            Reason(
                code=code,
                zh=text_or_none(row.get(f"reason_{slot}_zh")),
                en=text_or_none(row.get(f"reason_{slot}_en")),
                measure=text_or_none(row.get(f"reason_{slot}_measure")),
            )
        )
    return reasons
