"""The request log: one JSON line per household answered by ``POST /score``.

Monitoring reads this file to compare what the API sees with the training
data (feature drift) and what it answers (score drift). Format, version 1,
one UTF-8 JSON object per line::

    {"v": 1, "time": "2026-11-23T13:44:04.123Z", "model_name": "relapse-risk",
     "model_version": "3", "as_of": "2024-06", "household_id": "h000123",
     "status": "scored", "risk_score": 0.071, "risk_band": "low",
     "rule_margin": 1.84, "features": {"income_pc_12m": 9120.0, ...}}

- ``time`` is UTC; ``features`` maps the model's feature names to numbers
  (null for missing values) and is null when no features were computed
  (rejected households); ``risk_score``/``risk_band`` are null unless scored.
- No identifier beyond ``household_id`` is written: no codes of the
  household's area, no member ids, no request metadata.

Lines are appended under an exclusive ``flock`` with one ``write`` per batch,
so several server workers can share the file. DuckDB reads it directly:
``SELECT * FROM read_json_auto('requests.jsonl')``.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import math
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..cells import float_or_none, text_or_none

REQUEST_LOG_VERSION = 1


def _number_or_none(value: object) -> float | None:
    number = float_or_none(value)
    return number if number is not None and math.isfinite(number) else None


LOGGED_ANSWER_FIELDS = (
    "household_id",
    "model_name",
    "model_version",
    "as_of",
    "status",
    "risk_score",
    "risk_band",
    "rule_margin",
)
"""The fields of an answer that the request log reads."""


def request_log_records(
    answers: Mapping[str, Sequence[object]],
    features: pd.DataFrame | None,
    feature_names: Iterable[str],
    *,
    time: dt.datetime,
) -> list[dict[str, object]]:
    """Log records for scored answers.

    ``answers`` holds one list per field of :data:`LOGGED_ANSWER_FIELDS`, an
    entry per household answer (other fields are ignored, never logged): the
    API takes them straight from its response models, with no frame built only
    to be read back. NaN and None are both logged as null. ``features`` is
    indexed by ``household_id`` and holds the model's feature columns;
    households missing from it get ``features: null``.
    """
    names = list(feature_names)
    stamp = time.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    feature_rows: dict[str, dict[str, float | None]] = {}
    if features is not None and len(features) > 0:
        position = {name: j for j, name in enumerate(features.columns.tolist())}
        present = [n for n in names if n in position]
        # By position, and one conversion of the whole block to Python floats (None where not finite):
        # a round's few rows cost less this way than pandas' per-name look-ups and a call per cell.
        values = features.iloc[:, [position[n] for n in present]].to_numpy(dtype="float64", na_value=math.nan)
        cells = values.astype(object)
        cells[~np.isfinite(values)] = None
        for household_id, row in zip(features.index.astype(str), cells.tolist(), strict=True):
            feature_rows[household_id] = dict(zip(present, row, strict=True))
    records: list[dict[str, object]] = []
    for i in range(len(answers["household_id"])):
        household_id = text_or_none(answers["household_id"][i])
        records.append(
            {
                "v": REQUEST_LOG_VERSION,
                "time": stamp,
                "model_name": text_or_none(answers["model_name"][i]),
                "model_version": text_or_none(answers["model_version"][i]),
                "as_of": text_or_none(answers["as_of"][i]),
                "household_id": household_id,
                "status": text_or_none(answers["status"][i]),
                "risk_score": _number_or_none(answers["risk_score"][i]),
                "risk_band": text_or_none(answers["risk_band"][i]),
                "rule_margin": _number_or_none(answers["rule_margin"][i]),
                "features": feature_rows.get(household_id) if household_id is not None else None,
            }
        )
    return records


class RequestLog:
    """Appends request-log records to one JSON-lines file, safely across threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, records: Iterable[Mapping[str, object]]) -> int:
        """Append records; returns how many were written."""
        lines = [json.dumps(r, ensure_ascii=False, separators=(",", ":"), allow_nan=False) for r in records]
        if not lines:
            return 0
        payload = ("\n".join(lines) + "\n").encode("utf-8")
        with self._lock:
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX)
                written = 0
                while written < len(payload):
                    written += os.write(descriptor, payload[written:])
            finally:
                os.close(descriptor)
        return len(lines)


def read_request_log(path: Path) -> pd.DataFrame:
    """The log as a frame, one row per answer, ``features`` as dicts; for tests and quick looks."""
    if not path.is_file():
        return pd.DataFrame(
            columns=[
                "v",
                "time",
                "model_name",
                "model_version",
                "as_of",
                "household_id",
                "status",
                "risk_score",
                "risk_band",
                "rule_margin",
                "features",
            ]
        )
    with path.open(encoding="utf-8") as handle:
        return pd.DataFrame([json.loads(line) for line in handle if line.strip()])
