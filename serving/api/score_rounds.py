"""``POST /score``: households given as JSON rows, checked by the loader, scored by the batch path.

The steps for one batch of households (BentoML gathers several requests into
one batch):

1. Each household's rows must belong to it: every ``household_id`` is the one
   of its households row, every ``member_id`` one of its members, every
   ``loan_id`` one of its loans. A household that breaks this is rejected
   before loading, with one problem per row.
2. The others are loaded together, per as-of month, by the project's loader
   (:func:`features.loading.load_tables`), under the server's policy with
   ``data_end`` set to that month: the same parsing and the same row rules as
   a dataset folder. Households whose keys would collide (the same
   household, member or loan id twice in one batch) are loaded in separate
   rounds, so one household's rows never satisfy another's keys.
3. A household with any rejected row is answered ``rejected`` with every
   problem (table, row within that household's table, column, rule, reason).
4. The loaded households are scored by :func:`serving.scoring.score_dataset`,
   the function the batch job uses, with reasons for every scored household.
   Village figures come from the latest batch run at or before the as-of
   month (:mod:`serving.village_context`), so a household scored alone gets
   the score the batch job gave it.

Each round's rows go to the loader as in-memory tables of text cells
(:func:`features.loading.load_tables`), read exactly as the CSV export of the
same rows would be: no files are written.

DuckDB costs milliseconds per statement however few rows it reads, so a round
that keeps the contract skips it: :mod:`features.household_rows` types and
checks the same text tables and computes the same features in numpy (tests
prove both equal to the loader and ``build_features``), and
:func:`serving.scoring.roster_scores` scores them as ``score_dataset`` would (its
figures are those of the scores table, read without building the table).
A round with any row the loader would reject, or anything the in-memory path
does not compute exactly, goes through the loader as above.

Step 1 and the rounds' text tables need neither the model nor the policy
(:func:`prepare_households`): the server's worker does them, and its scoring
process does the rest (:func:`score_prepared`; serving/api/scoring_process.py).
"""

from __future__ import annotations

import datetime as dt
import math
import os
from bisect import bisect_right
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, repeat
from operator import itemgetter
from typing import NamedTuple, TypedDict, overload

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import ValidationError
from relapse_risk.features.contract import TABLES, format_month
from relapse_risk.features.dataset import Dataset, DatasetError, Reject
from relapse_risk.features.history import build_features, features_panel
from relapse_risk.features.household_rows import (
    NotExact,
    household_features,
    household_panel,
    read_clean_tables,
)
from relapse_risk.features.loading import load_tables
from relapse_risk.features.policy import Policy
from relapse_risk.features.rules import rule_state

from ..cells import ScoresRow, float_or_none, int_or_none, text_or_none
from ..config import DEFAULT_HORIZON_MONTHS, RISK_SCORE_DECIMALS, RULE_MARGIN_DECIMALS
from ..scoring import (
    ResolvedModel,
    RosterScores,
    roster_scores,
    rule_facts_at,
    score_dataset,
)
from ..village_context import VillageFigures, apply_village_context
from .schemas import (
    ContractProblem,
    HouseholdInput,
    HouseholdScore,
    JsonScalar,
    Row,
    reasons_of,
    risk_band,
    score_status,
)

EXPLAIN_THREADS = min(4, os.cpu_count() or 1)
"""Slices of a round explained at once when LightGBM explains it (a booster the numba TreeSHAP cannot
hold; that one shares a round among numba's threads itself)."""

RoundLoader = Callable[[Mapping[str, pa.Table], Policy], Dataset]
"""Checks and loads one round's tables (text cells) under the round's policy."""


def load_request_tables(tables: Mapping[str, pa.Table], policy: Policy) -> Dataset:
    """The project's loader over a round's rows, read as the cells of a CSV export."""
    return load_tables(tables, policy, source="request", text_cells=True)


# Columns through which rows of other tables belong to a household.
_MEMBER_REFERENCES = ("employment", "expenses", "events")
_LOAN_REFERENCES = ("loan_status",)
_REFERENCES = {
    t.name: tuple(
        column
        for column, refers in (
            ("household_id", "household_id" in t.column_names),
            ("member_id", t.name in _MEMBER_REFERENCES),
            ("loan_id", t.name in _LOAN_REFERENCES),
        )
        if refers
    )
    for t in TABLES
}
"""Per table, the columns through which its rows name a household, member or loan."""


@dataclass
class Answer:
    """What the batch says about one requested household, before it becomes a response model."""

    index: int
    household_id: str | None
    as_of: str
    problems: list[ContractProblem] = field(default_factory=list)
    error: str | None = None
    scores: ScoresRow | None = None
    village_context_as_of: str | None = None


VillageContextLookup = Callable[[str], tuple[str, VillageFigures] | None]
"""as_of ``YYYY-MM`` -> (as_of of the run it comes from, that run's village figures), or None."""


@dataclass(frozen=True)
class ScoredBatch:
    answers: list[HouseholdScore]
    features: pd.DataFrame
    """Feature rows the model saw, indexed by household_id (for the request log)."""


def cell_text(value: object) -> str | None:
    """A JSON scalar as the text a CSV export would hold (booleans ``true``/``false``)."""
    if value is None:
        return None
    if type(value) is str:  # most cells: skip the checks below
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)


def household_id_of(item: HouseholdInput) -> str | None:
    return _key(item.tables.households[0], "household_id")


def ownership_problems(item: HouseholdInput, household_id: str) -> list[ContractProblem]:
    """Rows that name another household, or a member or loan this household does not have."""
    tables = item.tables
    members = {t for r in tables.members if (t := _key(r, "member_id")) is not None}
    loans = {t for r in tables.loans if (t := _key(r, "loan_id")) is not None}
    problems: list[ContractProblem] = []
    # Members and loans hold stripped ids and household_id is one: a cell equal to one is its own key.
    ours = {"household_id": {None, household_id}, "member_id": {None, *members}, "loan_id": {None, *loans}}
    for name, references in _REFERENCES.items():  # the contract's table order
        rows = getattr(tables, name)
        # The cells straight into the set test (a missing column reads None, as _cells gives it): no list.
        if all(ours[c].issuperset(map(dict.get, rows, repeat(c))) for c in references):
            continue  # nearly every table of every household: no row to read one by one
        names_household = "household_id" in references
        for number, row in enumerate(rows, start=1):
            if names_household:
                named = _key(row, "household_id")
                if named is not None and named != household_id:
                    problems.append(
                        ContractProblem(
                            table=name,
                            row=number,
                            column="household_id",
                            rule="other_household",
                            reason=f"names household {named!r}, not {household_id!r} of this entry",
                        )
                    )
            if name in _MEMBER_REFERENCES:
                member = _key(row, "member_id")
                if member is not None and member not in members:
                    problems.append(_not_ours(name, number, "member_id", member, "member"))
            if name in _LOAN_REFERENCES:
                loan = _key(row, "loan_id")
                if loan is not None and loan not in loans:
                    problems.append(_not_ours(name, number, "loan_id", loan, "loan"))
    return problems


def _key(row: Row, column: str) -> str | None:
    value = row.get(column)
    # Ids are nearly always JSON strings: skip cell_text's call (thousands of cells a round).
    text = value if type(value) is str else cell_text(value)
    if text is None:
        return None
    stripped = text.strip()
    return stripped or None


def _not_ours(table: str, row: int, column: str, value: str, what: str) -> ContractProblem:
    return ContractProblem(
        table=table,
        row=row,
        column=column,
        rule="foreign_key",
        reason=f"{value!r} is not a {what} of this household",
    )


def loading_rounds(items: Sequence[HouseholdInput], indices: Sequence[int]) -> list[list[int]]:
    """Split households into rounds in which no household, member or loan id occurs twice."""
    rounds: list[list[int]] = []
    taken: list[set[tuple[str, str]]] = []
    for index in indices:
        tables = items[index].tables.table_rows()
        keys = {("household", k) for r in tables["households"] if (k := _key(r, "household_id"))}
        keys |= {("member", k) for r in tables["members"] if (k := _key(r, "member_id"))}
        keys |= {("loan", k) for r in tables["loans"] if (k := _key(r, "loan_id"))}
        for position, used in enumerate(taken):
            if not keys & used:
                rounds[position].append(index)
                used |= keys
                break
        else:
            rounds.append([index])
            taken.append(set(keys))
    return rounds


def policy_at(policy: Policy, as_of: dt.date) -> Policy:
    """The server's policy with ``data_end`` at the as-of month; ValueError says what is missing."""
    if as_of < policy.data_start:
        raise ValueError(
            f"as_of {format_month(as_of)} is before the policy's data_start {format_month(policy.data_start)}"
        )
    values = policy.to_json_dict()
    values["data_end"] = format_month(as_of)
    try:
        return Policy.model_validate(values)
    except ValidationError as exc:
        raise ValueError(
            f"the server's policy cannot score {format_month(as_of)}: "
            + "; ".join(e["msg"] for e in exc.errors())
        ) from None


class RoundRows(NamedTuple):
    """A round's households as one text table per contract table, and where each row came from."""

    tables: dict[str, pa.Table]
    origins: dict[str, RowOrigins]
    """Per table, (position of the household in the round, its 1-based row) of each row."""

    def household(self, position: int) -> RoundRows:
        """The rows of the round's ``position``-th household alone (zero-copy slices)."""
        tables: dict[str, pa.Table] = {}
        origins: dict[str, RowOrigins] = {}
        for name, table in self.tables.items():
            begin, end = self.origins[name].span(position)
            tables[name] = table.slice(begin, end - begin)
            origins[name] = RowOrigins([end - begin])
        return RoundRows(tables, origins)


def round_tables(items: Sequence[HouseholdInput]) -> RoundRows:
    """The households' rows as one text table per contract table; per table, (item, row) of each row."""
    tables: dict[str, pa.Table] = {}
    origins: dict[str, RowOrigins] = {}
    for table in TABLES:
        rows: list[Row] = []
        counts: list[int] = []
        for item in items:
            own = getattr(item.tables, table.name)
            rows += own
            counts.append(len(own))
        tables[table.name] = pa.table({c: _text_column(_cells(rows, c)) for c in table.column_names})
        origins[table.name] = RowOrigins(counts)
    return RoundRows(tables, origins)


class RowOrigins(Sequence[tuple[int, int]]):
    """(position of the item, 1-based row in that item's table) of each row of one round table.

    Kept as the items' row counts: only a round that the loader rejects rows of
    looks rows up, and a round of 32 households has thousands of rows.
    """

    def __init__(self, counts: Sequence[int]) -> None:
        self._ends = list(accumulate(counts))

    def span(self, position: int) -> tuple[int, int]:
        """[begin, end) of the rows of the item at ``position``."""
        return (self._ends[position - 1] if position else 0), self._ends[position]

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    @overload
    def __getitem__(self, index: int) -> tuple[int, int]: ...

    @overload
    def __getitem__(self, index: slice) -> list[tuple[int, int]]: ...

    def __getitem__(self, index: int | slice) -> tuple[int, int] | list[tuple[int, int]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        row = index + len(self) if index < 0 else index
        if not 0 <= row < len(self):
            raise IndexError(index)
        position = bisect_right(self._ends, row)
        return position, row - (self._ends[position - 1] if position else 0) + 1


def _cells(rows: Sequence[Row], column: str) -> list[JsonScalar]:
    """One column of the rows, None where a row lacks it."""
    try:
        return list(map(itemgetter(column), rows))  # a request's rows nearly always hold every column
    except KeyError:
        return [r.get(column) for r in rows]


_AS_THEY_ARE = frozenset({str, type(None)})
_STR_IS_CELL_TEXT = frozenset({str, int, float, type(None)})
"""Exact types whose ``str`` is :func:`cell_text` (a float's ``str`` is its ``repr``, ``inf`` and ``nan``
alike); booleans and anything else go through :func:`cell_text`."""


def _text_column(values: Sequence[JsonScalar]) -> pa.Array:
    """One column of cells as text (:func:`cell_text`), strings and nulls passed as they are."""
    if values and type(values[0]) is str:
        # Most columns hold only strings (and nulls): pyarrow checks each cell's type as it copies it and
        # refuses any other JSON scalar, which saves a pass over the cells to collect their types.
        try:
            return pa.array(values, type=pa.string())
        except pa.ArrowTypeError:
            pass
    kinds = set(map(type, values))
    if kinds <= _AS_THEY_ARE:
        return pa.array(values, type=pa.string())
    if type(None) not in kinds and kinds <= _STR_IS_CELL_TEXT:
        return pa.array(list(map(str, values)), type=pa.string())  # numbers from JSON: no call per cell
    return pa.array(list(map(cell_text, values)), type=pa.string())


def load_round(
    policy: Policy, rows: RoundRows, loader: RoundLoader = load_request_tables
) -> tuple[Dataset, dict[int, list[ContractProblem]]]:
    """Load one round through the project's loader; problems per position of the round's households.

    Raises :class:`DatasetError` when the loader refuses the round as a whole
    (for instance when no household or member row is valid); the message
    names the table.
    """
    tables, origins = rows
    dataset = loader(tables, policy)
    problems: dict[int, list[ContractProblem]] = {}
    for reject in all_rejects(dataset):
        origin: Sequence[tuple[int, int]] = origins.get(reject.table, [])
        if not 0 < reject.row <= len(origin):
            continue
        position, number = origin[reject.row - 1]
        problems.setdefault(position, []).append(
            ContractProblem(
                table=reject.table, row=number, column=reject.column, rule=reject.rule, reason=reject.reason
            )
        )
    return dataset, problems


def all_rejects(dataset: Dataset) -> list[Reject]:
    """Every reject, not only the first ones per rule that ``Dataset.rejects`` keeps."""
    if dataset.rejects_table is None or not dataset.rejects_truncated:
        return list(dataset.rejects)
    rows = dataset.connection.execute(
        "SELECT table_name, row, column_name, rule, reason, household_id, value "
        f"FROM {dataset.rejects_table} ORDER BY position"
    ).fetchall()
    return [Reject(*row) for row in rows]


def problems_summary(problems: Sequence[ContractProblem]) -> str:
    first = problems[0]
    more = f"; {len(problems) - 1} more problem(s)" if len(problems) > 1 else ""
    return f"{first.table} row {first.row}, {first.column}: {first.reason} ({first.rule}){more}"


@dataclass(frozen=True)
class PreparedRound:
    """Households loaded together: their positions in the batch and their rows as text tables."""

    indices: list[int]
    rows: RoundRows


@dataclass(frozen=True)
class PreparedMonth:
    """The loadable households of one as-of month, in rounds without a repeated id."""

    as_of: str
    as_of_month: dt.date
    rounds: list[PreparedRound]


@dataclass(frozen=True)
class PreparedBatch:
    """A batch checked and laid out for scoring: what needs no model and no policy.

    The server's worker prepares it and its scoring process scores it
    (serving/api/scoring_process.py): the text tables cross to that process as
    Arrow buffers instead of thousands of row dicts.
    """

    answers: list[Answer]
    """One per household, in order; those with problems already are not in any round."""
    months: list[PreparedMonth]


def prepare_households(items: Sequence[HouseholdInput]) -> PreparedBatch:
    """Ownership checks, as-of months and loading rounds of ``items``, each round as text tables."""
    answers = [
        Answer(index=i, household_id=household_id_of(item), as_of=item.as_of) for i, item in enumerate(items)
    ]
    loadable: dict[str, list[int]] = {}
    for answer, item in zip(answers, items, strict=True):
        if answer.household_id is None:
            answer.problems = [
                ContractProblem(
                    table="households",
                    row=1,
                    column="household_id",
                    rule="not_null",
                    reason="household_id is missing",
                )
            ]
            continue
        answer.problems = ownership_problems(item, answer.household_id)
        if not answer.problems:
            loadable.setdefault(item.as_of, []).append(answer.index)
    months = [
        PreparedMonth(
            as_of=as_of,
            as_of_month=items[indices[0]].as_of_month,
            rounds=[
                PreparedRound(indices=indices, rows=round_tables([items[i] for i in indices]))
                for indices in loading_rounds(items, indices)
            ],
        )
        for as_of, indices in loadable.items()
    ]
    return PreparedBatch(answers=answers, months=months)


def score_prepared(
    batch: PreparedBatch,
    *,
    served: ResolvedModel,
    policy: Policy,
    village_contexts: VillageContextLookup,
    loader: RoundLoader = load_request_tables,
    in_memory: bool = True,
) -> ScoredBatch:
    """Answers for a prepared batch in its order, and the feature rows the model was given.

    ``in_memory``: a round that keeps the contract is checked and scored
    without DuckDB (:func:`_score_in_memory`, equal to the loader's path by
    tests/test_household_rows.py); ``loader`` then only sees the other rounds.
    """
    answers = batch.answers
    feature_parts: list[pd.DataFrame] = []
    for month in batch.months:
        try:
            month_policy = policy_at(policy, month.as_of_month)
        except ValueError as exc:
            for prepared in month.rounds:
                for index in prepared.indices:
                    answers[index].error = str(exc)
            continue
        context = village_contexts(month.as_of)
        for prepared in month.rounds:
            feature_parts += _score_round(
                prepared.rows,
                [answers[i] for i in prepared.indices],
                as_of=month.as_of_month,
                policy=month_policy,
                served=served,
                context=context,
                loader=loader,
                in_memory=in_memory,
            )

    if len(feature_parts) == 1:
        features = feature_parts[0]  # one round, nearly every batch: no concatenation copying its rows
    else:
        features = pd.concat(feature_parts) if feature_parts else pd.DataFrame()
    return ScoredBatch(answers=[_response(a, served) for a in answers], features=features)


def _score_round(
    rows: RoundRows,
    answers: list[Answer],
    *,
    as_of: dt.date,
    policy: Policy,
    served: ResolvedModel,
    context: tuple[str, VillageFigures] | None,
    loader: RoundLoader,
    in_memory: bool,
) -> list[pd.DataFrame]:
    def alone(message: str) -> list[pd.DataFrame]:
        # One household's data must not sink the others: score each on its own.
        if len(answers) == 1:
            answers[0].error = message
            return []
        parts: list[pd.DataFrame] = []
        for position, answer in enumerate(answers):
            parts += _score_round(
                rows.household(position),
                [answer],
                as_of=as_of,
                policy=policy,
                served=served,
                context=context,
                loader=loader,
                in_memory=in_memory,
            )
        return parts

    if in_memory:
        scored = _score_in_memory(rows, as_of=as_of, policy=policy, served=served, context=context)
        if scored is not None:
            return [_answer_round(answers, *scored, context)]
    try:
        dataset, problems = load_round(policy, rows, loader)
    except DatasetError as exc:
        return alone(str(exc))
    for position, found in problems.items():
        answers[position].problems = found
    try:
        # One rules panel and state serve the features and the statuses of score_dataset.
        panel = features_panel(dataset, as_of)
        state = rule_state(panel, dataset.policy)
        features = build_features(dataset, as_of, panel=panel, state=state)
        from_run = np.zeros(len(features), dtype=bool)
        if context is not None:
            villages = dataset.sql("SELECT household_id, village_code FROM households").df()
            features, from_run = apply_village_context(features, villages, context[1])
        scores = score_dataset(
            dataset,
            as_of,
            served.model,
            model_name=served.name,
            model_version=served.version,
            explain="all",
            horizon=served.horizon,
            features=features,
            state=state,
        )
    except ValueError as exc:  # the documented refusal of build_features and score_dataset
        for answer in answers:
            answer.problems = []
        return alone(f"could not be scored: {exc}")
    finally:
        dataset.connection.close()
    by_household: dict[str, ScoresRow] = {row["household_id"]: row for row in scores.to_dict("records")}
    return [_answer_round(answers, features, from_run, by_household, context)]


def _score_in_memory(
    rows: RoundRows,
    *,
    as_of: dt.date,
    policy: Policy,
    served: ResolvedModel,
    context: tuple[str, VillageFigures] | None,
) -> tuple[pd.DataFrame, np.ndarray, dict[str, ScoresRow]] | None:
    """A round that keeps the contract, checked and scored without DuckDB (see features.household_rows).

    Returns (features, which rows took the batch run's village figures, each
    household's scores row as :func:`scores_by_household` gives it),
    or None when the round must go through the loader: a row the loader would
    reject (its report is the loader's), or anything computed here only
    approximately, or a refusal whose words are the DuckDB path's.
    """
    clean = read_clean_tables(rows.tables, policy)
    if clean is None:
        return None
    try:
        panel, state = household_panel(clean, as_of)
        features = household_features(clean, as_of, panel=panel, state=state)
    except (NotExact, ValueError):
        return None
    households = clean.columns["households"]
    from_run = np.zeros(len(features), dtype=bool)
    if context is not None:
        villages = pd.DataFrame(
            {"household_id": households["household_id"], "village_code": households["village_code"]}
        )
        features, from_run = apply_village_context(features, villages, context[1])
    # The roster as household_roster gives it: area codes of every household, rows by household_id.
    order = np.argsort(households["household_id"], kind="stable")
    roster = pd.DataFrame(
        {c: households[c][order] for c in ("household_id", "county_code", "township_code", "village_code")},
        dtype=object,
    )
    try:
        figures = roster_scores(
            roster,
            {},
            policy,
            served.model,
            features=features,
            facts=rule_facts_at(None, as_of, state=state),
            explain="all",
            explain_threads=EXPLAIN_THREADS,
        )
    except ValueError:
        return None
    horizon = served.horizon if served.horizon is not None else getattr(served.model, "horizon", None)
    horizon_months = int(horizon if horizon is not None else DEFAULT_HORIZON_MONTHS)
    return features, from_run, scores_by_household(roster["household_id"].to_numpy(), figures, horizon_months)


def scores_by_household(
    household_ids: np.ndarray, figures: RosterScores, horizon_months: int
) -> dict[str, ScoresRow]:
    """What an answer reads of the scores table's row of each household, straight from the figures.

    The same values as that row (:func:`serving.scoring.scores_table`), without
    building the table: an answer needs a dozen of its thirty columns.
    """
    rows: dict[str, ScoresRow] = {}
    for i, household_id in enumerate(household_ids.tolist()):
        row: dict[Hashable, object] = {
            "household_id": household_id,
            "horizon_months": horizon_months,
            "status": figures.status[i],
            "risk_score": figures.risk_score[i],
            "risk_band": figures.risk_band[i],
            "rule_margin": figures.rule_margin[i],
            "triggered_rule": figures.triggered_rule[i],
            "reject_reason": figures.reject_reason[i],
        }
        for column, values in figures.reasons.items():
            row[column] = values[i]
        rows[household_id] = row
    return rows


def _answer_round(
    answers: list[Answer],
    features: pd.DataFrame,
    from_run: np.ndarray,
    by_household: Mapping[str, ScoresRow],
    context: tuple[str, VillageFigures] | None,
) -> pd.DataFrame:
    """Fill the answers of a scored round from each household's scores row; the feature rows scored."""
    household_ids = features["household_id"].to_numpy()
    context_households = set(household_ids[from_run]) if context is not None else set()
    for answer in answers:
        if answer.problems or answer.household_id is None:
            continue
        row = by_household.get(answer.household_id)
        if row is None:
            answer.error = "the household was not scored"
            continue
        answer.scores = row
        if answer.household_id in context_households and context is not None:
            answer.village_context_as_of = context[0]
    served_ids = {a.household_id for a in answers if a.scores is not None}
    # A round's few ids looked up one by one; nearly always every row was served and none is dropped.
    served = np.fromiter(
        (h in served_ids for h in household_ids.tolist()), dtype=bool, count=len(household_ids)
    )
    return (features if served.all() else features[served]).set_index("household_id")


def _rounded(value: object, decimals: int) -> float | None:
    # Rounded as the batch job writes them, so both give the same figures.
    number = float_or_none(value)
    return None if number is None else round(number, decimals)


class _Common(TypedDict):
    """The fields every answer states, whatever became of the household."""

    household_id: str | None
    as_of: str
    model_name: str
    model_version: str


def _response(answer: Answer, served: ResolvedModel) -> HouseholdScore:
    common: _Common = {
        "household_id": answer.household_id,
        "as_of": answer.as_of,
        "model_name": served.name,
        "model_version": served.version,
    }
    if answer.problems:
        return HouseholdScore(
            status="rejected", error=problems_summary(answer.problems), problems=answer.problems, **common
        )
    if answer.scores is None:
        return HouseholdScore(
            status="rejected", error=answer.error or "the household was not scored", **common
        )
    row = answer.scores
    status = score_status(str(row["status"]))
    return HouseholdScore(
        status=status,
        risk_score=_rounded(row.get("risk_score"), RISK_SCORE_DECIMALS),
        risk_band=risk_band(text_or_none(row.get("risk_band"))),
        rule_margin=_rounded(row.get("rule_margin"), RULE_MARGIN_DECIMALS),
        triggered_rule=text_or_none(row.get("triggered_rule")),
        horizon_months=int_or_none(row.get("horizon_months")),
        reasons=reasons_of(row),
        error=text_or_none(row.get("reject_reason")) if status == "rejected" else None,
        village_context_as_of=answer.village_context_as_of,
        **common,
    )
