"""Settings of the API server, read from environment variables into one typed object.

| variable | meaning | default |
|---|---|---|
| ``MLFLOW_TRACKING_URI`` | MLflow tracking and registry store | MLflow's own default |
| ``RELAPSE_MODEL_URI`` | model to load at start-up | ``models:/relapse-risk@champion`` |
| ``RELAPSE_POLICY_FILE`` | ``policy.json`` for ``/score`` (lines, rules, data_start) | required |
| ``RELAPSE_RUNS_DIR`` | OUT folder(s) of ``relapse score``, for ``/visit_list``, ``/household`` | none: 404 |
| ``RELAPSE_REQUEST_LOG`` | JSON-lines request log monitoring reads | ``request-log/requests.jsonl`` |
| ``RELAPSE_API_KEYS`` / ``RELAPSE_API_KEYS_FILE`` | bearer keys (serving/api/auth.py) | required |
| ``RELAPSE_MAX_BODY_BYTES`` | largest request body read; larger is 413 unread | 65,536,000 (below) |

The policy for ``/score`` is the server's, not the caller's: a county
configures its monitoring lines and rule parameters once, and a request
cannot change them. Each household's ``data_end`` is its own as-of month.

The body limit exists because validation comes after parsing: a 270 MB body
of 10,000 households was parsed for 18 s, the worker grew to 1.3 GB, and only
then was it refused for holding more than 1,000. Its default admits every
request the request model admits in practice: 1,000 households
(``MAX_HOUSEHOLDS_PER_REQUEST``) each as large as the largest household of a
generated county with four years of history in every table (55 KB of JSON;
the median is 25 KB, a request of that county's 1,000 households 28 MB), with
room to spare: 64 KiB a household. One household alone may hold up to
``MAX_ROWS_PER_TABLE`` rows in each of its tables, about 6.3 MB at the rows'
measured sizes, well inside the limit too; a batch of households that large
must be split.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from relapse_risk.features.errors import RelapseRiskError

from ..config import DEFAULT_MODEL_ALIAS, REGISTRY_MODEL_NAME, TRACKING_URI_VARIABLE
from .schemas import MAX_HOUSEHOLDS_PER_REQUEST

SERVICE_NAME = "relapse_risk_api"
"""Name of the BentoML service (its configuration key: ``services.relapse_risk_api``)."""

MODEL_URI_VARIABLE = "RELAPSE_MODEL_URI"
POLICY_FILE_VARIABLE = "RELAPSE_POLICY_FILE"
RUNS_DIR_VARIABLE = "RELAPSE_RUNS_DIR"
REQUEST_LOG_VARIABLE = "RELAPSE_REQUEST_LOG"
MAX_BODY_BYTES_VARIABLE = "RELAPSE_MAX_BODY_BYTES"

DEFAULT_MODEL_URI = f"models:/{REGISTRY_MODEL_NAME}@{DEFAULT_MODEL_ALIAS}"
DEFAULT_REQUEST_LOG = Path("request-log") / "requests.jsonl"
HOUSEHOLD_BODY_BYTES = 64 * 1024
"""Room for one household's JSON: the largest of a generated 48-month county is 55 KB (module docstring)."""
DEFAULT_MAX_BODY_BYTES = MAX_HOUSEHOLDS_PER_REQUEST * HOUSEHOLD_BODY_BYTES


class ApiSettingsError(RelapseRiskError, ValueError):
    """A setting is missing or malformed; the message names the variable."""


class ApiSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    tracking_uri: str | None = Field(default=None, description="None: MLflow's default store")
    model_uri: str = DEFAULT_MODEL_URI
    policy_file: Path
    runs_dir: Path | None = None
    request_log: Path = DEFAULT_REQUEST_LOG
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, gt=0)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> ApiSettings:
        """Read the variables of the module docstring; raise :class:`ApiSettingsError` naming a bad one."""

        def text(name: str) -> str | None:
            value = environ.get(name, "").strip()
            return value or None

        policy = text(POLICY_FILE_VARIABLE)
        if policy is None:
            raise ApiSettingsError(
                f"{POLICY_FILE_VARIABLE} is not set: the server needs the county's policy.json"
            )
        values: dict[str, object] = {
            "tracking_uri": text(TRACKING_URI_VARIABLE),
            "model_uri": text(MODEL_URI_VARIABLE) or DEFAULT_MODEL_URI,
            "policy_file": Path(policy),
            "runs_dir": Path(runs) if (runs := text(RUNS_DIR_VARIABLE)) else None,
            "request_log": Path(log) if (log := text(REQUEST_LOG_VARIABLE)) else DEFAULT_REQUEST_LOG,
            "max_body_bytes": max_body_bytes(environ),
        }
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ApiSettingsError("; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())) from None

    def environment(self) -> dict[str, str]:
        """The variables that reproduce these settings in a child process (keys excluded)."""
        variables = {
            MODEL_URI_VARIABLE: self.model_uri,
            POLICY_FILE_VARIABLE: str(self.policy_file),
            REQUEST_LOG_VARIABLE: str(self.request_log),
            MAX_BODY_BYTES_VARIABLE: str(self.max_body_bytes),
        }
        if self.tracking_uri:
            variables[TRACKING_URI_VARIABLE] = self.tracking_uri
        if self.runs_dir is not None:
            variables[RUNS_DIR_VARIABLE] = str(self.runs_dir)
        return variables


def max_body_bytes(environ: Mapping[str, str]) -> int:
    """``RELAPSE_MAX_BODY_BYTES`` as a positive whole number of bytes, else the default.

    On its own because the HTTP middleware that applies it is built before,
    and apart from, the rest of the settings.
    """
    value = environ.get(MAX_BODY_BYTES_VARIABLE, "").strip()
    if not value:
        return DEFAULT_MAX_BODY_BYTES
    if not (value.isascii() and value.isdigit()) or int(value) <= 0:
        raise ApiSettingsError(f"{MAX_BODY_BYTES_VARIABLE}={value!r}: expected a positive number of bytes")
    return int(value)
