"""The two sides of a comparison, whatever form they arrive in.

``--reference`` and ``--current`` each name one of:

- a dataset folder, optionally with an as-of month: ``DIR`` or ``DIR@YYYY-MM``
  (default: the folder's data_end). County facts are measured over every row;
  features are built at that month, and the households scored when a model is
  given, for a seeded sample of whole villages when the county holds more
  households than ``max_rows_per_side`` (:mod:`.sampling`);
- a batch-scored run folder (``manifest.json`` + ``scores.parquet``): its scores,
  bands, visit list and reasons;
- the API's request log (``.jsonl``): the features and scores it answered.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from relapse_risk.features.catalogue import FEATURE_NAMES
from relapse_risk.features.contract import format_month, parse_month
from relapse_risk.features.dataset import Dataset, load_dataset
from relapse_risk.features.errors import RelapseRiskError
from relapse_risk.features.history import build_features
from relapse_risk.features.rules import labels_frame
from relapse_risk.features.stages import StageTimes
from relapse_risk.models.model import RiskModel
from relapse_risk.models.registry import RISK_BAND_CUTOFFS

from .quality import DatasetFacts, dataset_facts
from .sampling import VillageSample, sampled_dataset, village_sample

InputKind = Literal["dataset", "scored_run", "request_log"]


class MonitorInputError(RelapseRiskError, ValueError):
    """A side cannot be read; the message names the path and what is wrong."""


@dataclass(frozen=True)
class MonitorSide:
    """One side of the comparison: what could be measured from its input."""

    spec: str
    kind: InputKind
    path: Path
    as_of: dt.date | None
    features: pd.DataFrame | None
    """household_id + feature columns of the sampled households; None when the input has none."""
    scores: pd.DataFrame | None
    """Scored households of the sample: household_id, risk_score, risk_band, and where known
    in_visit_list, township_code, reason_1_code."""
    facts: DatasetFacts | None
    """County facts over every row of a dataset folder (never sampled)."""
    dataset: Dataset | None
    """The whole dataset folder."""
    note: str = ""
    sampled: Dataset | None = None
    """The dataset restricted to the sampled villages (``dataset`` itself when nothing was left out)."""
    sampling: dict[str, object] = field(default_factory=dict)
    """What was sampled and how many, as written into ``summary.json``."""
    statuses: dict[str, float] = field(default_factory=dict)
    """Households of the whole side by status (``scored``, ``triggered_now``, ``under_monitoring``,
    ``rejected``), estimated from the village sample when sampled; empty when unknown."""
    scale: float = 1.0
    """Scored households of the whole side per row of ``scores`` (above 1 when sampled)."""

    @property
    def label(self) -> str:
        when = f" at {format_month(self.as_of)}" if self.as_of else ""
        return f"{self.kind} {self.path}{when}"


def split_spec(spec: str) -> tuple[Path, dt.date | None]:
    """``DIR@YYYY-MM`` -> (DIR, month); a plain path -> (path, None)."""
    path, at, month = spec.rpartition("@")
    if at and path and len(month) in (7, 10) and month[:4].isdigit():
        try:
            return Path(path), parse_month(month)
        except ValueError as exc:
            raise MonitorInputError(f"{spec}: {exc}") from None
    return Path(spec), None


def input_kind(path: Path) -> InputKind:
    if path.is_file() and path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        return "request_log"
    if path.is_dir() and (path / "scores.parquet").exists() and (path / "manifest.json").exists():
        return "scored_run"
    if path.is_dir() and (path / "policy.json").exists():
        return "dataset"
    raise MonitorInputError(
        f"{path}: not a dataset folder (policy.json), a scored run (manifest.json + scores.parquet) "
        "or a request log (.jsonl)"
    )


@dataclass
class OpenInputs:
    """What the sides of one run share: each dataset folder loaded once, and each village sample
    restricted once, open until the run ends (use as a context manager).

    A folder compared with itself at an earlier month (``DIR@2023-06`` against ``DIR``) is
    loaded once and, drawing the same villages, restricted once.
    """

    datasets: dict[Path, Dataset] = field(default_factory=dict)
    samples: dict[tuple[Path, VillageSample], Dataset] = field(default_factory=dict)
    stack: ExitStack = field(default_factory=ExitStack)

    def __enter__(self) -> OpenInputs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.samples.clear()
        self.stack.close()


def read_side(
    spec: str,
    model: RiskModel | None,
    max_rows: int,
    seed: int,
    inputs: OpenInputs,
    times: StageTimes | None = None,
    name: str = "side",
) -> MonitorSide:
    """Read one side; features and scores cover at most ``max_rows`` households (seeded).

    A dataset folder is sampled by whole villages (:mod:`.sampling`); its restricted tables
    stay open in ``inputs``, so later stages (matured performance) read the same households.
    Scored runs and request logs are sampled by rows. ``times`` receives the seconds of each
    stage, named ``"{name}: {stage}"``.
    """
    clock = StageTimes() if times is None else times
    path, as_of = split_spec(spec)
    if not path.exists():
        raise MonitorInputError(f"{path}: no such file or folder")
    kind = input_kind(path)
    if kind == "dataset":
        if path.resolve() not in inputs.datasets:
            with clock.stage(f"{name}: load"):
                inputs.datasets[path.resolve()] = load_dataset(path)
        dataset = inputs.datasets[path.resolve()]
        return _dataset_side(spec, path, dataset, as_of, model, max_rows, seed, inputs, clock, name)
    with clock.stage(f"{name}: read"):
        if kind == "scored_run":
            return _scored_run_side(spec, path, max_rows, seed)
        return _request_log_side(spec, path, max_rows, seed)


def _sample(frame: pd.DataFrame, limit: int, seed: int) -> pd.DataFrame:
    if len(frame) <= limit:
        return frame.reset_index(drop=True)
    chosen = np.sort(np.random.default_rng(seed).choice(len(frame), size=limit, replace=False))
    return frame.iloc[chosen].reset_index(drop=True)


def _row_sampling(rows: int, limit: int, seed: int) -> dict[str, object]:
    return {
        "unit": "row",
        "sampled": rows > limit,
        "rows": rows,
        "sampled_rows": min(rows, limit),
        "limit": limit,
        "seed": seed,
    }


def _dataset_side(
    spec: str,
    path: Path,
    dataset: Dataset,
    as_of: dt.date | None,
    model: RiskModel | None,
    max_rows: int,
    seed: int,
    inputs: OpenInputs,
    clock: StageTimes,
    name: str,
) -> MonitorSide:
    month = (as_of or dataset.policy.data_end).replace(day=1)
    try:
        with clock.stage(f"{name}: county facts (every row)"):
            facts = dataset_facts(dataset, month)
        with clock.stage(f"{name}: draw the village sample"):
            sample = village_sample(dataset, max_rows, seed)
            key = (path.resolve(), sample)
            if key not in inputs.samples:
                inputs.samples[key] = inputs.stack.enter_context(sampled_dataset(dataset, sample))
            sampled = inputs.samples[key]
        with clock.stage(f"{name}: features"):
            features = build_features(sampled, month)
    except ValueError as exc:
        raise MonitorInputError(f"{spec}: {exc}") from None
    scores = None
    note = ""
    with clock.stage(f"{name}: statuses"):
        present = labels_frame(sampled, month, horizon=1)
    scale = sample.households / sample.sampled_households if sample.sampled_households else 1.0
    statuses = {key: count * scale for key, count in status_counts(present).items()}
    if model is not None:
        with clock.stage(f"{name}: scores"):
            scores = score_households(sampled, features, month, model, present)
    else:
        note = "no model: prediction drift and performance not measured"
    return MonitorSide(
        spec=spec,
        kind="dataset",
        path=path,
        as_of=month,
        features=features,
        scores=scores,
        facts=facts,
        dataset=dataset,
        note=note,
        sampled=sampled,
        sampling=sample.describe(),
        statuses=statuses,
        scale=scale,
    )


def status_counts(present: pd.DataFrame) -> dict[str, float]:
    """Households by the status batch scoring would give them at the as-of month."""
    monitored = present["under_monitoring"].to_numpy(dtype=bool)
    triggered = present["triggered_now"].to_numpy(dtype=bool) & ~monitored
    return {
        "scored": float(present["eligible"].to_numpy(dtype=bool).sum()),
        "under_monitoring": float(monitored.sum()),
        "triggered_now": float(triggered.sum()),
    }


def score_households(
    dataset: Dataset,
    features: pd.DataFrame,
    as_of: dt.date,
    model: RiskModel,
    present: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Score the eligible households at ``as_of`` as batch scoring would: score, band, visit list,
    township and village. ``present`` is ``labels_frame(dataset, as_of, horizon=1)`` when the
    caller has it.

    The visit list is the top ``visit_share`` of the households scored here (in monitoring,
    those of the sampled villages).
    """
    if present is None:
        present = labels_frame(dataset, as_of, horizon=1)
    eligible = present["eligible"].to_numpy(dtype=bool)
    if not np.array_equal(present["household_id"].to_numpy(), features["household_id"].to_numpy()):
        raise RuntimeError("features and labels list different households")  # both sort by id
    chosen = features.loc[eligible].reset_index(drop=True)
    risk = model.predict_proba(chosen)
    towns = dataset.sql("SELECT household_id, township_code, village_code FROM households").df()
    frame = pd.DataFrame({"household_id": chosen["household_id"].to_numpy(), "risk_score": risk})
    frame["risk_band"] = risk_bands(risk)
    visits = math.ceil(dataset.policy.visit_share * len(frame))
    order = np.lexsort((frame["household_id"].to_numpy(), -risk))
    in_list = np.zeros(len(frame), dtype=bool)
    in_list[order[:visits]] = True
    frame["in_visit_list"] = in_list
    return frame.merge(towns, on="household_id", how="left")


def risk_bands(risk: np.ndarray) -> np.ndarray:
    return np.select(
        [risk >= RISK_BAND_CUTOFFS.high, risk >= RISK_BAND_CUTOFFS.medium], ["high", "medium"], "low"
    )


def _scored_run_side(spec: str, path: Path, max_rows: int, seed: int) -> MonitorSide:
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        table = pd.read_parquet(path / "scores.parquet")
    except (OSError, ValueError) as exc:
        raise MonitorInputError(f"{path}: cannot read the scored run: {exc}") from None
    missing = {"household_id", "status", "risk_score", "risk_band"} - set(table.columns)
    if missing:
        raise MonitorInputError(f"{path / 'scores.parquet'}: missing column(s) {', '.join(sorted(missing))}")
    scored = table[table["status"] == "scored"]
    keep = [
        c
        for c in (
            "household_id",
            "risk_score",
            "risk_band",
            "in_visit_list",
            "township_code",
            "village_code",
            "reason_1_code",
        )
        if c in scored.columns
    ]
    sample = _sample(scored[keep], max_rows, seed)
    as_of = manifest.get("as_of")
    return MonitorSide(
        spec=spec,
        kind="scored_run",
        path=path,
        as_of=parse_month(as_of) if isinstance(as_of, str) else None,
        features=None,
        scores=sample,
        facts=None,
        dataset=None,
        note="scored run: feature drift and county checks need the dataset folder",
        sampling=_row_sampling(len(scored), max_rows, seed),
        statuses={str(k): float(v) for k, v in table["status"].value_counts().items()},
        scale=len(scored) / len(sample) if len(sample) else 1.0,
    )


def _request_log_side(spec: str, path: Path, max_rows: int, seed: int) -> MonitorSide:
    records = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise MonitorInputError(f"{path} line {number}: not JSON ({exc.msg})") from None
    if not records:
        raise MonitorInputError(f"{path}: the request log is empty")
    log = pd.DataFrame.from_records(records)
    scored = log[log.get("status", pd.Series(dtype=object)) == "scored"]
    scores = scored[["household_id", "risk_score", "risk_band"]].reset_index(drop=True)
    feature_rows = [r["features"] for r in records if isinstance(r.get("features"), dict)]
    features = None
    if feature_rows:
        features = pd.DataFrame.from_records(feature_rows)
        features = features[[c for c in FEATURE_NAMES if c in features.columns]].astype(np.float64)
    months = log["as_of"].dropna() if "as_of" in log else pd.Series(dtype=object)
    return MonitorSide(
        spec=spec,
        kind="request_log",
        path=path,
        as_of=parse_month(str(months.max())) if len(months) else None,
        features=None if features is None else _sample(features, max_rows, seed),
        scores=_sample(scores, max_rows, seed),
        facts=None,
        dataset=None,
        note="request log: county checks need the dataset folder",
        sampling=_row_sampling(len(scores), max_rows, seed),
    )
