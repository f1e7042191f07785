"""The workbench over HTTP: sign-in, roles, the JSON API, the pages, and what security demands.

Each test runs on SQLite and on PostgreSQL, through the ASGI app in process
(starlette's test client). The browser tests are in test_workbench_browser.py.
"""

from __future__ import annotations

import datetime as dt
import logging
import re

import pytest
from markupsafe import escape
from relapse_risk.serving.workbench.auth import MAX_FAILED_SIGN_INS
from relapse_risk.serving.workbench.db import SecurityEvent, make_engine, session_factory
from sqlalchemy import select
from workbench_fixtures import PASSWORD, Workbench

TODAY = dt.date.today().isoformat()


def _outcome(workbench: Workbench, **changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "household_id": workbench.household_a,
        "visit_date": TODAY,
        "visitor": "李干部",
        "outcome": "confirmed",
        "measures": ["medical_assistance"],
        "note": "",
    }
    body.update(changes)
    return body


def _server_log(caplog: pytest.LogCaptureFixture) -> str:
    """What the server's own loggers wrote (the test client logs each URL it asks for: not the server)."""
    return "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(("relapse_risk", "uvicorn")))


def _events(workbench: Workbench, kind: str) -> list[SecurityEvent]:
    with session_factory(make_engine(workbench.url))() as session:
        return list(session.scalars(select(SecurityEvent).where(SecurityEvent.kind == kind)))


# -- sign-in and sessions --------------------------------------------------------------------------


def test_the_api_answers_401_and_the_pages_redirect_to_sign_in_without_a_session(
    workbench: Workbench,
) -> None:
    client = workbench.client()

    assert client.get(f"/api/visit_list?township={workbench.township_a}").status_code == 401
    assert client.get(f"/api/households/{workbench.household_a}").status_code == 401
    assert client.post("/api/outcomes", json=_outcome(workbench)).status_code == 401
    for page in ("/", "/visit-list", "/county", f"/households/{workbench.household_a}"):
        response = client.get(page)
        assert response.status_code == 303 and response.headers["location"].startswith("/login?next=")


def test_sign_in_sets_an_http_only_session_cookie_and_returns_the_csrf_token(workbench: Workbench) -> None:
    client = workbench.client()
    response = client.post("/api/login", json={"username": "staff_a", "password": PASSWORD})

    assert response.status_code == 200
    assert response.json()["role"] == "township" and len(response.json()["csrf_token"]) >= 32
    cookie = response.headers["set-cookie"]
    assert "wb_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert client.get(f"/api/visit_list?township={workbench.township_a}").status_code == 200


def test_sign_in_takes_json_only_and_answers_a_malformed_body_with_422(workbench: Workbench) -> None:
    client = workbench.client()
    form = client.post("/api/login", data={"username": "staff_a", "password": PASSWORD})
    broken = client.post("/api/login", content=b"{not json", headers={"Content-Type": "application/json"})
    missing = client.post("/api/login", json={"username": "staff_a"})
    assert (form.status_code, broken.status_code, missing.status_code) == (415, 422, 422)


def test_wrong_passwords_lock_the_account_even_against_the_right_one(workbench: Workbench) -> None:
    client = workbench.client()
    for _ in range(MAX_FAILED_SIGN_INS):
        assert client.post("/api/login", json={"username": "staff_a", "password": "guess"}).status_code == 401

    assert client.post("/api/login", json={"username": "staff_a", "password": PASSWORD}).status_code == 401
    assert [e.username for e in _events(workbench, "locked")] == ["staff_a"]
    # Other accounts are not affected.
    assert client.post("/api/login", json={"username": "staff_b", "password": PASSWORD}).status_code == 200


def test_a_disabled_user_cannot_sign_in_and_loses_open_sessions(workbench: Workbench) -> None:
    from relapse_risk.serving.workbench.command import set_active

    client, _ = workbench.signed_in("staff_a")
    set_active(workbench.url, "staff_a", active=False)

    assert client.get(f"/api/visit_list?township={workbench.township_a}").status_code == 401
    response = workbench.client().post("/api/login", json={"username": "staff_a", "password": PASSWORD})
    assert response.status_code == 401


def test_sign_in_by_form_needs_the_forms_csrf_cookie(workbench: Workbench) -> None:
    client = workbench.client()
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    form = {"username": "analyst", "password": PASSWORD, "next": "/county"}

    assert client.post("/login", data=form).status_code == 403
    signed = client.post("/login", data={**form, "csrf_token": token})
    assert signed.status_code == 303 and signed.headers["location"] == "/county"
    assert client.get("/county").status_code == 200


def test_sign_in_never_redirects_to_another_site(workbench: Workbench) -> None:
    client = workbench.client()
    page = client.get("/login?next=//evil.example/x")
    assert 'name="next" value="/"' in page.text


# -- roles -----------------------------------------------------------------------------------------


def test_township_staff_see_only_their_township_and_another_answers_404_and_is_logged(
    workbench: Workbench, caplog: pytest.LogCaptureFixture
) -> None:
    client, _ = workbench.signed_in("staff_a")

    assert client.get(f"/api/households/{workbench.household_a}").status_code == 200
    with caplog.at_level(logging.INFO):
        assert client.get(f"/api/households/{workbench.household_b}").status_code == 404
        assert client.get(f"/households/{workbench.household_b}").status_code == 404
        assert client.get(f"/api/visit_list?township={workbench.township_b}").status_code == 404
    # The refusal looks like a household that does not exist.
    assert client.get("/api/households/no-such-household").json() == {"error": "not found"}
    events = _events(workbench, "cross_area_read")
    assert len(events) == 3 and {e.username for e in events} == {"staff_a"}
    assert "refused staff_a" in _server_log(caplog)
    assert workbench.household_b not in _server_log(caplog)


def test_township_staff_cannot_record_an_outcome_for_another_township(workbench: Workbench) -> None:
    client, csrf = workbench.signed_in("staff_a")
    response = client.post(
        "/api/outcomes",
        json=_outcome(workbench, household_id=workbench.household_b),
        headers={"X-CSRF-Token": csrf},
    )
    assert response.status_code == 404


def test_a_county_analyst_sees_every_township_of_the_county(workbench: Workbench) -> None:
    client, _ = workbench.signed_in("analyst")
    for township, household in (
        (workbench.township_a, workbench.household_a),
        (workbench.township_b, workbench.household_b),
    ):
        assert client.get(f"/api/visit_list?township={township}").status_code == 200
        assert client.get(f"/api/households/{household}").status_code == 200
    county = client.get("/api/county").json()
    assert {workbench.township_a, workbench.township_b} <= {r["name"] for r in county["by_township"]}


# -- the JSON API ----------------------------------------------------------------------------------


def test_the_visit_list_is_ranked_with_reasons_measures_and_status_and_filters(workbench: Workbench) -> None:
    client, _ = workbench.signed_in("staff_a")
    everyone = client.get(f"/api/visit_list?township={workbench.township_a}").json()

    households = everyone["households"]
    assert [h["rank_township"] for h in households] == list(range(1, len(households) + 1))
    assert households[0]["household_id"] == workbench.household_a
    assert all(h["reasons"] and h["reasons"][0]["measure_zh"] for h in households)
    assert {h["status"] for h in households} == {"overdue"}  # issued 20 days ago, nobody visited
    village = everyone["villages"][0]
    by_village = client.get(f"/api/visit_list?township={workbench.township_a}&village={village}").json()
    assert {h["village_code"] for h in by_village["households"]} == {village}
    band = households[0]["risk_band"]
    by_band = client.get(f"/api/visit_list?township={workbench.township_a}&band={band}").json()
    assert by_band["households"] and {h["risk_band"] for h in by_band["households"]} == {band}
    family = everyone["reason_families"][0]
    by_reason = client.get(f"/api/visit_list?township={workbench.township_a}&reason={family}").json()
    assert by_reason["households"]
    assert all(any(r["family"] == family for r in h["reasons"]) for h in by_reason["households"])


def test_the_household_answer_holds_history_members_and_reasons(workbench: Workbench) -> None:
    client, _ = workbench.signed_in("staff_a")
    page = client.get(f"/api/households/{workbench.household_a}").json()

    assert page["list"]["as_of"] == workbench.runs.latest_as_of
    detail = page["detail"]
    assert len(detail["months"]) >= 24 and detail["income"] and detail["members"]
    assert len(page["reasons"]) == 2 and page["visits"] == []


def test_an_outcome_is_recorded_once_edited_with_its_version_and_a_stale_edit_is_409(
    workbench: Workbench,
) -> None:
    client, csrf = workbench.signed_in("staff_a")
    headers = {"X-CSRF-Token": csrf}
    first = client.post("/api/outcomes", json=_outcome(workbench, client_key="abc"), headers=headers)
    again = client.post("/api/outcomes", json=_outcome(workbench, client_key="abc"), headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    visit = first.json()["visit"]
    assert again.json()["visit"]["id"] == visit["id"]

    edit = _outcome(workbench, visit_id=visit["id"], version=1, outcome="no_risk")
    assert client.post("/api/outcomes", json=edit, headers=headers).json()["visit"]["version"] == 2
    stale = client.post("/api/outcomes", json={**edit, "note": "late"}, headers=headers)
    assert stale.status_code == 409 and stale.json()["current"]["version"] == 2
    shown = client.get(f"/api/households/{workbench.household_a}").json()["visits"]
    assert [(v["outcome"], v["revisions"]) for v in shown] == [("no_risk", 2)]


def test_an_invalid_outcome_is_422_naming_the_fields(workbench: Workbench) -> None:
    client, csrf = workbench.signed_in("staff_a")
    response = client.post(
        "/api/outcomes",
        json=_outcome(workbench, outcome="unsure", visitor=""),
        headers={"X-CSRF-Token": csrf},
    )
    assert response.status_code == 422 and set(response.json()["fields"]) == {"outcome", "visitor"}


# -- CSRF and escaping -----------------------------------------------------------------------------


def test_writes_without_their_csrf_token_are_403(workbench: Workbench) -> None:
    client, csrf = workbench.signed_in("staff_a")

    assert client.post("/api/outcomes", json=_outcome(workbench)).status_code == 403
    assert (
        client.post("/api/outcomes", json=_outcome(workbench), headers={"X-CSRF-Token": "x" * 43}).status_code
        == 403
    )
    form = {"visit_date": TODAY, "visitor": "李", "outcome": "no_risk"}
    assert client.post(f"/households/{workbench.household_a}/visits", data=form).status_code == 403
    assert client.post("/logout", data={}).status_code == 403
    assert client.get(f"/api/households/{workbench.household_a}").json()["visits"] == []
    # Another user's token is no good either.
    _, other = workbench.signed_in("staff_b")
    assert (
        client.post("/api/outcomes", json=_outcome(workbench), headers={"X-CSRF-Token": other}).status_code
        == 403
    )


@pytest.mark.parametrize(
    "note",
    [
        "'; DROP TABLE visits; --",
        "1' OR '1'='1",
        '<script>alert("x")</script><img src=x onerror=alert(1)>',
        '走访时户主说"收入下降" & 医疗支出 > 1万',
    ],
)
def test_notes_are_stored_as_typed_and_shown_escaped(workbench: Workbench, note: str) -> None:
    client, csrf = workbench.signed_in("staff_a")
    page = client.get(f"/households/{workbench.household_a}/visits/new")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    key = re.search(r'name="client_key" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    form = {"csrf_token": token, "client_key": key, "visit_date": TODAY, "visitor": note[:20],
            "outcome": "no_risk", "note": note}  # fmt: skip

    saved = client.post(f"/households/{workbench.household_a}/visits", data=form)
    assert saved.status_code == 303

    stored = client.get(f"/api/households/{workbench.household_a}").json()["visits"]
    assert [v["note"] for v in stored] == [note]
    shown = client.get(f"/households/{workbench.household_a}").text
    assert str(escape(note)) in shown
    assert "<script>alert" not in shown and "<img src=x" not in shown
    assert csrf  # the API token and the form's are the session's one token
    assert token == csrf


def test_pages_forbid_scripts_and_framing(workbench: Workbench) -> None:
    client, _ = workbench.signed_in("staff_a")
    response = client.get(f"/households/{workbench.household_a}")
    policy = response.headers["content-security-policy"]
    assert "script-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["x-frame-options"] == "DENY"
    assert "<script" not in response.text


def test_the_server_log_names_routes_never_households_or_notes(
    workbench: Workbench, caplog: pytest.LogCaptureFixture
) -> None:
    note = "户主王某某，身份证号不写在这里 SECRET-NOTE-TEXT"
    with caplog.at_level(logging.DEBUG):
        client, csrf = workbench.signed_in("staff_a")
        client.get(f"/visit-list?township={workbench.township_a}")
        client.get(f"/households/{workbench.household_a}")
        client.get(f"/api/households/{workbench.household_b}")
        client.post("/api/outcomes", json=_outcome(workbench, note=note), headers={"X-CSRF-Token": csrf})
    log = _server_log(caplog)
    assert "GET /households/{household_id} 200" in log and "POST /api/outcomes 201" in log
    for secret in (workbench.household_a, workbench.household_b, "SECRET-NOTE-TEXT", "王某某", PASSWORD):
        assert secret not in log


# -- the pages -------------------------------------------------------------------------------------


def test_pages_are_chinese_by_default_and_english_on_request(workbench: Workbench) -> None:
    client, _ = workbench.signed_in("staff_a")
    chinese = client.get(f"/visit-list?township={workbench.township_a}")
    assert '<html lang="zh-CN">' in chinese.text and "走访名单" in chinese.text

    switched = client.get("/language/en?back=/visit-list")
    assert switched.status_code == 303 and switched.headers["location"] == "/visit-list"
    english = client.get(f"/visit-list?township={workbench.township_a}")
    assert (
        '<html lang="en">' in english.text and "Visit list" in english.text and "走访名单" not in english.text
    )


def test_every_label_exists_in_both_languages() -> None:
    from relapse_risk.serving.workbench.i18n import FAMILY, LANGUAGES, TEXT

    assert all(set(words) == set(LANGUAGES) and all(words.values()) for words in TEXT.values())
    assert all(set(words) == set(LANGUAGES) for words in FAMILY.values())


def test_the_household_page_shows_charts_members_reasons_and_the_record_link(workbench: Workbench) -> None:
    client, _ = workbench.signed_in("staff_a")
    page = client.get(f"/households/{workbench.household_a}").text

    assert page.count('<svg class="chart"') == 2 and "<polyline" in page and "<rect" in page
    assert "家庭成员" in page and "监测线" in page and "原因1" in page
    assert (
        "外出务工" in page or "本地务工" in page or "种养殖" in page
    )  # income sources by their Chinese names
    assert f'href="/households/{workbench.household_a}/visits/new"' in page


def test_a_visit_recorded_by_form_shows_on_the_household_list_and_county_pages(workbench: Workbench) -> None:
    client, _ = workbench.signed_in("staff_a")
    form_page = client.get(f"/households/{workbench.household_a}/visits/new").text
    fields = dict(re.findall(r'name="(csrf_token|client_key)" value="([^"]+)"', form_page))
    saved = client.post(
        f"/households/{workbench.household_a}/visits",
        data={**fields, "visit_date": TODAY, "visitor": "张三", "outcome": "confirmed",
              "measures": ["medical_assistance", "temporary_relief"], "note": "大病"},
    )  # fmt: skip
    assert saved.headers["location"] == f"/households/{workbench.household_a}?saved=1"

    household = client.get(saved.headers["location"]).text
    assert "已保存" in household and "确有风险，建议纳入监测" in household and "临时救助" in household
    listed = client.get(f"/visit-list?township={workbench.township_a}").text
    assert "已走访" in listed
    analyst, _ = workbench.signed_in("analyst")
    county = analyst.get("/county").text
    assert workbench.township_a in county and "超期未访" in county and "100%" in county


def test_the_edit_form_shows_the_history_and_a_stale_form_shows_the_conflict(workbench: Workbench) -> None:
    client, csrf = workbench.signed_in("staff_a")
    visit = client.post(
        "/api/outcomes", json=_outcome(workbench, outcome="not_home"), headers={"X-CSRF-Token": csrf}
    ).json()["visit"]
    edit_page = client.get(f"/visits/{visit['id']}/edit").text
    assert 'name="version" value="1"' in edit_page and "修改记录" in edit_page
    client.post(
        "/api/outcomes",
        json=_outcome(workbench, visit_id=visit["id"], version=1),
        headers={"X-CSRF-Token": csrf},
    )

    stale = client.post(
        f"/households/{workbench.household_a}/visits",
        data={"csrf_token": csrf, "visit_id": str(visit["id"]), "version": "1", "visit_date": TODAY,
              "visitor": "张三", "outcome": "no_risk", "note": "my change"},
    )  # fmt: skip
    assert stale.status_code == 409 and "该记录已被他人修改" in stale.text
    assert 'name="version" value="2"' in stale.text


def test_a_mangled_edit_form_is_404_or_a_conflict_never_a_new_visit_or_a_crash(workbench: Workbench) -> None:
    client, csrf = workbench.signed_in("staff_a")
    visit = client.post("/api/outcomes", json=_outcome(workbench), headers={"X-CSRF-Token": csrf}).json()[
        "visit"
    ]
    form = {"csrf_token": csrf, "visit_date": TODAY, "visitor": "张三", "outcome": "no_risk"}
    url = f"/households/{workbench.household_a}/visits"

    assert (
        client.post(url, data={**form, "visit_id": "1; DROP TABLE visits", "version": "1"}).status_code == 404
    )
    assert client.post(url, data={**form, "visit_id": str(visit["id"]), "version": "x"}).status_code == 409
    assert len(client.get(f"/api/households/{workbench.household_a}").json()["visits"]) == 1
