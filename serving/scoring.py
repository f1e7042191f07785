"""Score every household of a dataset at one as-of month: the one scoring path.

The quarterly batch job (:mod:`serving.batch`) and the API (:mod:`serving.api.service`)
both call :func:`score_dataset`, so a household gets the same status, score,
band and reasons from either, for the same rows, as-of month and model version.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
import pandas as pd
from relapse_risk.features.contract import format_month
from relapse_risk.features.dataset import Dataset, Reject
from relapse_risk.features.history import build_features, features_panel
from relapse_risk.features.policy import Policy
from relapse_risk.features.rules import RISK_TYPE_NAMES, STATE_MONTHS, RuleState, build_panel, rule_state
from relapse_risk.features.stages import StageTimes
from relapse_risk.models.explain import contribution_tables, explain_reasons, reason_field
from relapse_risk.models.model import RiskModel
from relapse_risk.models.reasons import Reason

if TYPE_CHECKING:
    from relapse_risk.models.treeshap import TreeShapTables

from .config import DEFAULT_HORIZON_MONTHS, RISK_BAND_CUTOFFS, RiskBandCutoffs, risk_bands

ExplainScope = Literal["visit_list", "all", "none"]

REASON_SLOTS = (1, 2, 3)
REASON_FIELDS = ("code", "zh", "en", "measure")
REASON_COLUMNS: tuple[str, ...] = tuple(
    f"reason_{slot}_{field}" for slot in REASON_SLOTS for field in REASON_FIELDS
)

SCORE_COLUMNS: tuple[str, ...] = (
    "household_id",
    "county_code",
    "township_code",
    "village_code",
    "as_of",
    "horizon_months",
    "status",
    "risk_score",
    "risk_band",
    "rank_county",
    "rank_township",
    "rank_village",
    "in_visit_list",
    "rule_margin",
    "triggered_rule",
    *REASON_COLUMNS,
    "reject_reason",
    "model_name",
    "model_version",
)
"""Columns of the scores table, in the order of docs/outputs.md."""

STATUSES = ("scored", "under_monitoring", "triggered_now", "rejected")
AREA_LEVELS = ("county", "township", "village")

SCORING_STAGES = ("rules", "features", "score", "rank", "explain")
"""Stages of :func:`run_scoring`, in order; timings and progress use these names."""

PREDICT_CHUNK_ROWS = 100_000
EXPLAIN_CHUNK_ROWS = 10_000

ProgressCallback = Callable[[str, int, int], None]
"""Called as ``progress(stage, done, total)`` while a stage advances (households)."""

_NONE = np.array(None, dtype=object)
"""None as numpy reads it in ``np.where``: a 0-d object array (numpy's stubs take no bare None)."""


class ScoringModel(Protocol):
    """What scoring needs of a model: models.model.RiskModel provides it."""

    feature_names_: tuple[str, ...]

    def raw_score(self, X: pd.DataFrame) -> np.ndarray: ...

    def calibrate(self, raw_score: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class ResolvedModel:
    """A model ready to score, and the registry facts every output records.

    One type for the batch job and the API's scoring process: it holds no MLflow
    object, so the HTTP worker can import it without loading MLflow
    (serving/registered_model.py resolves it from the registry).
    """

    model: ScoringModel
    name: str
    version: str
    uri: str
    run_id: str | None = None
    horizon: int | None = None
    """Horizon the model was trained for, when its run recorded one."""
    trained_through: str | None = None
    """The latest as-of month (YYYY-MM) whose label the model learned from, when its run recorded one."""
    count_calibration: dict[str, object] | None = None
    """The backtest's count error and first-rule shares (``relapse outlook``), when its run recorded them."""


@dataclass(frozen=True)
class ScoringResult:
    scores: pd.DataFrame
    """The scores table (see :func:`score_dataset`)."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time per stage of :data:`SCORING_STAGES`."""
    explained: int = 0
    """Households whose reasons were computed."""
    features: pd.DataFrame | None = None
    """The feature table the model was given (household_id and feature columns, every household)."""


def score_dataset(
    dataset: Dataset,
    as_of: dt.date,
    model: ScoringModel,
    *,
    model_name: str,
    model_version: str,
    explain: ExplainScope = "visit_list",
    horizon: int | None = None,
    rejected_roster: pd.DataFrame | None = None,
    cutoffs: RiskBandCutoffs = RISK_BAND_CUTOFFS,
    features: pd.DataFrame | None = None,
    state: RuleState | None = None,
) -> pd.DataFrame:
    """The scores table of docs/outputs.md for every household of ``dataset`` at ``as_of``.

    One row per household, sorted by ``household_id``, with the columns of
    :data:`SCORE_COLUMNS` (pandas nullable dtypes: ``string``, ``Float64``,
    ``Int64``, ``boolean``):

    - ``status``: ``rejected`` when any of the household's rows was rejected by
      the loader (``reject_reason`` says "table row N, column: reason"); else
      ``under_monitoring`` when a monitoring record is open at ``as_of``; else
      ``triggered_now`` when a rule of docs/rules-and-labels.md fires at ``as_of``
      (``triggered_rule`` names it); else ``scored``.
    - ``risk_score`` (calibrated probability that a rule fires within
      ``horizon`` months), ``risk_band`` (cut-offs of
      :data:`serving.config.RISK_BAND_CUTOFFS`) and ``rank_county`` /
      ``rank_township`` / ``rank_village`` (1 = highest risk among the scored
      households of that area) are set for ``scored`` households only. Ties in
      the calibrated score are broken by the model's raw score, then by
      ``household_id``.
    - ``in_visit_list``: among the top ``ceil(policy.visit_share x scored
      households of the county)`` of the county; False for everyone else.
    - ``rule_margin``: the rule-baseline margin at ``as_of`` (null where the
      income is undefined, and for rejected households).
    - ``reason_{1..3}_{code,zh,en,measure}``: for the visit list
      (``explain="visit_list"``), every scored household (``"all"``) or nobody
      (``"none"``). SHAP runs only on those rows. ``reason_i_measure`` is the
      stable code of the support measure (``models.reasons.MEASURES`` has its
      Chinese and English text), like ``reason_i_code`` for the reason.

    ``model`` is a fitted ``RiskModel`` (models/); ``model_name`` and
    ``model_version`` are copied into every row. ``horizon`` defaults to the
    model's own ``horizon`` attribute when it has one, else 6 months.
    ``as_of`` must lie within the policy's data_start .. data_end; only rows
    dated up to ``as_of`` are used.

    ``rejected_roster`` (household_id, county_code, township_code,
    village_code) supplies the area codes of households whose own households
    row was rejected, so they still appear with status ``rejected``; without it
    they appear with null codes.

    ``features``: the feature table of :func:`features.history.build_features`
    for this dataset and ``as_of``, when the caller already built it (the API
    builds it to put the batch run's village figures in place, see
    :mod:`serving.village_context`, and to log what the model saw); None
    builds it here.

    ``state``: the rule state of ``features_panel(dataset, as_of)`` (or of any
    panel through ``as_of``) when the caller built it for its features (the API
    does); None builds it here.

    Raises ``ValueError`` naming the problem when ``as_of`` is outside the data
    or the model's features cannot be built from the dataset.
    """
    return run_scoring(
        dataset,
        as_of,
        model,
        model_name=model_name,
        model_version=model_version,
        explain=explain,
        horizon=horizon,
        rejected_roster=rejected_roster,
        cutoffs=cutoffs,
        features=features,
        state=state,
    ).scores


def run_scoring(
    dataset: Dataset,
    as_of: dt.date,
    model: ScoringModel,
    *,
    model_name: str,
    model_version: str,
    explain: ExplainScope = "visit_list",
    horizon: int | None = None,
    rejected_roster: pd.DataFrame | None = None,
    cutoffs: RiskBandCutoffs = RISK_BAND_CUTOFFS,
    progress: ProgressCallback | None = None,
    features: pd.DataFrame | None = None,
    state: RuleState | None = None,
    times: StageTimes | None = None,
) -> ScoringResult:
    """:func:`score_dataset` with per-stage timings and progress reports (for long batch runs).

    ``times`` receives the stages of :data:`SCORING_STAGES` (and logs them if it has a logger).
    """
    if explain not in ("visit_list", "all", "none"):
        raise ValueError(f"explain must be 'visit_list', 'all' or 'none', not {explain!r}")
    policy = dataset.policy
    as_of = as_of.replace(day=1)
    if not policy.data_start <= as_of <= policy.data_end:
        raise ValueError(
            f"as-of month {format_month(as_of)} is outside the data "
            f"({format_month(policy.data_start)} .. {format_month(policy.data_end)})"
        )
    horizon_months = int(
        horizon if horizon is not None else getattr(model, "horizon", DEFAULT_HORIZON_MONTHS)
    )
    report = progress or _no_progress
    times = StageTimes() if times is None else times

    with times.stage("rules"):
        rejects = rejects_frame(dataset)
        roster = household_roster(dataset, rejects, rejected_roster)
        report("rules", 0, len(roster))
        # The rules panel and state serve both the statuses here and the features below: built once,
        # with the per-source income sums of the features, which then make no pass over income of their own.
        panel = features_panel(dataset, as_of) if features is None else None
        if state is None:
            if panel is None:
                panel = build_panel(dataset, through=as_of, months=STATE_MONTHS)
            state = rule_state(panel, policy)
        facts = rule_facts_at(dataset, as_of, state=state)
    report("rules", len(roster), len(roster))
    if features is None:
        with times.stage("features"):
            report("features", 0, len(roster))
            features = build_features(dataset, as_of, panel=panel, state=state)
            report("features", len(roster), len(roster))
    # The panel and rule state are the largest arrays of a batch run: gone before scoring.
    del panel, state
    return score_roster(
        roster,
        rejects,
        policy,
        as_of,
        model,
        features=features,
        facts=facts,
        model_name=model_name,
        model_version=model_version,
        explain=explain,
        horizon_months=horizon_months,
        cutoffs=cutoffs,
        progress=report,
        times=times,
    )


def score_roster(
    roster: pd.DataFrame,
    rejects: pd.DataFrame,
    policy: Policy,
    as_of: dt.date,
    model: ScoringModel,
    *,
    features: pd.DataFrame,
    facts: pd.DataFrame,
    model_name: str,
    model_version: str,
    explain: ExplainScope,
    horizon_months: int,
    cutoffs: RiskBandCutoffs = RISK_BAND_CUTOFFS,
    progress: ProgressCallback | None = None,
    times: StageTimes | None = None,
    explain_threads: int = 1,
) -> ScoringResult:
    """:func:`run_scoring` once the households, the rejects, the rule state and the features are known.

    ``roster`` is :func:`household_roster`'s frame, ``rejects`` :func:`rejects_frame`'s,
    ``facts`` :func:`rule_facts_at`'s and ``features`` the feature table at ``as_of``.
    The figures come from :func:`roster_scores`, laid out by :func:`scores_table`.
    """
    times = StageTimes() if times is None else times
    figures = roster_scores(
        roster,
        rejected_household_reasons(rejects),
        policy,
        model,
        features=features,
        facts=facts,
        explain=explain,
        cutoffs=cutoffs,
        progress=progress,
        times=times,
        explain_threads=explain_threads,
    )
    scores = scores_table(
        roster,
        figures,
        as_of=as_of,
        horizon_months=horizon_months,
        model_name=model_name,
        model_version=model_version,
    )
    return ScoringResult(
        scores=scores, seconds=dict(times.wall), explained=figures.explained, features=figures.features
    )


@dataclass(frozen=True)
class RosterScores:
    """The figures of the scores table, one array entry per roster row (see :func:`score_dataset`).

    The API answers single households from these arrays; the batch lays them
    out as the scores table with :func:`scores_table`. Both come from one call
    of :func:`roster_scores`, so they cannot disagree.
    """

    status: np.ndarray
    """One of :data:`STATUSES` (object array of str)."""
    reject_reason: np.ndarray
    """Object array: the reason of rejected households, else None."""
    risk_score: np.ndarray
    """Calibrated score (float64), NaN unless scored."""
    risk_band: np.ndarray
    """Object array: ``high`` / ``medium`` / ``low``, None unless scored."""
    ranks: dict[str, np.ndarray]
    """Per level of :data:`AREA_LEVELS`: rank among the scored households of the area, 0 unless scored."""
    in_visit_list: np.ndarray
    rule_margin: np.ndarray
    """float64, NaN where the income is undefined and for rejected households."""
    triggered_rule: np.ndarray
    """Object array: the rule's name for ``triggered_now`` households, else None."""
    reasons: dict[str, np.ndarray]
    """Per column of :data:`REASON_COLUMNS`: object array of str, None where not explained."""
    explained: int
    """Households whose reasons were computed."""
    features: pd.DataFrame
    """The feature table given (household_id and feature columns)."""


def roster_scores(
    roster: pd.DataFrame,
    rejected: Mapping[str, str],
    policy: Policy,
    model: ScoringModel,
    *,
    features: pd.DataFrame,
    facts: pd.DataFrame,
    explain: ExplainScope,
    cutoffs: RiskBandCutoffs = RISK_BAND_CUTOFFS,
    progress: ProgressCallback | None = None,
    times: StageTimes | None = None,
    explain_threads: int = 1,
) -> RosterScores:
    """Status, score, band, ranks, visit flag, margin, rule and reasons of every roster household.

    ``rejected`` is :func:`rejected_household_reasons` of the rejects (empty
    when nothing was rejected). ``times``, when given, receives the time of
    the stages of :data:`SCORING_STAGES`; a ``rules`` or ``features`` stage
    :func:`run_scoring` already began there is finished here without being
    announced a second time.

    ``explain_threads`` > 1 explains that many slices of the rows at once when
    LightGBM computes the contributions (it releases the interpreter while it
    works, and its own threads do not speed up a few rows); each row's reasons
    are the same whatever the slicing.
    """
    report = progress or _no_progress
    times = StageTimes() if times is None else times
    total = len(roster)
    ids = roster["household_id"].to_numpy()
    # The tails of stages that run_scoring began and reported: counted in their time, not reported again.
    rules_reported, features_reported = "rules" in times.wall, "features" in times.wall
    with times.stage("rules", quiet=rules_reported):
        # Facts cover the households table; the roster adds households whose row was rejected.
        fact_row = _positions(facts["household_id"].to_numpy(), ids)
        status, reject_reason = _household_status(ids, facts, fact_row, rejected)
    if not rules_reported:
        report("rules", total, total)

    with times.stage("features", quiet=features_reported):
        if not features_reported:
            report("features", 0, total)
        if "household_id" not in features.columns:
            features = features.reset_index()
        scored_mask = status == "scored"
        # Positions, not a copy: the feature table of a million households is 1.9 GB, and each
        # chunk below takes its own rows.
        feature_row = _feature_rows(features, ids, scored_mask, "build_features")
        scored_rows = feature_row[scored_mask]
    if not features_reported:
        report("features", total, total)

    with times.stage("score"):
        report("score", 0, len(scored_rows))
        # The trees flattened for the reasons also predict: LightGBM's raw scores bit for bit, a
        # third faster (models/treeshap.py). Models they cannot take are scored by LightGBM.
        trees = _flattened_trees(model)
        raw = np.empty(len(scored_rows), dtype=np.float64)
        for begin in range(0, len(scored_rows), PREDICT_CHUNK_ROWS):
            chunk = _take(features, scored_rows[begin : begin + PREDICT_CHUNK_ROWS])
            raw[begin : begin + len(chunk)] = (
                model.raw_score(chunk)
                if trees is None or not isinstance(model, RiskModel)
                else trees.raw_scores(model.feature_matrix(chunk))
            )
            report("score", begin + len(chunk), len(scored_rows))
        probability = model.calibrate(raw) if len(raw) else np.zeros(0)

    n = total
    with times.stage("rank"):
        report("rank", 0, n)
        risk_score = np.full(n, np.nan)
        risk_score[scored_mask] = probability
        raw_full = np.full(n, np.nan)
        raw_full[scored_mask] = raw
        ranks = ranks_by_level(
            {level: roster[f"{level}_code"].to_numpy(dtype=object) for level in AREA_LEVELS},
            risk_score,
            raw_full,
            scored_mask,
        )
        visit = visit_list_flags(
            roster["county_code"].to_numpy(dtype=object), ranks["county"], scored_mask, policy.visit_share
        )
        report("rank", n, n)

    with times.stage("explain"):
        explain_mask = {"visit_list": visit, "all": scored_mask, "none": np.zeros(n, dtype=bool)}[explain]
        explained_features = _take(features, feature_row[explain_mask])
        chosen = _explain_in_chunks(
            explain_reasons, model, explained_features, report, threads=explain_threads
        )

    known = fact_row >= 0
    margin = np.full(n, np.nan)
    margin[known] = facts["margin"].to_numpy(dtype=np.float64, na_value=np.nan)[fact_row[known]]
    margin = np.where(status == "rejected", np.nan, margin)
    rules = np.full(n, None, dtype=object)
    rules[known] = facts["triggered_rule"].to_numpy(dtype=object)[fact_row[known]]
    triggered_rule = np.where(status == "triggered_now", rules, _NONE)
    explained_rows = np.flatnonzero(explain_mask)
    reasons: dict[str, np.ndarray] = {}
    for slot in REASON_SLOTS:
        for field_name in REASON_FIELDS:
            values = np.full(n, None, dtype=object)
            values[explained_rows] = [
                reason_field(found[slot - 1] if slot <= len(found) else None, field_name) for found in chosen
            ]
            reasons[f"reason_{slot}_{field_name}"] = values
    return RosterScores(
        status=status,
        reject_reason=reject_reason,
        risk_score=risk_score,
        risk_band=risk_bands(risk_score, cutoffs),
        ranks=ranks,
        in_visit_list=visit,
        rule_margin=margin,
        triggered_rule=triggered_rule,
        reasons=reasons,
        explained=int(explain_mask.sum()),
        features=features,
    )


def scores_table(
    roster: pd.DataFrame,
    figures: RosterScores,
    *,
    as_of: dt.date,
    horizon_months: int,
    model_name: str,
    model_version: str,
) -> pd.DataFrame:
    """The scores table of docs/outputs.md (:data:`SCORE_COLUMNS`, pandas nullable dtypes) of the roster."""
    n = len(roster)
    scores = pd.DataFrame(
        {
            "household_id": pd.array(roster["household_id"].to_numpy(), dtype="string"),
            "county_code": pd.array(roster["county_code"].to_numpy(), dtype="string"),
            "township_code": pd.array(roster["township_code"].to_numpy(), dtype="string"),
            "village_code": pd.array(roster["village_code"].to_numpy(), dtype="string"),
            "as_of": pd.array([format_month(as_of)] * n, dtype="string"),
            "horizon_months": pd.array(np.full(n, horizon_months), dtype="Int64"),
            "status": pd.array(figures.status, dtype="string"),
            "risk_score": pd.array(figures.risk_score, dtype="Float64"),
            "risk_band": pd.array(figures.risk_band, dtype="string"),
            "rank_county": _nullable_ints(figures.ranks["county"]),
            "rank_township": _nullable_ints(figures.ranks["township"]),
            "rank_village": _nullable_ints(figures.ranks["village"]),
            "in_visit_list": pd.array(figures.in_visit_list, dtype="boolean"),
            "rule_margin": pd.array(figures.rule_margin, dtype="Float64"),
            "triggered_rule": pd.array(figures.triggered_rule, dtype="string"),
            "reject_reason": pd.array(figures.reject_reason, dtype="string"),
            "model_name": pd.array([model_name] * n, dtype="string"),
            "model_version": pd.array([str(model_version)] * n, dtype="string"),
        }
    )
    for column in REASON_COLUMNS:
        scores[column] = pd.array(figures.reasons[column], dtype="string")
    return scores.loc[:, list(SCORE_COLUMNS)]


def _positions(index: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Position of each ``wanted`` value in ``index`` (-1 where absent); ``index`` must be unique."""
    labels = pd.Index(index)
    if not labels.is_unique:
        raise ValueError("cannot reindex on an axis with duplicate labels")
    return labels.get_indexer(pd.Index(wanted))


# -- the pieces, each a pure function ----------------------------------------------------------


def household_roster(
    dataset: Dataset, rejects: pd.DataFrame, rejected_roster: pd.DataFrame | None = None
) -> pd.DataFrame:
    """household_id and area codes of every household: the households table plus rejected ones.

    Households whose households row was rejected are not in the table; they
    come from ``rejected_roster`` when given, else from the rejects with null
    codes, so that every household of the input has a row. Sorted by id.
    """
    query = "SELECT household_id, county_code, township_code, village_code FROM households"
    roster: pd.DataFrame = dataset.sql(query).df()
    known = set(roster["household_id"])
    # Only a rejected households row stands for a household of the input; an id
    # seen only in another table's orphan row (foreign key broken) is reported
    # in the rejects, not invented as a household.
    households_rejects = rejects[(rejects["table"] == "households") & rejects["household_id"].notna()]
    missing = sorted(set(households_rejects["household_id"]) - known)
    if missing:
        extra = pd.DataFrame({"household_id": missing})
        if rejected_roster is not None and len(rejected_roster):
            codes = rejected_roster.drop_duplicates("household_id").set_index("household_id")
            for column in ("county_code", "township_code", "village_code"):
                extra[column] = (
                    codes[column].reindex(missing).to_numpy(dtype=object) if column in codes else None
                )
        else:
            for column in ("county_code", "township_code", "village_code"):
                extra[column] = None
        roster = pd.concat([roster, extra], ignore_index=True)
    # pandas-stubs take no None for ``other``; pandas documents it, and it is what turns NaN into None here.
    roster = roster.astype(object).where(roster.notna(), None)  # type: ignore[call-overload]
    return roster.sort_values("household_id", kind="stable", ignore_index=True)


def rule_facts_at(dataset: Dataset | None, as_of: dt.date, state: RuleState | None = None) -> pd.DataFrame:
    """Monitoring status, rule firing and margin of every household at ``as_of``, from rows up to it.

    Columns household_id, under_monitoring, triggered_now, triggered_rule
    (name or None), margin (NaN where income is undefined). ``state``: the
    rule state of a panel through ``as_of`` when the caller already has it;
    None builds the state of its last STATE_MONTHS months, all it needs.
    """
    if state is None:
        if dataset is None:
            raise ValueError("rule_facts_at needs the dataset or its rule state")
        state = rule_state(build_panel(dataset, through=as_of, months=STATE_MONTHS), dataset.policy)
    t = state.column(as_of)
    codes = state.risk_type[:, t].astype(np.int64)
    names = np.array(RISK_TYPE_NAMES + (None,), dtype=object)
    return pd.DataFrame(
        {
            "household_id": state.household_ids,
            "under_monitoring": state.under_monitoring[:, t],
            "triggered_now": state.triggered[:, t],
            "triggered_rule": names[np.where(codes >= 0, codes, len(RISK_TYPE_NAMES))],
            "margin": state.margin[:, t],
        }
    )


REJECT_COLUMNS = ("table", "row", "column", "rule", "reason", "household_id", "value")


def rejects_frame(dataset: Dataset) -> pd.DataFrame:
    """Every rejected row of the load, in the loader's order, with the columns of :data:`REJECT_COLUMNS`.

    The loader may keep only the first rejects of each rule in
    ``dataset.rejects``; its DuckDB rejects table, when there is one, has them all.
    """
    if dataset.rejects_table is not None:
        frame: pd.DataFrame = dataset.sql(
            f"""SELECT table_name AS "table", "row", column_name AS "column", rule, reason,
                       household_id, value
                FROM {dataset.rejects_table} ORDER BY position"""
        ).df()
        return frame
    return rejects_to_frame(dataset.rejects)


def rejects_to_frame(rejects: Sequence[Reject]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "table": pd.Series([r.table for r in rejects], dtype=object),
            "row": pd.Series([r.row for r in rejects], dtype="Int64"),
            "column": pd.Series([r.column for r in rejects], dtype=object),
            "rule": pd.Series([r.rule for r in rejects], dtype=object),
            "reason": pd.Series([r.reason for r in rejects], dtype=object),
            "household_id": pd.Series([r.household_id for r in rejects], dtype=object),
            "value": pd.Series([r.value for r in rejects], dtype=object),
        },
        columns=list(REJECT_COLUMNS),
    )


def rejected_household_reasons(rejects: pd.DataFrame) -> dict[str, str]:
    """Household id -> "table row N, column: reason (rule)" of its first rejected row, plus how many more."""
    known = rejects[rejects["household_id"].notna()]
    if known.empty:
        return {}
    grouped = known.groupby("household_id", sort=True)
    first = grouped.head(1).set_index("household_id")
    counts = grouped.size().to_dict()
    reasons = {}
    for household_id, r in first.iterrows():
        more = int(counts[household_id]) - 1
        suffix = f"; {more} more rejected row(s)" if more else ""
        reasons[str(household_id)] = (
            f"{r['table']} row {r['row']}, {r['column']}: {r['reason']} ({r['rule']}){suffix}"
        )
    return reasons


def household_status(
    household_ids: pd.Series, facts: pd.DataFrame, rejected: Mapping[str, str]
) -> tuple[np.ndarray, np.ndarray]:
    """Status and reject reason per household (arrays aligned with ``household_ids``).

    Precedence: rejected, then under_monitoring, then triggered_now, else
    scored. A household missing from ``facts`` (its households row was
    rejected) can only be rejected.
    """
    ids = household_ids.to_numpy()
    # Positions instead of a reindexed copy of the facts: the API calls this for every round of one household.
    return _household_status(ids, facts, _positions(facts["household_id"].to_numpy(), ids), rejected)


def _household_status(
    ids: np.ndarray, facts: pd.DataFrame, fact_row: np.ndarray, rejected: Mapping[str, str]
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`household_status` once the facts row of each household (-1: none) is known."""
    known = fact_row >= 0
    under_monitoring = np.zeros(len(ids), dtype=bool)
    under_monitoring[known] = _is_true(facts["under_monitoring"])[fact_row[known]]
    triggered_now = np.zeros(len(ids), dtype=bool)
    triggered_now[known] = _is_true(facts["triggered_now"])[fact_row[known]]
    reason = np.array([rejected.get(h) for h in ids.tolist()], dtype=object)
    is_rejected = pd.notna(reason)
    status = np.select(
        [is_rejected, under_monitoring, triggered_now],
        ["rejected", "under_monitoring", "triggered_now"],
        default="scored",
    ).astype(object)
    has_facts = known.copy()
    monitored = facts["under_monitoring"]
    # A numpy boolean column (rule_facts_at's) has no missing value: no pandas pass to find none.
    if monitored.dtype != np.bool_:
        has_facts[known] = monitored.notna().to_numpy(dtype=bool)[fact_row[known]]
    missing_facts = ~has_facts & ~is_rejected
    if missing_facts.any():
        first = ids[missing_facts][0]
        raise ValueError(f"household {first!r} has no rule facts although it was not rejected")
    return status, np.where(is_rejected, reason, _NONE)


def _is_true(column: pd.Series) -> np.ndarray:
    """``column.eq(True)`` as a numpy array; a numpy boolean column (rule_facts_at's) as it is."""
    if column.dtype == np.bool_:
        return column.to_numpy()
    return column.eq(True).to_numpy(dtype=bool)


def ranks_by_level(
    codes_by_level: Mapping[str, np.ndarray],
    risk_score: np.ndarray,
    raw_score: np.ndarray,
    ranked: np.ndarray,
) -> dict[str, np.ndarray]:
    """Rank within each area of each level among ``ranked`` rows: 1 = highest risk; 0 for rows not ranked.

    Order: calibrated score descending, then raw score descending (the
    calibrator can map nearby raw scores to one value), then row position
    ascending, which is household_id order because rows are sorted by id.
    The rows are put in that order once for every level.
    """
    rows = np.flatnonzero(ranked)
    # Rows in score order once; then, per level, a stable sort by area keeps that order inside each
    # area: the order of a lexsort by (area, score, raw score, row), at a fraction of its cost.
    in_score_order = rows[np.lexsort((rows, -raw_score[rows], -risk_score[rows]))]
    ranks: dict[str, np.ndarray] = {}
    for level, area_codes in codes_by_level.items():
        level_ranks = np.zeros(len(area_codes), dtype=np.int64)
        if rows.size:
            area_index = _area_index(area_codes)[in_score_order]
            order = np.argsort(area_index, kind="stable")
            sorted_area = area_index[order]
            starts = np.r_[True, sorted_area[1:] != sorted_area[:-1]]
            group_start = np.maximum.accumulate(np.where(starts, np.arange(rows.size), 0))
            level_ranks[in_score_order[order]] = np.arange(rows.size) - group_start + 1
        ranks[level] = level_ranks
    return ranks


def visit_list_size(visit_share: float, scored_households: int) -> int:
    """ceil(visit_share x scored households), robust to float error (0.07 x 100 is 7, not 8)."""
    return math.ceil(round(visit_share * scored_households, 9))


def visit_list_flags(
    county_codes: np.ndarray, rank_county: np.ndarray, scored: np.ndarray, visit_share: float
) -> np.ndarray:
    """True for the top ``visit_list_size`` scored households of each county."""
    flags = np.zeros(len(county_codes), dtype=bool)
    rows = np.flatnonzero(scored)
    if rows.size == 0:
        return flags
    index = _area_index(county_codes[rows])
    counts = np.bincount(index)
    sizes = np.array([visit_list_size(visit_share, int(c)) for c in counts], dtype=np.int64)
    flags[rows] = rank_county[rows] <= sizes[index]
    return flags


def _area_index(codes: np.ndarray) -> np.ndarray:
    """Each row's area as a number from 0, one per distinct code (hashed: no sort of the strings)."""
    # Households with an unknown area (rejected rows only, never ranked) would break on None as a
    # code; an empty string groups them harmlessly.
    index, _ = pd.factorize(np.where(pd.isna(codes), "", codes))
    return np.asarray(index, dtype=np.int64)


def _feature_rows(
    features: pd.DataFrame, household_ids: np.ndarray, needed: np.ndarray, source: str
) -> np.ndarray:
    """Each household's row in ``features`` (-1 if none); an error names a ``needed`` one with no row."""
    index = pd.Index(features["household_id"].to_numpy())
    if not index.is_unique:
        duplicated = index[index.duplicated()][0]
        raise ValueError(f"{source} returned more than one row for household {duplicated!r}")
    positions = index.get_indexer(pd.Index(household_ids))
    missing = needed & (positions < 0)
    if missing.any():
        first = household_ids[np.flatnonzero(missing)[0]]
        raise ValueError(f"{source} returned no row for {int(missing.sum())} household(s), e.g. {first!r}")
    return np.asarray(positions, dtype=np.int64)


def _take(features: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """The feature rows at ``rows`` in that order: a slice of the table when they are consecutive."""
    if len(rows) and np.all(np.diff(rows) == 1):
        first = int(rows[0])
        return (
            features
            if first == 0 and len(rows) == len(features)
            else features.iloc[first : first + len(rows)]
        )
    # Positional take: at a million rows, label-based .loc on a wide frame costs many seconds.
    return features.take(rows).reset_index(drop=True)


def _explain_in_chunks(
    explain_reasons: Callable[..., list[list[Reason]]],
    model: ScoringModel,
    features: pd.DataFrame,
    report: ProgressCallback,
    threads: int = 1,
) -> list[list[Reason]]:
    """The reasons of every row of ``features``, in row order."""
    total = len(features)
    report("explain", 0, total)
    if total == 0:
        return []
    # Prepared once for all chunks: building the tables takes seconds, each row then well under 1 ms.
    tables = _flattened_trees(model)
    if tables is None and threads > 1 and total > 1:
        slices = [features.iloc[rows] for rows in np.array_split(np.arange(total), min(threads, total))]
        with ThreadPoolExecutor(max_workers=len(slices)) as pool:
            parts = list(
                pool.map(
                    lambda rows: explain_reasons(model, rows, top=len(REASON_SLOTS), tables=None), slices
                )
            )
        report("explain", total, total)
        return [reasons for part in parts for reasons in part]
    chosen: list[list[Reason]] = []
    for begin in range(0, total, EXPLAIN_CHUNK_ROWS):
        chunk = _rows_from(features, begin, EXPLAIN_CHUNK_ROWS)
        chosen += explain_reasons(model, chunk, top=len(REASON_SLOTS), tables=tables)
        report("explain", begin + len(chunk), total)
    return chosen


def _flattened_trees(model: ScoringModel) -> TreeShapTables | None:
    """The model's trees prepared for numba (built once per model), or None for LightGBM's own paths."""
    return contribution_tables(model) if isinstance(model, RiskModel) and model.is_fitted else None


def _rows_from(frame: pd.DataFrame, begin: int, rows: int) -> pd.DataFrame:
    """``frame.iloc[begin : begin + rows]``; the frame itself when that is all of it (an API round)."""
    if begin == 0 and len(frame) <= rows:
        return frame
    return frame.iloc[begin : begin + rows]


def _nullable_ints(ranks: np.ndarray) -> pd.arrays.IntegerArray:
    return pd.arrays.IntegerArray(ranks.astype(np.int64), ranks == 0)


def _no_progress(stage: str, done: int, total: int) -> None:
    return None
