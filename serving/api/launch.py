"""``relapse serve``: check the settings, then run ``bentoml serve`` on the API service.

The command becomes BentoML's own server (with its worker processes); this
module prepares its command line and environment and refuses early, with a
message naming the setting, when the server could not start anyway (no API
key, no policy file, no model under the model URI in the registry).
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from mlflow.exceptions import MlflowException
from relapse_risk.features.errors import RelapseRiskError
from relapse_risk.features.policy import PolicyError, read_policy
from relapse_risk.models.registry import ModelNotRegistered, models_uri, registered_version

from ..config import TRACKING_URI_VARIABLE, default_tracking_uri
from .auth import KEYS_FILE_VARIABLE, ApiKeyConfigError, load_api_keys
from .settings import (
    MODEL_URI_VARIABLE,
    POLICY_FILE_VARIABLE,
    REQUEST_LOG_VARIABLE,
    RUNS_DIR_VARIABLE,
    SERVICE_NAME,
    ApiSettings,
    ApiSettingsError,
)

SERVICE_IMPORT = "relapse_risk.serving.api.service:RelapseRiskApi"
CONFIG_OVERRIDE_VARIABLE = "BENTOML_CONFIG_OPTIONS"
TRACING_OFF_VARIABLE = "OTEL_SDK_DISABLED"
SERVE_ANOTHER_MODEL = "serve the {label} with --model {uri}"
"""How ``relapse serve`` tells its user to pick the model the registry does hold."""
TRACE_NO_URL_OPTION = f"services.{SERVICE_NAME}.tracing.excluded_urls=."
"""Regular expressions of URLs not to trace; ``.`` matches every URL. Under the service's own key:
BentoML 1.4 merges the served service's configuration over the root's ``tracing``."""


class ServeSettingsError(RelapseRiskError, ValueError):
    """The server would not start with these settings; the message names the setting."""


@dataclass(frozen=True)
class ServeOptions:
    """Command-line options of ``relapse serve``; None or empty leaves the environment's value."""

    host: str = "127.0.0.1"
    port: int = 3000
    workers: int = 1
    policy_file: Path | None = None
    model_uri: str | None = None
    tracking_uri: str | None = None
    runs_dir: Path | None = None
    request_log: Path | None = None
    api_keys_file: Path | None = None


def server_environment(base: Mapping[str, str], options: ServeOptions) -> dict[str, str]:
    """The child's environment: ``base`` with the options written over it (paths made absolute)."""
    environment = dict(base)
    overrides: dict[str, str | None] = {
        POLICY_FILE_VARIABLE: _absolute(options.policy_file),
        MODEL_URI_VARIABLE: options.model_uri or None,
        TRACKING_URI_VARIABLE: options.tracking_uri or None,
        RUNS_DIR_VARIABLE: _absolute(options.runs_dir),
        REQUEST_LOG_VARIABLE: _absolute(options.request_log),
        KEYS_FILE_VARIABLE: _absolute(options.api_keys_file),
    }
    environment.update({k: v for k, v in overrides.items() if v})
    if options.workers != 1:
        _add_config_option(environment, f"services.{SERVICE_NAME}.workers={int(options.workers)}")
    # BentoML records an OpenTelemetry span for every request even when it exports none (its
    # default), and its tracing middleware inspects every request even with the SDK off: together
    # about 9 % of /score's throughput. Off unless the operator turns the SDK on.
    if environment.setdefault(TRACING_OFF_VARIABLE, "true").strip().lower() == "true":
        _add_config_option(environment, TRACE_NO_URL_OPTION)
    return environment


def _add_config_option(environment: dict[str, str], option: str) -> None:
    existing = environment.get(CONFIG_OVERRIDE_VARIABLE, "").strip()
    environment[CONFIG_OVERRIDE_VARIABLE] = f"{existing} {option}".strip()


def _absolute(path: Path | None) -> str | None:
    return str(path.resolve()) if path is not None else None


def check_server_settings(
    environment: Mapping[str, str], *, use_instead: str = SERVE_ANOTHER_MODEL
) -> ApiSettings:
    """The settings the server will read, after checking what would stop it at start-up.

    The model is looked up in the registry, not loaded: a missing champion is
    found in seconds instead of never (the workers restart). ``use_instead``
    is how the message tells the operator to pick another model (an option, a
    variable). Settings are read from ``environment`` alone, the tracking URI
    included, as the server will read them.
    """
    try:
        settings = ApiSettings.from_environment(environment)
        load_api_keys(environment)
    except (ApiSettingsError, ApiKeyConfigError) as exc:
        raise ServeSettingsError(str(exc)) from None
    try:
        read_policy(settings.policy_file)
    except PolicyError as exc:
        raise ServeSettingsError(str(exc)) from None
    if settings.runs_dir is not None and not settings.runs_dir.exists():
        raise ServeSettingsError(f"{RUNS_DIR_VARIABLE}={settings.runs_dir}: folder does not exist")
    check_registered_model(settings, use_instead=use_instead)
    return settings


def check_registered_model(settings: ApiSettings, *, use_instead: str = SERVE_ANOTHER_MODEL) -> None:
    """Raise :class:`ServeSettingsError` in one line unless the registry holds ``settings.model_uri``."""
    # As the server resolves it (serving/api/household_scorer.py): the setting, else the embedded store
    # under the working folder.
    tracking_uri = settings.tracking_uri or default_tracking_uri(Path.cwd())
    try:
        registered_version(models_uri(settings.model_uri), tracking_uri)
    except ModelNotRegistered as exc:
        raise ServeSettingsError(exc.line(use_instead)) from None
    except ValueError as exc:
        raise ServeSettingsError(f"{MODEL_URI_VARIABLE}: {exc}") from None
    except MlflowException as exc:
        raise ServeSettingsError(
            f"{settings.model_uri}: the registry at {tracking_uri} cannot be read: {exc.message}"
        ) from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_command(host: str, port: int, python: str = sys.executable) -> list[str]:
    return [python, "-m", "bentoml", "serve", SERVICE_IMPORT, "--host", host, "--port", str(int(port))]


def exec_server(options: ServeOptions, environment: Mapping[str, str]) -> NoReturn:
    """Replace this process with the BentoML server, so signals (Ctrl-C, SIGTERM) reach it directly.

    A child process would outlive a ``relapse serve`` that is terminated
    rather than interrupted; exec leaves nothing behind.
    """
    command = serve_command(options.host, options.port)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, dict(environment))
