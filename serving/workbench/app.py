"""The workbench web app: server-rendered pages for staff and the JSON API under ``/api/``.

Both read and write through :mod:`.store`, so a page shows exactly what the API
answers. Security, in one place:

- A session is an HttpOnly, SameSite=Lax cookie (``Secure`` with ``secure_cookies``)
  naming a server-side session (:mod:`.auth`).
- Every form carries the session's CSRF token; ``/api/`` writes carry it in the
  ``X-CSRF-Token`` header. Missing or wrong: 403. The sign-in form, before any
  session, uses a double-submit cookie; ``POST /api/login`` accepts JSON only,
  which a page of another site cannot send without the browser asking first.
- No session: ``/api/`` answers 401, a page redirects to the sign-in page.
- Another area's household: 404, as if it did not exist; the attempt is recorded.
- The request log names the route (``/households/{household_id}``), never the
  path, query or body: no household data reaches the server log.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from pydantic import BaseModel, Field, ValidationError
from relapse_risk.features.contract import INCOME_SOURCES
from relapse_risk.models.reasons import MEASURES
from relapse_risk.models.visit_outcomes import OUTCOMES
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match

from . import auth, store
from .charts import income_chart, margin_chart
from .db import make_engine, session_factory
from .i18n import DEFAULT_LANGUAGE, LANGUAGES, family, text, value

SESSION_COOKIE = "wb_session"
LOGIN_CSRF_COOKIE = "wb_login_csrf"
LANGUAGE_COOKIE = "wb_lang"
TEMPLATES = Path(__file__).parent / "templates"
STYLESHEET = TEMPLATES / "workbench.css"

log = logging.getLogger("relapse_risk.workbench")
access_log = logging.getLogger("relapse_risk.workbench.access")

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'none'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class Viewer:
    staff: auth.Staff
    csrf_token: str


class LoginBody(BaseModel):
    username: str = Field(max_length=100)
    password: str = Field(max_length=200)


class OutcomeBody(BaseModel):
    household_id: str = Field(max_length=64)
    visit_date: str
    visitor: str
    outcome: str
    measures: list[str] = Field(default_factory=list)
    note: str = ""
    client_key: str | None = Field(default=None, max_length=64)
    visit_id: int | None = None
    """Set to edit that visit; then ``version`` must be the version read."""
    version: int | None = None


class _Unauthenticated(Exception):
    pass


class _CsrfRefused(Exception):
    pass


def create_app(
    db_url: str, *, secure_cookies: bool = False, today: Callable[[], dt.date] | None = None
) -> FastAPI:
    """The ASGI app on the database at ``db_url`` (migrated beforehand: :func:`.db.upgrade`).

    Mount it into another ASGI app (the BentoML service included) or serve it
    alone with uvicorn (`relapse web`). ``today`` is for tests of overdue lists.
    """
    engine = make_engine(db_url)
    sessions: sessionmaker[Session] = session_factory(engine)
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["j2", "html"], default_for_string=True, default=True),
        undefined=StrictUndefined,
    )
    stylesheet = STYLESHEET.read_text(encoding="utf-8")
    clock = today or dt.date.today
    app = FastAPI(
        title="relapse-risk workbench", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json"
    )
    app.state.engine = engine

    @contextmanager
    def database() -> Iterator[Session]:
        with sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @app.middleware("http")
    async def headers_and_log(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        for name, header_value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, header_value)
        access_log.info(
            "%s %s %d %.1f ms",
            request.method,
            _route_of(app, request),
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        return response

    @app.exception_handler(_Unauthenticated)
    async def _no_session(request: Request, _exc: _Unauthenticated) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": "not signed in"}, status_code=401)
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)

    def refusal(request: Request, status: int, api_error: str, page_text: str) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": api_error}, status_code=status)
        language = _language(request)
        message = text(page_text, language)
        return _page(environment, request, "error.html.j2", None, language, status=status, message=message)

    @app.exception_handler(_CsrfRefused)
    async def _csrf(request: Request, _exc: _CsrfRefused) -> Response:
        return refusal(request, 403, "missing or wrong CSRF token", "forbidden")

    @app.exception_handler(store.NotFound)
    async def _not_found(request: Request, _exc: store.NotFound) -> Response:
        return refusal(request, 404, "not found", "not_found")

    def viewer(request: Request, session: Session) -> Viewer:
        found = auth.session_user(session, request.cookies.get(SESSION_COOKIE))
        if found is None:
            raise _Unauthenticated
        return Viewer(*found)

    def check_csrf(sent: str | None, expected: str) -> None:
        if not sent or not hmac.compare_digest(sent, expected):
            raise _CsrfRefused

    def signed_in_response(response: Response, signed: auth.SignedIn) -> Response:
        response.set_cookie(
            SESSION_COOKIE,
            signed.token,
            httponly=True,
            samesite="lax",
            secure=secure_cookies,
            max_age=auth.SESSION_HOURS * 3600,
        )
        response.delete_cookie(LOGIN_CSRF_COOKIE)
        return response

    def signed_in_as(username: str, password: str) -> auth.SignedIn | None:
        """Sign in (Argon2 takes tens of milliseconds: callers run this in the thread pool)."""
        with database() as session:
            return auth.sign_in(session, username, password)

    # -- JSON API ------------------------------------------------------------------------------

    @app.post("/api/login")
    async def api_login(request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"error": "send JSON"}, status_code=415)
        try:
            body = LoginBody.model_validate_json(await request.body())
        except ValidationError:
            return JSONResponse({"error": 'send {"username": ..., "password": ...}'}, status_code=422)
        signed = await run_in_threadpool(signed_in_as, body.username, body.password)
        if signed is None:
            return JSONResponse({"error": "wrong user name or password, or locked"}, status_code=401)
        response = JSONResponse(
            {
                "username": signed.staff.username,
                "role": signed.staff.role,
                "area_code": signed.staff.area_code,
                "csrf_token": signed.csrf_token,
            }
        )
        return signed_in_response(response, signed)

    @app.post("/api/logout")
    def api_logout(request: Request) -> Response:
        with database() as session:
            seen = viewer(request, session)
            check_csrf(request.headers.get("x-csrf-token"), seen.csrf_token)
            auth.sign_out(session, request.cookies.get(SESSION_COOKIE))
        response = JSONResponse({"signed_out": True})
        response.delete_cookie(SESSION_COOKIE)
        return response

    @app.get("/api/visit_list")
    def api_visit_list(
        request: Request,
        township: str,
        village: str | None = None,
        band: str | None = None,
        reason: str | None = None,
        as_of: str | None = None,
    ) -> dict[str, Any]:
        with database() as session:
            seen = viewer(request, session)
            return store.visit_list(
                session,
                seen.staff,
                township,
                as_of=as_of,
                village=village,
                band=band,
                reason=reason,
                today=clock(),
            )

    @app.get("/api/households/{household_id}")
    def api_household(request: Request, household_id: str) -> dict[str, Any]:
        with database() as session:
            seen = viewer(request, session)
            return store.household(session, seen.staff, household_id)

    @app.get("/api/visits/{visit_id}")
    def api_visit(request: Request, visit_id: int) -> dict[str, Any]:
        with database() as session:
            seen = viewer(request, session)
            return store.visit_history(session, seen.staff, visit_id)

    @app.get("/api/county")
    def api_county(request: Request, as_of: str | None = None) -> dict[str, Any]:
        with database() as session:
            seen = viewer(request, session)
            return store.county_summary(session, seen.staff, as_of=as_of, today=clock())

    @app.post("/api/outcomes")
    def api_outcomes(request: Request, body: OutcomeBody) -> Response:
        with database() as session:
            seen = viewer(request, session)
            check_csrf(request.headers.get("x-csrf-token"), seen.csrf_token)
            data = store.OutcomeInput(
                body.visit_date, body.visitor, body.outcome, tuple(body.measures), body.note
            )
            try:
                if body.visit_id is not None:
                    if body.version is None:
                        return JSONResponse({"error": "version: required to edit"}, status_code=422)
                    visit = store.edit_outcome(session, seen.staff, body.visit_id, body.version, data)
                    return JSONResponse({"visit": visit, "created": False})
                visit, created = store.record_outcome(
                    session, seen.staff, body.household_id, data, body.client_key
                )
            except store.Invalid as exc:
                return JSONResponse({"error": "invalid", "fields": exc.fields}, status_code=422)
            except store.Conflict as exc:
                return JSONResponse(
                    {"error": "changed by someone else", "current": exc.current}, status_code=409
                )
            return JSONResponse({"visit": visit, "created": created}, status_code=201 if created else 200)

    # -- pages ---------------------------------------------------------------------------------

    @app.get("/workbench.css")
    def css() -> Response:
        return Response(stylesheet, media_type="text/css", headers={"Cache-Control": "max-age=3600"})

    @app.get("/login")
    def login_page(request: Request, next: str = "/", failed: int = 0) -> Response:
        language = _language(request)
        token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
        response = _page(
            environment,
            request,
            "login.html.j2",
            None,
            language,
            csrf_token=token,
            next=_safe_next(next),
            failed=bool(failed),
        )
        response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=secure_cookies)
        return response

    @app.post("/login")
    async def login_form(request: Request) -> Response:
        form = await request.form()
        check_csrf(_field(form, "csrf_token"), request.cookies.get(LOGIN_CSRF_COOKIE) or "")
        username, password = _field(form, "username")[:100], _field(form, "password")[:200]
        signed = await run_in_threadpool(signed_in_as, username, password)
        target = _safe_next(_field(form, "next") or "/")
        if signed is None:
            return RedirectResponse(f"/login?failed=1&next={quote(target)}", status_code=303)
        return signed_in_response(RedirectResponse(target, status_code=303), signed)

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        form = await request.form()
        return await run_in_threadpool(end_session, request, form)

    def end_session(request: Request, form: Any) -> Response:  # noqa: ANN401 - starlette's FormData
        with database() as session:
            seen = viewer(request, session)
            check_csrf(_field(form, "csrf_token"), seen.csrf_token)
            auth.sign_out(session, request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    @app.get("/")
    def home(request: Request) -> Response:
        with database() as session:
            seen = viewer(request, session)
        if seen.staff.role == "township":
            return RedirectResponse(f"/visit-list?township={seen.staff.area_code}", status_code=303)
        return RedirectResponse("/county", status_code=303)

    @app.get("/visit-list")
    def visit_list_page(
        request: Request, township: str = "", village: str = "", band: str = "", reason: str = ""
    ) -> Response:
        language = _language(request)
        with database() as session:
            seen = viewer(request, session)
            record = store.latest_list(session, seen.staff.area_code[:6])
            options = store.townships(session, seen.staff, record.id) if record else []
            chosen = township or (
                seen.staff.area_code if seen.staff.role == "township" else options[0] if options else ""
            )
            payload = (
                store.visit_list(
                    session,
                    seen.staff,
                    chosen,
                    village=village or None,
                    band=band or None,
                    reason=reason or None,
                    today=clock(),
                )
                if chosen
                else None
            )
        return _page(
            environment, request, "visit_list.html.j2", seen, language, data=payload, townships=options
        )

    @app.get("/households/{household_id}")
    def household_page(request: Request, household_id: str, saved: int = 0) -> Response:
        language = _language(request)
        with database() as session:
            seen = viewer(request, session)
            payload = store.household(session, seen.staff, household_id)
        return _page(
            environment,
            request,
            "household.html.j2",
            seen,
            language,
            data=payload,
            saved=bool(saved),
            charts=_charts(payload["detail"], language),
        )

    def outcome_form(
        request: Request, seen: Viewer, language: str, household_id: str, **values: Any
    ) -> Response:
        defaults = {
            "visit": None,
            "values": {
                "visit_date": clock().isoformat(),
                "visitor": "",
                "outcome": "",
                "measures": [],
                "note": "",
            },
            "faults": {},
            "conflict": None,
            "client_key": secrets.token_hex(16),
        }
        defaults.update(values)
        return _page(
            environment,
            request,
            "outcome.html.j2",
            seen,
            language,
            household_id=household_id,
            outcomes=OUTCOMES,
            measures=MEASURES,
            **defaults,
            status=409 if defaults["conflict"] else 422 if defaults["faults"] else 200,
        )

    @app.get("/households/{household_id}/visits/new")
    def new_visit_page(request: Request, household_id: str) -> Response:
        language = _language(request)
        with database() as session:
            seen = viewer(request, session)
            store.household(session, seen.staff, household_id)  # 404 outside the area
        return outcome_form(request, seen, language, household_id)

    @app.get("/visits/{visit_id}/edit")
    def edit_visit_page(request: Request, visit_id: int) -> Response:
        language = _language(request)
        with database() as session:
            seen = viewer(request, session)
            history = store.visit_history(session, seen.staff, visit_id)
        visit = history["visit"]
        return outcome_form(
            request,
            seen,
            language,
            visit["household_id"],
            visit=visit,
            values=visit,
            history=history["revisions"],
        )

    @app.post("/households/{household_id}/visits")
    async def save_visit(request: Request, household_id: str) -> Response:
        form = await request.form()
        return await run_in_threadpool(save_visit_form, request, household_id, form)

    def save_visit_form(request: Request, household_id: str, form: Any) -> Response:  # noqa: ANN401
        """The database side of a saved form, in the thread pool: the event loop never waits on it."""
        language = _language(request)
        data = store.OutcomeInput(
            visit_date=_field(form, "visit_date"),
            visitor=_field(form, "visitor"),
            outcome=_field(form, "outcome"),
            measures=tuple(str(m) for m in form.getlist("measures")),
            note=_field(form, "note"),
        )
        values = {
            "visit_date": data.visit_date,
            "visitor": data.visitor,
            "outcome": data.outcome,
            "measures": list(data.measures),
            "note": data.note,
        }
        visit_id = _whole(_field(form, "visit_id"))
        if _field(form, "visit_id") and visit_id is None:
            raise store.NotFound("no such visit")
        version = _whole(_field(form, "version")) or 0  # a mangled version can only conflict
        with database() as session:
            seen = viewer(request, session)
            check_csrf(_field(form, "csrf_token"), seen.csrf_token)
            try:
                if visit_id:
                    store.edit_outcome(session, seen.staff, visit_id, version, data)
                else:
                    store.record_outcome(
                        session, seen.staff, household_id, data, _field(form, "client_key") or None
                    )
            except store.Invalid as exc:
                visit = store.visit_history(session, seen.staff, visit_id)["visit"] if visit_id else None
                return outcome_form(
                    request,
                    seen,
                    language,
                    household_id,
                    visit=visit,
                    values=values,
                    faults=exc.fields,
                    client_key=_field(form, "client_key"),
                )
            except store.Conflict as exc:
                return outcome_form(
                    request,
                    seen,
                    language,
                    household_id,
                    visit=exc.current,
                    values=values,
                    conflict=exc.current,
                )
        return RedirectResponse(f"/households/{quote(household_id)}?saved=1", status_code=303)

    @app.get("/county")
    def county_page(request: Request, as_of: str = "") -> Response:
        language = _language(request)
        with database() as session:
            seen = viewer(request, session)
            try:
                payload = store.county_summary(session, seen.staff, as_of=as_of or None, today=clock())
            except store.NotFound:
                payload = None
            lists = store.list_infos(session, seen.staff.area_code[:6])
        return _page(environment, request, "county.html.j2", seen, language, data=payload, lists=lists)

    @app.get("/language/{language}")
    def choose_language(request: Request, language: str, back: str = "/") -> Response:
        if language not in LANGUAGES:
            raise HTTPException(404)
        response = RedirectResponse(_safe_next(back), status_code=303)
        response.set_cookie(LANGUAGE_COOKIE, language, samesite="lax", max_age=365 * 86400)
        return response

    return app


def _field(form: Any, name: str) -> str:  # noqa: ANN401 - starlette's FormData
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _whole(text: str) -> int | None:
    """A form's whole number; None when empty or not digits."""
    return int(text) if text.isdigit() and len(text) < 12 else None


def _safe_next(target: str) -> str:
    """Only a path of this site: never ``//elsewhere`` or ``https://elsewhere``."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


def _language(request: Request) -> str:
    chosen = request.cookies.get(LANGUAGE_COOKIE, DEFAULT_LANGUAGE)
    return chosen if chosen in LANGUAGES else DEFAULT_LANGUAGE


def _route_of(app: FastAPI, request: Request) -> str:
    """The matched route's path template, so the log never holds an identifier from the URL."""
    for route in app.router.routes:
        match, _ = route.matches(request.scope)
        if match == Match.FULL:
            return str(getattr(route, "path", "?"))
    return "(no route)"


def _charts(detail: dict[str, Any], language: str) -> dict[str, Markup]:
    source_labels = {s: value(s, language) for s in INCOME_SOURCES}
    return {
        "income": Markup(  # noqa: S704 - numbers and escaped labels only (charts.py)
            income_chart(
                detail["months"],
                detail["income"],
                {"title": text("income_by_source", language), **source_labels},
            )
        ),
        "margin": Markup(  # noqa: S704
            margin_chart(
                detail["months"],
                {
                    "per_capita": detail["per_capita"],
                    "per_capita_after_rigid": detail["per_capita_after_rigid"],
                    "line": detail["line"],
                },
                {
                    "title": text("per_capita_vs_line", language),
                    "per_capita": text("per_capita", language),
                    "per_capita_after_rigid": text("per_capita_after_rigid", language),
                    "line": text("monitoring_line", language),
                },
            )
        ),
    }


def _page(
    environment: Environment,
    request: Request,
    name: str,
    seen: Viewer | None,
    language: str,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    template = environment.get_template(name)
    html = template.render(
        t=lambda key: text(key, language),
        family=lambda name: family(name, language),
        measure_name=lambda code: getattr(MEASURES.get(code), language, code),
        value=lambda code: value(code, language),
        lang=language,
        other_language="en" if language == "zh" else "zh",
        here=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        staff=seen.staff if seen else None,
        csrf_token=context.pop("csrf_token", seen.csrf_token if seen else ""),
        **context,
    )
    return HTMLResponse(html, status_code=status)
