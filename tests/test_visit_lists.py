"""Visit lists per township: what a village cadre prints and takes on home visits.

Built from a hand-made scores table (docs/outputs.md shape), so every expectation is
checked against known households. The last tests open the page in a real
headless browser (Debian's chromium), print it to PDF and read the rendered DOM.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from openpyxl import load_workbook
from relapse_risk.models.reasons import MEASURES
from relapse_risk.serving.batch.visit_lists import (
    OUTCOME_COLUMN_ZH,
    XLSX_HEADERS,
    XLSX_WIDTHS,
    render_township_html,
    township_pages,
    write_township_xlsx,
    write_visit_lists,
)
from relapse_risk.serving.scoring import REASON_COLUMNS, SCORE_COLUMNS

CHROMIUM = Path("/usr/bin/chromium")

ILLNESS, WORK = "serious_illness_recent", "employment_months_down"
ILLNESS_ZH = "家中有人近6个月确诊大病，医疗自付2.4万元，报销后仍占年收入的60%"
WORK_ZH = "近12个月务工月数由10个月降到3个月"


def _scores() -> pd.DataFrame:
    """Two townships of one county; township 001 has three listed households, 002 one, 003 none."""
    rows = [
        # id, township, village, status, score, band, rank_c, rank_t, rank_v, listed, reasons
        ("h01", "001", "001", "scored", 0.62, "high", 1, 1, 1, True, (ILLNESS, WORK)),
        ("h02", "002", "003", "scored", 0.41, "high", 2, 1, 1, True, (WORK,)),
        ("h03", "001", "002", "scored", 0.18, "medium", 3, 2, 1, True, ("medical_oop_high",)),
        ("h04", "001", "001", "scored", 0.12, "medium", 4, 3, 2, True, ()),
        ("h05", "001", "001", "scored", 0.03, "low", 5, 4, 3, False, ()),
        ("h06", "002", "003", "under_monitoring", None, None, None, None, None, False, ()),
        ("h07", "001", "002", "rejected", None, None, None, None, None, False, ()),
        ("h08", "003", "004", "scored", 0.02, "low", 6, 1, 1, False, ()),
    ]
    records = []
    for hid, town, village, status, score, band, rc, rt, rv, listed, codes in rows:
        record = {
            "household_id": hid,
            "county_code": "530101",
            "township_code": f"530101{town}",
            "village_code": f"530101{town}{village}",
            "as_of": "2024-06",
            "horizon_months": 6,
            "status": status,
            "risk_score": score,
            "risk_band": band,
            "rank_county": rc,
            "rank_township": rt,
            "rank_village": rv,
            "in_visit_list": listed,
            "rule_margin": 1.1,
            "triggered_rule": None,
            "reject_reason": "income row 4, amount: not a number (type)" if status == "rejected" else None,
            "model_name": "relapse-risk",
            "model_version": "7",
        }
        for column in REASON_COLUMNS:
            record[column] = None
        sentences = {
            "serious_illness_recent": (ILLNESS_ZH, "medical_assistance"),
            "employment_months_down": (WORK_ZH, "employment_support"),
            "medical_oop_high": ("近12个月医疗自付1.8万元", "medical_assistance"),
        }
        for slot, code in enumerate(codes, start=1):
            record[f"reason_{slot}_code"] = code
            record[f"reason_{slot}_zh"], record[f"reason_{slot}_measure"] = sentences[code]
        records.append(record)
    frame = pd.DataFrame.from_records(records)
    for column in ("rank_county", "rank_township", "rank_village"):
        frame[column] = pd.array(frame[column], dtype="Int64")
    return frame.loc[:, list(SCORE_COLUMNS)]


def test_one_page_per_township_with_listed_households_ranked_within_the_township():
    pages = township_pages(_scores())

    assert [p.township_code for p in pages] == ["530101001", "530101002"]
    first = pages[0]
    assert [r.household_id for r in first.rows] == ["h01", "h03", "h04"]
    assert [r.rank_township for r in first.rows] == [1, 2, 3]
    assert [r.band_zh for r in first.rows] == ["高", "中", "中"]
    assert first.rows[0].reasons_zh == (ILLNESS_ZH, WORK_ZH)
    assert first.rows[0].measures == (MEASURES["medical_assistance"].zh, MEASURES["employment_support"].zh)
    assert (first.households, first.scored, first.rejected) == (5, 4, 1)


def test_the_chart_counts_bands_of_scored_households_and_reason_families_of_listed_ones():
    first = township_pages(_scores())[0]

    assert [(b.label, b.count) for b in first.band_bars] == [("高", 1), ("中", 2), ("低", 1)]
    # h01 cites health and employment, h03 health: health 2, employment 1.
    assert [(b.label, b.count) for b in first.reason_bars] == [("疾病和医疗负担", 2), ("务工就业减少", 1)]
    assert first.reason_bars[0].width == 1.0


def test_the_page_is_chinese_a4_self_contained_with_a_blank_outcome_column():
    page = township_pages(_scores())[0]
    html = render_township_html(page)

    assert '<html lang="zh-CN">' in html and '<meta charset="utf-8">' in html
    assert re.search(r"@page\s*{\s*size:\s*A4", html)
    assert "<svg" in html and "<script" not in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "no external assets"
    assert f'<th class="outcome">{OUTCOME_COLUMN_ZH}</th>' in html
    assert html.count('<td class="outcome"></td>') == 3
    assert "530101001" in html and "2024-06" in html
    assert ILLNESS_ZH in html and MEASURES["medical_assistance"].zh in html


def test_the_page_shows_household_ids_and_villages_and_nothing_else_personal():
    html = render_township_html(township_pages(_scores())[0])
    body_cells = re.findall(r'<td class="id">([^<]*)</td>', html)

    assert body_cells == ["h01", "530101001001", "h03", "530101001002", "h04", "530101001001"]
    assert "risk_score" not in html and "0.62" not in html


def test_text_from_the_data_is_escaped():
    scores = _scores()
    scores.loc[0, "reason_1_zh"] = "<b>收入</b> & 支出"
    html = render_township_html(township_pages(scores)[0])

    assert "&lt;b&gt;收入&lt;/b&gt; &amp; 支出" in html


def test_files_per_township_and_an_index(tmp_path):
    pages = write_visit_lists(_scores(), tmp_path)

    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "530101001.html",
        "530101001.xlsx",
        "530101002.html",
        "530101002.xlsx",
        "index.html",
    ]
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert 'href="530101001.html"' in index and "530101003" in index
    assert len(pages) == 2


def test_the_workbook_lists_the_same_households_ready_to_print_on_a4(tmp_path):
    write_visit_lists(_scores(), tmp_path)
    workbook = load_workbook(tmp_path / "530101001.xlsx")

    assert workbook.sheetnames == ["走访名单", "汇总"]
    sheet = workbook["走访名单"]
    header = [c.value for c in sheet[3]]
    assert header[:5] == ["乡镇排名", "全县排名", "户编号", "村代码", "风险等级"]
    assert header[-1] == OUTCOME_COLUMN_ZH
    body = [[c.value for c in row] for row in sheet.iter_rows(min_row=4)]
    assert [row[2] for row in body] == ["h01", "h03", "h04"]
    assert body[0][5] == ILLNESS_ZH and body[0][6] == MEASURES["medical_assistance"].zh
    assert all(row[-1] is None for row in body)
    assert int(sheet.page_setup.paperSize) == int(sheet.PAPERSIZE_A4)
    assert sheet.page_setup.orientation == "landscape"


def test_the_workbook_reads_back_cell_by_cell_with_its_styles_layout_and_properties(tmp_path):
    """What a spreadsheet program sees of the workbook written as XML text (visit_workbook.py):
    the values and types, styles, widths, panes, print setup and properties the openpyxl-built
    workbook had."""
    write_visit_lists(_scores(), tmp_path)
    workbook = load_workbook(tmp_path / "530101001.xlsx")
    sheet, summary = workbook["走访名单"], workbook["汇总"]
    illness, work = MEASURES["medical_assistance"].zh, MEASURES["employment_support"].zh

    rows = [[(c.value, c.data_type) for c in row] for row in sheet.iter_rows()]
    assert sheet.dimensions == "A1:L6"
    assert rows[0][0] == ("530101001 乡镇返贫风险走访名单（数据截至 2024-06）", "s")
    assert rows[1][0] == (
        "纳入走访名单 3 户；参与评分 4 户；已是监测对象 0 户；当前已触发监测标准 0 户；"
        "数据有误待核实 1 户。模型 relapse-risk v7，预测期 6 个月。",
        "s",
    )
    assert all(value is None for value, _ in rows[0][1:] + rows[1][1:])
    assert [value for value, _ in rows[2]] == list(XLSX_HEADERS)
    assert [[value for value, _ in row] for row in rows[3:]] == [
        [1, 1, "h01", "530101001001", "高", ILLNESS_ZH, illness, WORK_ZH, work, None, None, None],
        [2, 3, "h03", "530101001002", "中", "近12个月医疗自付1.8万元", illness, None, None, None, None, None],
        [3, 4, "h04", "530101001001", "中", None, None, None, None, None, None, None],
    ]
    assert [kind for _, kind in rows[3][:3]] == ["n", "n", "s"]
    assert isinstance(rows[3][0][0], int) and isinstance(rows[3][1][0], int)

    title, header, body = sheet["A1"], sheet["B3"], sheet["L5"]  # L5: an empty body cell keeps its style
    assert (title.font.b, title.font.sz) == (True, 14)
    assert sheet["A2"].style_id == 0 and not sheet["A2"].font.b
    assert header.style == "visit_header" and header.font.b
    assert (header.fill.fill_type, header.fill.fgColor.rgb) == ("solid", "00DDE7EE")
    assert (header.alignment.horizontal, header.alignment.vertical) == ("center", "center")
    assert body.style == "visit_cell" and not body.font.b and body.fill.fill_type is None
    assert (body.alignment.vertical, body.alignment.horizontal) == ("top", None)
    for cell in (header, body, sheet["A4"], sheet["F6"]):
        assert cell.alignment.wrap_text and cell.number_format == "General"
        for side in (cell.border.left, cell.border.right, cell.border.top, cell.border.bottom):
            assert (side.style, side.color.rgb) == ("thin", "00999999")
    assert all(c.style == "visit_cell" for row in sheet.iter_rows(min_row=4) for c in row)

    assert {key: d.width for key, d in sheet.column_dimensions.items()} == dict(
        zip("ABCDEFGHIJKL", XLSX_WIDTHS, strict=True)
    )
    assert sheet.freeze_panes == "A4"
    assert sheet.print_title_rows == "$3:$3"
    setup = sheet.page_setup
    assert (setup.paperSize, setup.orientation, setup.fitToWidth, setup.fitToHeight) == (9, "landscape", 1, 0)
    assert sheet.sheet_properties.pageSetUpPr.fitToPage

    assert [[c.value for c in row] for row in summary.iter_rows()] == [
        ["风险等级", "户数（参与评分）"],
        ["高", 1],
        ["中", 2],
        ["低", 1],
        [None, None],
        ["主要风险原因（走访名单内）", "户数"],
        ["疾病和医疗负担", 2],
        ["务工就业减少", 1],
    ]
    assert {key: d.width for key, d in summary.column_dimensions.items()} == {"A": 36, "B": 18}
    assert summary.freeze_panes is None and summary.print_title_rows is None

    properties = workbook.properties
    assert properties.creator == "relapse-risk"
    assert properties.created == properties.modified == dt.datetime(2000, 1, 1)


def test_the_workbook_is_the_same_bytes_for_the_same_page_with_no_clock_in_it(tmp_path):
    page = township_pages(_scores())[0]
    write_township_xlsx(page, tmp_path / "first.xlsx")
    write_township_xlsx(page, tmp_path / "second.xlsx")

    assert (tmp_path / "first.xlsx").read_bytes() == (tmp_path / "second.xlsx").read_bytes()
    with zipfile.ZipFile(tmp_path / "first.xlsx") as archive:
        assert {entry.date_time for entry in archive.infolist()} == {(2000, 1, 1, 0, 0, 0)}
        assert archive.testzip() is None


def test_text_in_the_workbook_is_escaped_and_kept_as_it_is(tmp_path):
    scores = _scores()
    scores.loc[0, "reason_1_zh"] = "<b>收入</b> & 支出 "  # markup, an ampersand, a trailing space
    scores.loc[0, "household_id"] = "=1+1"  # text, never a formula
    write_visit_lists(scores, tmp_path)
    sheet = load_workbook(tmp_path / "530101001.xlsx")["走访名单"]

    assert sheet["F4"].value == "<b>收入</b> & 支出 "
    assert (sheet["C4"].value, sheet["C4"].data_type) == ("=1+1", "s")


def test_a_control_character_in_the_workbook_text_is_refused(tmp_path):
    scores = _scores()
    scores.loc[0, "reason_1_zh"] = "收入\x07"
    with pytest.raises(ValueError, match="control character"):
        write_visit_lists(scores, tmp_path)


# -- in a real browser ---------------------------------------------------------------------------

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.is_file(),
    reason="Debian's chromium is not installed (apt-get install -y chromium fonts-noto-cjk)",
)


def _chromium(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "chromium-profile"
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        *arguments,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)


@pytest.fixture(scope="module")
def printed_page(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    if not CHROMIUM.is_file():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium fonts-noto-cjk)")
    folder = tmp_path_factory.mktemp("visit_lists")
    write_visit_lists(_scores(), folder)
    page = folder / "530101001.html"
    pdf = folder / "page.pdf"
    printed = _chromium(folder, "--no-pdf-header-footer", f"--print-to-pdf={pdf}", page.as_uri())
    dom = _chromium(folder, "--dump-dom", page.as_uri())
    return {"folder": folder, "pdf": pdf, "printed": printed, "dom": dom}


@pytest.mark.slow
@needs_chromium
def test_the_browser_prints_the_page_to_a_pdf(printed_page):
    pdf: Path = printed_page["pdf"]  # type: ignore[assignment]
    assert pdf.is_file(), printed_page["printed"].stderr  # type: ignore[union-attr]
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 10_000
    # A4 landscape is 842 x 595 points.
    boxes = re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", data)
    assert boxes, "the PDF declares no page size"
    assert all(abs(float(w) - 842) < 1.5 and abs(float(h) - 595) < 1.5 for w, h in boxes)


@pytest.mark.slow
@needs_chromium
def test_the_rendered_page_shows_the_reasons_and_measures(printed_page):
    dom = printed_page["dom"].stdout  # type: ignore[union-attr]
    assert ILLNESS_ZH in dom and WORK_ZH in dom
    assert MEASURES["employment_support"].zh in dom
    assert "<svg" in dom and OUTCOME_COLUMN_ZH in dom


@pytest.mark.slow
@needs_chromium
def test_chinese_glyphs_render_with_a_cjk_font():
    fonts = shutil.which("fc-list")
    if fonts is None:
        pytest.skip("fontconfig is not installed")
    listing = subprocess.run([fonts, ":lang=zh-cn", "family"], capture_output=True, text=True, check=False)
    assert listing.stdout.strip(), "no font covers Chinese: apt-get install -y fonts-noto-cjk"


def test_bars_never_exceed_the_chart():
    pages = township_pages(_scores())
    widths = np.array([b.width for p in pages for b in (*p.band_bars, *p.reason_bars)])
    assert np.all((widths >= 0) & (widths <= 1))
