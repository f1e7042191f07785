"""The case-management API as a BentoML 1.4 service.

Start it with ``relapse serve`` (loopback, port 3000 by default) or
``bentoml serve relapse_risk.serving.api.service:RelapseRiskApi --host 127.0.0.1``,
or build it as a Bento from ``bentofile.yaml``. Settings come from environment
variables (serving/api/settings.py; keys: serving/api/auth.py). At start-up each
worker starts its scoring process, which loads the champion from the MLflow
registry (serving/api/scoring_process.py); ``/readyz`` answers 200 only once that
is done. A server that cannot serve (no model under the URI, a missing
setting, a worker that cannot load the model) exits instead of starting its
workers again and again (serving/api/server_guard.py).

Endpoints (all POST with a JSON body, all behind ``Authorization: Bearer``):

- ``/score``: households as their rows in the contract's tables, each with an
  as-of month; one answer per household in request order. Adaptive batching
  merges concurrent requests into one batch for the scoring process, which
  scores it while the worker reads the next requests. 503 if the scoring
  process died during the batch (the next one starts a new process).
- ``/visit_list``: the ranked list of a county or township from the latest
  batch-scored run of that month, cut at the staff's capacity.
- ``/household``: a household's latest batch score and reasons.
- ``/model_info``: model name and version, training data fingerprint, test
  metrics and the feature catalogue.

Open without a key: ``/livez``, ``/readyz``, ``/healthz``, ``/metrics`` and the
OpenAPI document ``/docs.json``. A body over ``RELAPSE_MAX_BODY_BYTES`` is 413
before it is read; a body that does not fit the request model is 422 with one
message per field; a household that breaks the data contract is
answered ``rejected`` with its problems while the others are scored.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol, cast

import anyio
import bentoml
from bentoml.exceptions import ServiceUnavailable
from starlette.responses import JSONResponse
from starlette.types import ASGIApp

from relapse_risk import __version__

from .auth import BearerAuthMiddleware
from .endpoints import RiskApi
from .household_scorer import ApiStartupError
from .http_middleware import (
    BodySizeLimitMiddleware,
    OpenApiMiddleware,
    ValidationStatusMiddleware,
    api_openapi_document,
    use_request_timeout_middleware,
)
from .schemas import (
    HouseholdInput,
    HouseholdRequest,
    HouseholdResponse,
    HouseholdScore,
    ModelInfo,
    ModelInfoRequest,
    ScoreRequest,
    VisitListRequest,
    VisitListResponse,
)
from .scoring_process import ScoringUnavailable
from .server_guard import check_before_workers, stop_server_after_failed_start
from .settings import SERVICE_NAME, ApiSettings, ApiSettingsError, max_body_bytes

API_PATHS = ("/score", "/visit_list", "/household", "/model_info")
_log = logging.getLogger(__name__)

# Adaptive batching: up to this many households per scoring pass. BentoML sheds
# a queued request with 503 once its estimated wait exceeds MAX_LATENCY_MS; it
# estimates the wait from a per-household cost fitted to the first few batches,
# which overstates a pass whose cost is mostly fixed (loading and feature
# queries), so the bound equals the request timeout: requests wait, not fail.
MAX_BATCH_HOUSEHOLDS = 256
REQUEST_TIMEOUT_SECONDS = 300
MAX_LATENCY_MS = REQUEST_TIMEOUT_SECONDS * 1000

DESCRIPTION = (
    "Early warning of rural households at risk of falling back into poverty (防止返贫监测). "
    "Score households from their rows in the data contract's tables, read the ranked visit list "
    "and a household's latest batch score, and see which model answers. Every endpoint except "
    "the health probes and this document needs `Authorization: Bearer <key>`."
)


@bentoml.service(
    name=SERVICE_NAME, workers=1, traffic={"timeout": REQUEST_TIMEOUT_SECONDS, "max_concurrency": 256}
)
class RelapseRiskApi:
    """Risk scores, visit lists and model facts for a county's case-management system."""

    @bentoml.on_deployment
    def refuse_to_start_unless_it_can_serve() -> None:
        """Once, in the server's main process, before any worker: exit in one line if it cannot serve."""
        check_before_workers(os.environ)

    def __init__(self) -> None:
        try:
            self.api = RiskApi.start(ApiSettings.from_environment(os.environ))
        except (ApiStartupError, ApiSettingsError) as exc:
            # BentoML would start this worker again and again; the server stops instead.
            _log.error("Cannot serve: %s", exc)
            stop_server_after_failed_start(os.environ)
            raise
        # The libraries are hundreds of thousands of objects that live as long as the worker:
        # out of the collector's sight, a full collection no longer stalls the requests it falls in.
        gc.collect()
        gc.freeze()

    @bentoml.on_shutdown
    def stop_scoring(self) -> None:
        self.api.stop()

    @bentoml.api(
        route="/score",
        input_spec=ScoreRequest,
        batchable=True,
        max_batch_size=MAX_BATCH_HOUSEHOLDS,
        max_latency_ms=MAX_LATENCY_MS,
    )
    async def score(self, households: list[HouseholdInput]) -> list[HouseholdScore]:
        """Score households at their as-of months: status, score, band, rule margin and three reasons."""
        try:
            return await self.api.score(households)
        except ScoringUnavailable as exc:
            raise ServiceUnavailable(str(exc)) from None

    @bentoml.api(route="/visit_list", input_spec=VisitListRequest)
    async def visit_list(
        self, as_of: str, capacity: int, county_code: str | None = None, township_code: str | None = None
    ) -> VisitListResponse:
        """The top `capacity` households of a county or township in the latest batch run of `as_of`."""
        request = VisitListRequest(
            as_of=as_of, capacity=capacity, county_code=county_code, township_code=township_code
        )
        answer = await anyio.to_thread.run_sync(self.api.visit_list, request)
        if answer is None:
            # BentoML derives the output schema from the annotation, which names the answer's model only;
            # a response is passed through as it is.
            return _not_found(f"no batch-scored run for as_of {request.as_of}")  # type: ignore[return-value]
        return answer

    @bentoml.api(route="/household", input_spec=HouseholdRequest)
    async def household(self, household_id: str) -> HouseholdResponse:
        """A household's latest batch score, ranks and reasons."""
        answer = await anyio.to_thread.run_sync(self.api.household, household_id)
        if answer is None:
            # As in visit_list: the 404 passes through BentoML outside the annotated schema.
            return _not_found("no batch-scored run holds this household")  # type: ignore[return-value]
        return answer

    @bentoml.api(route="/model_info", input_spec=ModelInfoRequest)
    async def model_info(self) -> ModelInfo:
        """The model that answers /score: registry name and version, data fingerprint, metrics, features."""
        return self.api.model_info()


class _OutputSpec(Protocol):
    media_type: ClassVar[str | None]


class _ApiMethod(Protocol):
    output_spec: type[_OutputSpec]


class _OpenApiSpec(Protocol):
    def asdict(self) -> dict[str, Any]: ...


class _Service(Protocol):
    """What this module uses of the ``bentoml.Service`` that ``@bentoml.service`` makes of the class.

    Its members in BentoML 1.4 (``_bentoml_sdk.service.factory.Service``), stated here because mypy
    sees neither: it applies no class decorator (``RelapseRiskApi`` stays a plain class to it), and
    BentoML's SDK package ships no ``py.typed``. BentoML annotates the middleware as a class whose
    instances make the app; what it calls, as Starlette does, is the class itself with the app.
    """

    @property
    def apis(self) -> Mapping[str, _ApiMethod]: ...

    @property
    def openapi_spec(self) -> _OpenApiSpec: ...

    def add_asgi_middleware(self, middleware_cls: Callable[..., ASGIApp], **options: object) -> None: ...


SERVICE = cast(_Service, RelapseRiskApi)
"""``RelapseRiskApi`` as what it is at run time, a ``bentoml.Service``.

BentoML names a service by the first attribute of its module that holds it, which stays
``RelapseRiskApi`` (defined first): ``relapse_risk.serving.api.service:RelapseRiskApi``.
"""


def _not_found(message: str) -> JSONResponse:
    # BentoML passes a Response through untouched; its own NotFound error
    # would wrap the body in a list.
    return JSONResponse({"error": message}, status_code=404)


def _openapi_document() -> dict[str, Any]:
    return api_openapi_document(
        SERVICE.openapi_spec.asdict(),
        title="relapse-risk API",
        version=__version__,
        description=DESCRIPTION,
        api_paths=API_PATHS,
    )


# BentoML derives a list answer's media type from its JSON schema, generated
# anew by pydantic for every response (about a tenth of a /score request's CPU
# under load); the answer is always JSON, and saying so skips that.
SERVICE.apis["score"].output_spec.media_type = "application/json"

# Wired once, here: middleware belongs to the service class for the whole
# process. Listed outermost first: keys are checked before anything else, and
# a body over the limit is refused before anything reads it. The limit is read
# from the environment when each worker builds its app, not at this import.
use_request_timeout_middleware()
SERVICE.add_asgi_middleware(BearerAuthMiddleware)
SERVICE.add_asgi_middleware(BodySizeLimitMiddleware, limit=functools.partial(max_body_bytes, os.environ))
SERVICE.add_asgi_middleware(OpenApiMiddleware, document=_openapi_document)
SERVICE.add_asgi_middleware(ValidationStatusMiddleware, paths=API_PATHS)
