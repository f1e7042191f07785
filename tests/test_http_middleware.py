"""The API's own HTTP middleware: the request timeout (504 when late, nothing left behind when
answered) and the body size limit (413 before the body is read)."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import json
import weakref
from collections.abc import Callable
from typing import Any

import pytest
import uvloop
from bentoml._internal.server.http import traffic
from relapse_risk.serving.api.http_middleware import (
    BENTOML_TIMEOUT_MIDDLEWARE,
    BodySizeLimitMiddleware,
    RequestTimeoutMiddleware,
)
from relapse_risk.serving.api.schemas import MAX_HOUSEHOLDS_PER_REQUEST
from relapse_risk.serving.api.settings import (
    DEFAULT_MAX_BODY_BYTES,
    MAX_BODY_BYTES_VARIABLE,
    ApiSettingsError,
    max_body_bytes,
)

Message = dict[str, Any]
REQUEST_CONTEXT: contextvars.ContextVar[object] = contextvars.ContextVar("request_context")


class RequestState:
    """Stands in for what a request's context holds while it is served (its tracing span, for one)."""


def _answer_after(seconds: float) -> Callable[..., Any]:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.sleep(seconds)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


def _serve_one(middleware: type, timeout: float, app_seconds: float) -> tuple[list[Message], bool]:
    """One request through ``middleware`` on the server's event loop: its messages, and whether
    anything still holds the request's context once it is answered."""
    sent: list[Message] = []
    unserved = [RequestState()]
    held = weakref.ref(unserved[0])

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def request() -> None:
        REQUEST_CONTEXT.set(unserved.pop())  # from here on, only the request's context holds it
        await middleware(_answer_after(app_seconds), timeout)({"type": "http"}, receive, send)

    async def serve() -> None:
        # A task of its own, as the server gives each request: the request's
        # context lives as long as something refers to it.
        await asyncio.create_task(request())

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve())
        gc.collect()
        still_held = held() is not None
    return sent, still_held


def test_an_answered_request_leaves_nothing_behind() -> None:
    sent, still_held = _serve_one(RequestTimeoutMiddleware, timeout=300, app_seconds=0)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 200
    assert not still_held


def test_bentomls_own_timeout_still_keeps_every_answered_request_for_its_whole_timeout() -> None:
    # Why serving/api/http_middleware.py replaces it. When this fails, BentoML
    # cancels its timer: drop RequestTimeoutMiddleware and this test.
    _, still_held = _serve_one(BENTOML_TIMEOUT_MIDDLEWARE, timeout=300, app_seconds=0)
    assert still_held


def test_a_request_not_answered_within_the_timeout_is_504() -> None:
    sent, still_held = _serve_one(RequestTimeoutMiddleware, timeout=0.05, app_seconds=5)
    assert sent[0]["status"] == 504
    assert json.loads(sent[1]["body"]) == {"error": "Not able to process the request in 0.05 seconds"}
    assert not still_held


def test_lifespan_events_pass_through_untimed() -> None:
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.sleep(0.05)
        seen.append(scope["type"])

    asyncio.run(RequestTimeoutMiddleware(app, timeout=0.01)({"type": "lifespan"}, None, None))
    assert seen == ["lifespan"]


def test_the_api_service_builds_this_timeout_in_place_of_bentomls() -> None:
    from relapse_risk.serving.api import service  # noqa: F401 - importing the service wires its middleware

    assert traffic.TimeoutMiddleware is RequestTimeoutMiddleware


# -- the body size limit ------------------------------------------------------------------------


class BodyStream:
    """A request's body as the HTTP server hands it over: in messages, counted as they are taken."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.messages: list[Message] = [
            {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
            for i, chunk in enumerate(chunks)
        ]
        self.taken = 0

    async def receive(self) -> Message:
        if self.taken == len(self.messages):
            return {"type": "http.disconnect"}
        self.taken += 1
        return self.messages[self.taken - 1]


def _limited(
    limit: int, headers: list[tuple[bytes, bytes]], chunks: list[bytes]
) -> tuple[list[Message], list[bytes] | None, BodyStream]:
    """One POST through BodySizeLimitMiddleware: what was sent back, the body the app read (None: not
    called), and the body stream (how much of it was taken)."""
    sent: list[Message] = []
    stream = BodyStream(chunks)
    seen: list[list[bytes]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body: list[bytes] = []
        while True:
            message = await receive()
            body.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        seen.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/score", "headers": headers}
    asyncio.run(BodySizeLimitMiddleware(app, limit=lambda: limit)(scope, stream.receive, send))
    return sent, (seen[0] if seen else None), stream


def test_a_declared_length_over_the_limit_is_413_without_reading_a_byte() -> None:
    sent, body, stream = _limited(100, [(b"content-length", b"101")], [b"x" * 101])

    assert sent[0]["status"] == 413 and (b"connection", b"close") in sent[0]["headers"]
    assert "101 bytes is over the server's limit of 100 bytes" in json.loads(sent[1]["body"])["error"]
    assert body is None and stream.taken == 0


def test_a_chunked_body_is_read_only_until_it_passes_the_limit() -> None:
    chunks = [b"x" * 40] * 10  # 400 bytes; the limit is passed in the third chunk

    sent, body, stream = _limited(100, [(b"transfer-encoding", b"chunked")], chunks)

    assert sent[0]["status"] == 413
    assert (
        "chunked request body is over the server's limit of 100 bytes" in json.loads(sent[1]["body"])["error"]
    )
    assert body is None and stream.taken == 3


@pytest.mark.parametrize(
    "headers",
    [[(b"transfer-encoding", b"chunked")], [(b"content-length", b"100")]],
    ids=["chunked", "length"],
)
def test_a_body_within_the_limit_reaches_the_app_whole(headers: list[tuple[bytes, bytes]]) -> None:
    sent, body, stream = _limited(100, headers, [b"a" * 60, b"b" * 40])

    assert sent[0]["status"] == 200
    assert body is not None and b"".join(body) == b"a" * 60 + b"b" * 40
    assert stream.taken == 2


def test_the_default_limit_is_a_1000_household_request_at_64_kib_a_household_and_can_be_set() -> None:
    assert max_body_bytes({}) == DEFAULT_MAX_BODY_BYTES == MAX_HOUSEHOLDS_PER_REQUEST * 64 * 1024
    assert max_body_bytes({MAX_BODY_BYTES_VARIABLE: " 1048576 "}) == 1048576
    for bad in ("0", "-5", "1e6", "64MB"):
        with pytest.raises(ApiSettingsError, match=MAX_BODY_BYTES_VARIABLE):
            max_body_bytes({MAX_BODY_BYTES_VARIABLE: bad})
