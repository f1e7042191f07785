"""The workbench in a real browser: Debian's headless chromium, driven by Playwright, on a phone-sized
(390 x 844) and a desktop (1280 x 900) viewport, against `relapse web` started as staff would start it.

One walk per viewport and database: sign in, the visit list, a household page,
recording an outcome, the list again, then the county page as the analyst. On
the phone nothing may be wider than the screen and no two parts of a list
entry may overlap (today's printed visit list fails both). Screenshots are
written to the test's folder, and to RELAPSE_WORKBENCH_SCREENSHOTS when set
(docs/images holds the ones in docs/workbench.md).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from workbench_fixtures import PASSWORD, Workbench

CHROMIUM = Path("/usr/bin/chromium")
VIEWPORTS = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 900}}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="Debian's chromium is not installed; .ci/run installs it"
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(workbench: Workbench, tmp_path: Path):  # noqa: ANN201 - yields (base URL, workbench, log file)
    """`relapse web` on a free port of the loopback, stopped (by its own process id) afterwards."""
    port = _free_port()
    log = tmp_path / "server.log"
    relapse = Path(sys.executable).with_name("relapse")
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(relapse), "web", "--db", workbench.url, "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/login", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "relapse web did not answer within 60 s"
            time.sleep(0.3)
        yield base, workbench, log
    finally:
        process.terminate()
        process.wait(timeout=30)


def _shoot(page, name: str, tmp_path: Path) -> None:  # noqa: ANN001 - a Playwright page
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    if folder := os.environ.get("RELAPSE_WORKBENCH_SCREENSHOTS"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"workbench-{name}.png"), full_page=False)


NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth"

OVERLAPS = """
() => {
  const found = [];
  for (const card of document.querySelectorAll('li.household')) {
    const parts = [...card.querySelectorAll('.head > *, .meta, .reason, .measure')]
      .map(e => [e, e.getBoundingClientRect()]);
    for (let i = 0; i < parts.length; i++)
      for (let j = i + 1; j < parts.length; j++) {
        const [a, r] = parts[i], [b, s] = parts[j];
        if (a.contains(b) || b.contains(a)) continue;
        const overlap = Math.min(r.right, s.right) - Math.max(r.left, s.left) > 1
                     && Math.min(r.bottom, s.bottom) - Math.max(r.top, s.top) > 1;
        if (overlap) found.push(a.className + ' / ' + b.className);
      }
  }
  return found;
}
"""

NARROWEST_REASON = (
    "Math.min(...[...document.querySelectorAll('.reasons li')].map(e => e.getBoundingClientRect().width))"
)
"""Width (px) of the narrowest reason's line box. On a phone the printed list gives each reason a column a
few characters wide, so it wraps one character a line; here each reason has the card's width."""


@pytest.mark.parametrize("viewport", sorted(VIEWPORTS))
def test_staff_walk_sign_in_list_household_record_outcome_and_county(
    server, viewport: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, workbench, log = server
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport=VIEWPORTS[viewport], locale="zh-CN")

            page.goto(f"{base}/")
            expect(page).to_have_url(f"{base}/login?next=/")
            _shoot(page, f"{viewport}-sign-in", tmp_path)
            page.fill("input[name=username]", "staff_a")
            page.fill("input[name=password]", PASSWORD)
            page.click("main button[type=submit]")

            expect(page.locator("h1")).to_contain_text(f"走访名单 · {workbench.township_a}")
            cards = page.locator("li.household")
            assert cards.count() >= 3
            expect(cards.first.locator(".status")).to_have_text("超期未访")
            assert page.evaluate(NO_SIDEWAYS_SCROLL), "the list is wider than the screen"
            assert page.evaluate(OVERLAPS) == []
            assert page.evaluate(NARROWEST_REASON) >= 250
            _shoot(page, f"{viewport}-visit-list", tmp_path)

            page.click(f"a[href='/households/{workbench.household_a}']")
            expect(page.locator("h1")).to_contain_text(workbench.household_a)
            assert page.locator("svg.chart").count() == 2
            assert page.evaluate(NO_SIDEWAYS_SCROLL), "the household page is wider than the screen"
            _shoot(page, f"{viewport}-household", tmp_path)

            page.click(f"a[href='/households/{workbench.household_a}/visits/new']")
            page.fill("input[name=visitor]", "张村干")
            page.check("input[name=outcome][value=confirmed]")
            page.check("input[name=measures][value=medical_assistance]")
            page.fill("textarea[name=note]", "<b>户主住院</b> ' OR 1=1 --")
            assert page.evaluate(NO_SIDEWAYS_SCROLL), "the form is wider than the screen"
            _shoot(page, f"{viewport}-record-visit", tmp_path)
            page.click("main button[type=submit]")

            expect(page.locator("p.ok")).to_have_text("已保存")
            expect(page.locator("li.visit .note")).to_have_text("<b>户主住院</b> ' OR 1=1 --")
            page.goto(f"{base}/visit-list?township={workbench.township_a}")
            expect(cards.first.locator(".status")).to_have_text("已走访")

            page.click("button.link")  # sign out
            expect(page).to_have_url(f"{base}/login")
            page.fill("input[name=username]", "analyst")
            page.fill("input[name=password]", PASSWORD)
            page.click("main button[type=submit]")
            expect(page.locator("h1")).to_contain_text("全县情况")
            row = page.locator("table.coverage").first.locator("tr", has_text=workbench.township_a)
            expect(row).to_contain_text("100%")  # the one visited household confirmed the risk
            assert page.evaluate(NO_SIDEWAYS_SCROLL), "the county page is wider than the screen"
            _shoot(page, f"{viewport}-county", tmp_path)

            page.click("a[lang=en]")
            expect(page.locator("h1")).to_contain_text("County")
        finally:
            browser.close()
    assert workbench.household_a not in log.read_text()
