"""What the API does, without HTTP: the BentoML service (serving/api/service.py) only adapts this.

:class:`RiskApi` holds what the server keeps for its life: the scoring
process with the champion model (serving/api/scoring_process.py), the batch runs
folder and the request log. It answers the four endpoints as plain method
calls, so the service module stays thin.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from ..cells import ScoresRow, float_or_none, int_or_none, present, text_or_none
from .request_log import LOGGED_ANSWER_FIELDS, RequestLog, request_log_records
from .schemas import (
    HouseholdInput,
    HouseholdResponse,
    HouseholdScore,
    ModelInfo,
    RunInfo,
    ScoredHousehold,
    VisitListEntry,
    VisitListRequest,
    VisitListResponse,
    reasons_of,
    risk_band,
    score_status,
)
from .score_rounds import prepare_households
from .scored_runs import AreaLevel, RunCatalog, ScoredRun, household_row, visit_list
from .scoring_process import ScoringProcess
from .settings import ApiSettings


class RiskApi:
    """The scoring process, the runs and the request log, and the four answers."""

    def __init__(
        self,
        *,
        scoring: ScoringProcess,
        runs: RunCatalog,
        request_log: RequestLog,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.scoring = scoring
        self.runs = runs
        self.request_log = request_log
        self.clock = clock

    @classmethod
    def start(cls, settings: ApiSettings) -> RiskApi:
        """Start the scoring process (it loads ``settings.model_uri`` from the registry) and open the runs.

        Raises :class:`serving.api.household_scorer.ApiStartupError` naming the setting or resource at fault.
        """
        return cls(
            scoring=ScoringProcess.start(settings),
            runs=RunCatalog(settings.runs_dir),
            request_log=RequestLog(settings.request_log),
        )

    def stop(self) -> None:
        self.scoring.stop()

    # -- POST /score ----------------------------------------------------------------------------

    async def score(self, items: Sequence[HouseholdInput]) -> list[HouseholdScore]:
        """One answer per household, in order; every answer is appended to the request log."""
        # The checks and text tables that need no model are made here: they cross to the scoring
        # process as Arrow buffers, cheaper to send and to receive than the rows' dicts.
        batch = await self.scoring.score(prepare_households(items))
        # Field by field from the answers (what model_dump gives for these plain fields), with no frame:
        # a frame from one dict per answer costs pandas a look at every key of every row.
        answers = {name: [getattr(a, name) for a in batch.answers] for name in LOGGED_ANSWER_FIELDS}
        feature_names = [feature.name for feature in self.scoring.info.features]
        records = request_log_records(answers, batch.features, feature_names, time=self.clock())
        self.request_log.append(records)
        return batch.answers

    # -- POST /visit_list -----------------------------------------------------------------------

    def visit_list(self, request: VisitListRequest) -> VisitListResponse | None:
        """The ranked list of the latest run for that month and area; None when no run has the month."""
        run = self.runs.latest(request.as_of)
        if run is None:
            return None
        level: AreaLevel = "county" if request.county_code is not None else "township"
        code = request.county_code if request.county_code is not None else request.township_code
        assert code is not None  # the request model guarantees one of the two
        rows, scored = visit_list(run, level, code, request.capacity)
        entries = [
            VisitListEntry(rank=position, household=scored_household(row))
            for position, row in enumerate(rows.to_dict("records"), start=1)
        ]
        return VisitListResponse(
            run=run_info(run),
            area_level=level,
            area_code=code,
            capacity=request.capacity,
            scored_households=scored,
            households=entries,
        )

    # -- POST /household ------------------------------------------------------------------------

    def household(self, household_id: str) -> HouseholdResponse | None:
        """The household's row in the latest run that has it; None when no run has it."""
        found = household_row(self.runs.runs(), household_id)
        if found is None:
            return None
        run, row = found
        return HouseholdResponse(run=run_info(run), household=scored_household(row))

    # -- POST /model_info -----------------------------------------------------------------------

    def model_info(self) -> ModelInfo:
        return self.scoring.info


def run_info(run: ScoredRun) -> RunInfo:
    return RunInfo(
        run=run.folder.name,
        as_of=run.as_of,
        model_name=run.model_name,
        model_version=run.model_version,
        created_at=run.written_at.isoformat(timespec="seconds"),
    )


def scored_household(row: ScoresRow) -> ScoredHousehold:
    """A scores-table row as the API shows it."""
    return ScoredHousehold(
        household_id=str(row["household_id"]),
        county_code=text_or_none(row.get("county_code")),
        township_code=text_or_none(row.get("township_code")),
        village_code=text_or_none(row.get("village_code")),
        status=score_status(str(row["status"])),
        risk_score=float_or_none(row.get("risk_score")),
        risk_band=risk_band(text_or_none(row.get("risk_band"))),
        rank_county=int_or_none(row.get("rank_county")),
        rank_township=int_or_none(row.get("rank_township")),
        rank_village=int_or_none(row.get("rank_village")),
        in_visit_list=bool(present(row.get("in_visit_list")) or False),
        rule_margin=float_or_none(row.get("rule_margin")),
        triggered_rule=text_or_none(row.get("triggered_rule")),
        reasons=reasons_of(row),
        reject_reason=text_or_none(row.get("reject_reason")),
    )
