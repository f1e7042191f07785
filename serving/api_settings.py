"""Settings of the API server, read from environment variables into one typed object.

| variable | meaning | default |
|---|---|---|
| ``MLFLOW_TRACKING_URI`` | MLflow tracking and registry store | MLflow's own default |
| ``RELAPSE_MODEL_URI`` | model to load at start-up | ``models:/relapse-risk@champion`` |
| ``RELAPSE_POLICY_FILE`` | ``policy.json`` for ``/score`` (lines, rules, data_start) | required |
| ``RELAPSE_RUNS_DIR`` | OUT folder(s) of ``relapse score``, for ``/visit_list``, ``/household`` | none: 404 |
| ``RELAPSE_REQUEST_LOG`` | JSON-lines request log monitoring reads | ``request-log/requests.jsonl`` |
| ``RELAPSE_API_KEYS`` / ``RELAPSE_API_KEYS_FILE`` | bearer keys (serving/auth.py) | required |

The policy for ``/score`` is the server's, not the caller's: a county
configures its monitoring lines and rule parameters once, and a request
cannot change them. Each household's ``data_end`` is its own as-of month.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .config import DEFAULT_MODEL_ALIAS, REGISTRY_MODEL_NAME, TRACKING_URI_VARIABLE

SERVICE_NAME = "relapse_risk_api"
"""Name of the BentoML service (its configuration key: ``services.relapse_risk_api``)."""

MODEL_URI_VARIABLE = "RELAPSE_MODEL_URI"
POLICY_FILE_VARIABLE = "RELAPSE_POLICY_FILE"
RUNS_DIR_VARIABLE = "RELAPSE_RUNS_DIR"
REQUEST_LOG_VARIABLE = "RELAPSE_REQUEST_LOG"

DEFAULT_MODEL_URI = f"models:/{REGISTRY_MODEL_NAME}@{DEFAULT_MODEL_ALIAS}"
DEFAULT_REQUEST_LOG = Path("request-log") / "requests.jsonl"


class ApiSettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


class ApiSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    tracking_uri: str | None = Field(default=None, description="None: MLflow's default store")
    model_uri: str = DEFAULT_MODEL_URI
    policy_file: Path
    runs_dir: Path | None = None
    request_log: Path = DEFAULT_REQUEST_LOG

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
        }
        if self.tracking_uri:
            variables[TRACKING_URI_VARIABLE] = self.tracking_uri
        if self.runs_dir is not None:
            variables[RUNS_DIR_VARIABLE] = str(self.runs_dir)
        return variables
