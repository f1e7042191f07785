"""ASGI middleware that makes BentoML's HTTP answers match the API's contract.

- BentoML answers a request body that fails pydantic validation with 400 and
  ``{"error": ..., "detail": [{"loc", "msg", "type"}, ...]}``. The API promises
  422 (the request is well-formed HTTP but its content is invalid), with the
  same field-level ``detail``: :class:`ValidationStatusMiddleware` changes the
  status code only, for the service's own POST endpoints.
- BentoML's generated OpenAPI document lists 400 for those errors and knows
  nothing of the bearer keys: :class:`OpenApiMiddleware` serves ``/docs.json``
  from :func:`api_openapi_document`, which states 401, 413, 415, 422 and the
  security scheme, so generated clients and contract tests see what the server does.
- BentoML bounds every request with a timer that it never cancels: each
  answered request leaves a timer, holding the request's context (its
  tracing span among it), alive for the whole traffic timeout. Under steady
  load tens of thousands pile up, and the collector's full passes over them
  stall whole batching rounds longer the longer the server runs.
  :class:`RequestTimeoutMiddleware` answers 504 exactly as BentoML's does and
  cancels its timer; :func:`use_request_timeout_middleware` puts it in
  BentoML's place.
- BentoML reads and parses a whole body before the request model can say it
  is too big: 270 MB of households took 18 s and 1.3 GB before its 422.
  :class:`BodySizeLimitMiddleware` answers 413 before any of it is parsed.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable, Collection, Sequence
from typing import Any

from bentoml._internal.server.http import traffic
from starlette.types import ASGIApp, Message, Receive, Scope, Send

OPENAPI_PATH = "/docs.json"

VALIDATION_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "ValidationErrorBody",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string"},
        "detail": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["loc", "msg", "type"],
                "properties": {
                    "loc": {"type": "array", "items": {"oneOf": [{"type": "string"}, {"type": "integer"}]}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
}
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "ErrorBody",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}


class ValidationStatusMiddleware:
    """JSON bodies only, and 422 instead of BentoML's 400 for an invalid body, on the given POST paths.

    A body declared as anything but JSON is refused with 415 before BentoML
    parses it: its multipart parser fails with 500 on a malformed header.
    A request without a content type is read as JSON, as BentoML does.
    """

    def __init__(self, app: ASGIApp, paths: Collection[str]) -> None:
        self.app = app
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") not in self.paths:
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-type")
        if declared is not None and not is_json_media_type(declared):
            await _send_json(send, 415, {"error": "send the body as application/json"})
            return

        async def send_with_status(message: Message) -> None:
            if message["type"] == "http.response.start" and message.get("status") == 400:
                message = {**message, "status": 422}
            await send(message)

        await self.app(scope, receive, send_with_status)


class BodySizeLimitMiddleware:
    """413 with a JSON error for a request body over ``max_bytes``, before anything parses it.

    - A declared ``Content-Length`` over the limit is answered at once, from
      the headers: not a byte of the body is read. (The HTTP server never
      passes on more than the declared length, so a body within it needs no
      counting.)
    - A body sent without a length (chunked) is read here up to the limit,
      counting its bytes: over the limit it is answered 413 and the rest is
      never read; within it, the app receives the body as one message, as it
      would have gathered it anyway.

    The answer asks the client to close the connection: the rest of the body
    is left unread on it. ``limit`` is called once, when the server builds
    its app (in each worker), so the setting is read where it applies.
    """

    def __init__(self, app: ASGIApp, limit: Callable[[], int]) -> None:
        self.app = app
        self.max_bytes = limit()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: Sequence[tuple[bytes, bytes]] = scope.get("headers") or []
        declared = _content_length(headers)
        if declared is not None:
            if declared > self.max_bytes:
                await self._refuse(send, f"a request body of {declared} bytes")
                return
            await self.app(scope, receive, send)
            return
        if not any(name.lower() == b"transfer-encoding" for name, _ in headers):
            await self.app(scope, receive, send)  # neither length nor chunks: HTTP/1.1 has no body
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before its body was complete
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send, "a chunked request body")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _refuse(self, send: Send, what: str) -> None:
        await _send_json(
            send,
            413,
            {
                "error": f"{what} is over the server's limit of {self.max_bytes} bytes: "
                "send fewer households per request"
            },
            close=True,
        )


def _content_length(headers: Sequence[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name.lower() == b"content-length":
            # The HTTP server has already refused a malformed or repeated length.
            text = value.strip()
            return int(text) if text.isdigit() else None
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the body already read, then whatever the connection says next."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replay


BENTOML_TIMEOUT_MIDDLEWARE = traffic.TimeoutMiddleware
"""BentoML's own, kept so a test can tell when an upgrade makes the replacement unnecessary."""


class RequestTimeoutMiddleware:
    """Answer 504 when a request has not started its answer within ``timeout`` seconds.

    BentoML's ``TimeoutMiddleware`` with its timer cancelled once the request
    is answered: same constructor, same 504 error, nothing left behind.
    """

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        started: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(self.timeout, _time_out, started)

        async def send_and_mark_started(message: Message) -> None:
            if not started.done():
                started.set_result(None)
            await send(message)

        answering = asyncio.ensure_future(self.app(scope, receive, send_and_mark_started))
        try:
            await started
        except TimeoutError:
            if answering.cancel():
                await _send_json(
                    send, 504, {"error": f"Not able to process the request in {self.timeout} seconds"}
                )
        else:
            await answering
        finally:
            timer.cancel()


def _time_out(started: asyncio.Future[None]) -> None:
    if not started.done():
        started.set_exception(TimeoutError)


def use_request_timeout_middleware() -> None:
    """Make BentoML build :class:`RequestTimeoutMiddleware` where it would build its own.

    BentoML looks the class up in its traffic module each time it assembles a
    service's middleware, and offers no setting to leave it out (the traffic
    timeout must be positive), so the module's name is pointed at ours. Call it
    before the server builds its app: at the service module's import.
    """
    # Not a subclass, on purpose: BentoML's __call__ is what leaves the timer behind. The module
    # attribute is typed as BentoML's class, which builds it with the same arguments.
    traffic.TimeoutMiddleware = RequestTimeoutMiddleware  # type: ignore[misc,assignment]


def is_json_media_type(content_type: bytes) -> bool:
    media_type = content_type.split(b";", 1)[0].strip().lower()
    return media_type == b"application/json" or (
        media_type.startswith(b"application/") and media_type.endswith(b"+json")
    )


async def _send_json(send: Send, status: int, body: dict[str, Any], *, close: bool = False) -> None:
    payload = json.dumps(body).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def api_openapi_document(
    spec: dict[str, Any], *, title: str, version: str, description: str, api_paths: Collection[str]
) -> dict[str, Any]:
    """BentoML's OpenAPI document with this API's title, errors and bearer security stated."""
    document = copy.deepcopy(spec)
    document["info"] = {"title": title, "version": version, "description": description}
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["ValidationErrorBody"] = VALIDATION_ERROR_SCHEMA
    schemas["ErrorBody"] = ERROR_SCHEMA
    components["securitySchemes"] = {"bearerKey": {"type": "http", "scheme": "bearer"}}
    for path in api_paths:
        operation = document.get("paths", {}).get(path, {}).get("post")
        if operation is None:
            continue
        responses = operation.setdefault("responses", {})
        responses.pop("400", None)
        responses.pop(400, None)
        responses["401"] = _error_response("Missing or invalid API key", "ErrorBody")
        responses["413"] = _error_response("Body over the server's size limit", "ErrorBody")
        responses["415"] = _error_response("Body not sent as application/json", "ErrorBody")
        responses["422"] = _error_response("Invalid body: one message per field", "ValidationErrorBody")
        if "404" in responses or 404 in responses:
            responses.pop(404, None)
            responses["404"] = _error_response("Nothing to answer from", "ErrorBody")
        operation["security"] = [{"bearerKey": []}]
    return document


def _error_response(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


class OpenApiMiddleware:
    """Serve ``GET /docs.json`` from ``document()``, built once on first use."""

    def __init__(self, app: ASGIApp, document: Callable[[], dict[str, Any]]) -> None:
        self.app = app
        self.document = document
        self._body: bytes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        wanted = scope.get("path") == OPENAPI_PATH and scope.get("method") in ("GET", "HEAD")
        if scope["type"] != "http" or not wanted:
            await self.app(scope, receive, send)
            return
        if self._body is None:
            self._body = json.dumps(self.document(), ensure_ascii=False).encode("utf-8")
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(self._body)).encode()),
                ],
            }
        )
        body = b"" if scope.get("method") == "HEAD" else self._body
        await send({"type": "http.response.body", "body": body})
