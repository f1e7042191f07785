"""The request timeout the API's server runs with: 504 when late, and nothing left behind when answered."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import json
import weakref
from collections.abc import Callable
from typing import Any

import uvloop
from bentoml._internal.server.http import traffic
from relapse_risk.serving.http_middleware import BENTOML_TIMEOUT_MIDDLEWARE, RequestTimeoutMiddleware

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
    # Why serving/http_middleware.py replaces it. When this fails, BentoML
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
    from relapse_risk.serving import service  # noqa: F401 - importing the service wires its middleware

    assert traffic.TimeoutMiddleware is RequestTimeoutMiddleware
