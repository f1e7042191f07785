"""One county of a province, on whichever machine Spark runs it: the batch job, and what it reports.

:func:`score_county` is what each Spark task runs for its county: it lays the
county's shipped files out as a dataset folder in a private temporary folder
and calls :func:`serving.batch.job.score_folder`, the function behind `relapse
score`, so the county's run folder is written by the one implementation of
validation, rules, features, model, reasons and outputs, atomically. A county
that cannot be used becomes a ``failed`` outcome with its reason; the others go
on. No pyspark here.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import tempfile
import time
import traceback
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from relapse_risk.features.dataset import load_dataset
from relapse_risk.features.errors import RelapseRiskError

from ..batch.job import score_folder
from ..scoring import ExplainScope, ResolvedModel
from .layout import ProvinceForm, ShippedFile, materialize_county

OK = "ok"
FAILED = "failed"
ERROR = "error"
"""A county that raised something other than an expected failure: a bug, reported with its traceback."""

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CountyOutcome:
    """One row of the province summary."""

    county: str
    status: str
    """``ok``, ``failed`` (the county cannot be used: ``reason`` says why) or ``error`` (a bug)."""
    reason: str = ""
    households: int = 0
    scored: int = 0
    under_monitoring: int = 0
    visit_list: int = 0
    rejects: int = 0
    seconds: float = 0.0
    attempt: int = 0
    """Which attempt of its Spark task wrote the county (0: the first)."""

    def record(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class CountyJob:
    """What every county's task needs besides its files; pickled once and broadcast to the executors."""

    form: ProvinceForm
    root: Path
    out: Path
    as_of: dt.date
    model: ResolvedModel
    explain: ExplainScope = "visit_list"
    horizon: int | None = None
    policy: bytes | None = None
    schemas: dict[str, bytes] | None = None

    def county_source(self, county: str) -> Path:
        if self.form == "county_folders":
            return self.root / county
        return self.root / f"county_code={county}"


def score_county(
    job: CountyJob, county: str, files: Iterable[ShippedFile], *, attempt: int = 0
) -> CountyOutcome:
    """Score one county into ``job.out / county``; never raises for a county that cannot be used."""
    started = time.perf_counter()
    workspace = Path(tempfile.mkdtemp(prefix=f"relapse-county-{county}-"))
    try:
        folder = materialize_county(
            job.form, county, files, workspace / "data", policy=job.policy, schemas=job.schemas
        )
        report = score_folder(
            job.county_source(county),
            job.as_of,
            job.model,
            job.out / county,
            explain=job.explain,
            horizon=job.horizon,
            dataset_loader=lambda _: load_dataset(folder),
        )
    except RelapseRiskError as exc:
        return CountyOutcome(
            county, FAILED, str(exc), seconds=round(time.perf_counter() - started, 3), attempt=attempt
        )
    except Exception as exc:  # noqa: BLE001 - one county's bug must not hide the others' results
        _log.error("county %s: unexpected error\n%s", county, traceback.format_exc())
        return CountyOutcome(
            county,
            ERROR,
            f"unexpected error (a bug): {type(exc).__name__}: {exc}",
            seconds=round(time.perf_counter() - started, 3),
            attempt=attempt,
        )
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    statuses = report.scores["status"].value_counts()
    return CountyOutcome(
        county,
        OK,
        households=report.households,
        scored=int(statuses.get("scored", 0)),
        under_monitoring=int(statuses.get("under_monitoring", 0)),
        visit_list=int(report.scores["in_visit_list"].fillna(False).astype(bool).sum()),
        rejects=report.rejects,
        seconds=round(time.perf_counter() - started, 3),
        attempt=attempt,
    )
