"""The township visit-list workbook (XLSX), written as SpreadsheetML text directly.

The workbook has one fixed layout (:func:`serving.batch.visit_lists.write_township_xlsx`
fills it): sheet 走访名单 with a bold title, a note, a header row repeated on every
printed page and frozen above the body, A4 landscape fitted to the page width; and
sheet 汇总, two plain columns. Building it cell object by cell object with
openpyxl took 18 s of the 23 s write stage at 1,000,000 households (281
workbooks, 540,000 cells); XlsxWriter took 3.7 s, but writes its own styles
(colours, fonts, style names differ as openpyxl reads them back). Here each row is
one formatted string, and the 281 workbooks take about a second.

Every part is what openpyxl 3.1 wrote for this layout, byte for byte, except
``docProps/app.xml``, which names relapse-risk as the application: the stylesheet
and theme are openpyxl's (``templates/xlsx/``, MIT-licensed like openpyxl), so the
workbooks read back with the same values, types, styles and page setup as before.
Changing the layout means changing the XML here; tests/test_visit_lists.py reads a
workbook back with openpyxl and checks what a cadre sees.

The bytes depend on the data only: the zip entries and the document properties
carry :data:`WORKBOOK_TIME`, never the clock.
"""

from __future__ import annotations

import datetime as dt
import re
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from xml.sax.saxutils import escape

CellValue = int | str | None
"""What a cell holds: a whole number, text, or nothing (an empty cell that keeps its style)."""

WORKBOOK_TIME = dt.datetime(2000, 1, 1)
"""The created and modified time of every workbook, and the time of its zip entries."""
WORKBOOK_CREATOR = "relapse-risk"

LIST_SHEET = "走访名单"
SUMMARY_SHEET = "汇总"
LIST_HEADER_ROW = 3
"""The header row of the list sheet: printed atop every page, the body is frozen below it."""

# Cell styles: positions in the cellXfs of templates/xlsx/styles.xml.
STYLE_NONE = 0
STYLE_TITLE = 1
"""Bold, 14 point."""
STYLE_HEADER = 2
"""Named style visit_header: bold, blue-grey fill, centred, wrapped, thin grey borders."""
STYLE_BODY = 3
"""Named style visit_cell: top-aligned, wrapped, thin grey borders."""

_PARTS_DIR = Path(__file__).parent / "templates" / "xlsx"
_STYLES_XML = (_PARTS_DIR / "styles.xml").read_bytes()
_THEME_XML = (_PARTS_DIR / "theme1.xml").read_bytes()

_MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_RELATIONSHIPS_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
_DOCUMENT_RELATIONSHIP = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument"
_WORKSHEET_TYPE = f"{_CONTENT_TYPE}.spreadsheetml.worksheet+xml"

_MAX_TEXT = 32767
"""Excel's longest cell text; longer text is cut, as openpyxl cut it."""
_ILLEGAL_CHARACTERS = re.compile(r"[\000-\010]|[\013-\014]|[\016-\037]")
"""Control characters XML 1.0 cannot hold (openpyxl refused them too)."""


def write_visit_workbook(
    path: Path,
    *,
    title: str,
    note: str,
    headers: Sequence[str],
    widths: Sequence[float],
    body: Iterable[Sequence[CellValue]],
    summary: Sequence[Sequence[CellValue]],
    summary_widths: Sequence[float],
) -> None:
    """Write the workbook: the list sheet (``title``, ``note``, ``headers``, then ``body`` rows) and
    the summary sheet (``summary`` rows, an empty row left blank)."""
    parts = (
        ("docProps/app.xml", _APP_XML),
        ("docProps/core.xml", _CORE_XML),
        ("xl/theme/theme1.xml", _THEME_XML),
        ("xl/worksheets/sheet1.xml", _list_sheet(title, note, headers, widths, body)),
        ("xl/worksheets/sheet2.xml", _summary_sheet(summary, summary_widths)),
        ("xl/styles.xml", _STYLES_XML),
        ("_rels/.rels", _ROOT_RELS_XML),
        ("xl/workbook.xml", _WORKBOOK_XML),
        ("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS_XML),
        ("[Content_Types].xml", _CONTENT_TYPES_XML),
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        for name, data in parts:
            entry = zipfile.ZipInfo(name, date_time=WORKBOOK_TIME.timetuple()[:6])
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o600 << 16
            archive.writestr(entry, data)


# -- the two sheets -------------------------------------------------------------------------------


def _list_sheet(
    title: str,
    note: str,
    headers: Sequence[str],
    widths: Sequence[float],
    body: Iterable[Sequence[CellValue]],
) -> bytes:
    letters = [_column_letter(position) for position in range(1, len(headers) + 1)]
    rows = [
        _row(1, letters, [title], STYLE_TITLE),
        _row(2, letters, [note], STYLE_NONE),
        _row(LIST_HEADER_ROW, letters, headers, STYLE_HEADER),
    ]
    number = LIST_HEADER_ROW
    for number, values in enumerate(body, start=LIST_HEADER_ROW + 1):
        rows.append(_row(number, letters, values, STYLE_BODY))
    first_body = f"A{LIST_HEADER_ROW + 1}"
    return (
        f'<worksheet xmlns="{_MAIN_NS}"><sheetPr><outlinePr summaryBelow="1" summaryRight="1" />'
        '<pageSetUpPr fitToPage="1" /></sheetPr>'
        f'<dimension ref="A1:{letters[-1]}{number}" />'
        '<sheetViews><sheetView workbookViewId="0">'
        f'<pane ySplit="{LIST_HEADER_ROW}" topLeftCell="{first_body}"'
        ' activePane="bottomLeft" state="frozen" />'
        '<selection pane="bottomLeft" activeCell="A1" sqref="A1" /></sheetView></sheetViews>'
        f"{_SHEET_FORMAT}{_columns(widths)}<sheetData>{''.join(rows)}</sheetData>{_PAGE_MARGINS}"
        # A4 (paper size 9) landscape, as many pages down as the list needs, one page wide.
        '<pageSetup orientation="landscape" paperSize="9" fitToHeight="0" fitToWidth="1" /></worksheet>'
    ).encode()


def _summary_sheet(summary: Sequence[Sequence[CellValue]], widths: Sequence[float]) -> bytes:
    letters = [_column_letter(position) for position in range(1, max(map(len, summary), default=1) + 1)]
    filled = [(number, values) for number, values in enumerate(summary, start=1) if values]
    rows = [_row(number, letters, values, STYLE_NONE) for number, values in filled]
    last = filled[-1][0] if filled else 1
    return (
        f'<worksheet xmlns="{_MAIN_NS}"><sheetPr><outlinePr summaryBelow="1" summaryRight="1" />'
        "<pageSetUpPr /></sheetPr>"
        f'<dimension ref="A1:{letters[-1]}{last}" />'
        '<sheetViews><sheetView workbookViewId="0"><selection activeCell="A1" sqref="A1" /></sheetView>'
        f"</sheetViews>{_SHEET_FORMAT}{_columns(widths)}<sheetData>{''.join(rows)}</sheetData>"
        f"{_PAGE_MARGINS}</worksheet>"
    ).encode()


_SHEET_FORMAT = '<sheetFormatPr baseColWidth="8" defaultRowHeight="15" />'
_PAGE_MARGINS = '<pageMargins left="0.75" right="0.75" top="1" bottom="1" header="0.5" footer="0.5" />'


def _columns(widths: Sequence[float]) -> str:
    columns = "".join(
        f'<col width="{width:.16g}" customWidth="1" min="{position}" max="{position}" />'
        for position, width in enumerate(widths, start=1)
    )
    return f"<cols>{columns}</cols>"


def _row(number: int, letters: Sequence[str], values: Sequence[CellValue], style: int) -> str:
    """One ``<row>``: text inline (no shared-string table), numbers as numbers, None an empty cell.

    A styled cell keeps its style even when empty, so the body's borders run
    through blank columns; an unstyled empty cell is left out.
    """
    if len(values) > len(letters):
        raise ValueError(f"row {number} has {len(values)} cells, the sheet {len(letters)} columns")
    styled = f' s="{style}"' if style else ""
    cells = []
    for letter, value in zip(letters, values, strict=False):  # a row may end early
        reference = f"{letter}{number}"
        if value is None or value == "":
            if style:
                kind = "n" if value is None else "inlineStr"
                cells.append(f'<c r="{reference}"{styled} t="{kind}" />')
        elif isinstance(value, str):
            cells.append(f'<c r="{reference}"{styled} t="inlineStr"><is>{_text(value)}</is></c>')
        elif type(value) is int:  # not a bool, which a workbook types apart
            cells.append(f'<c r="{reference}"{styled} t="n"><v>{value:.16g}</v></c>')
        else:
            raise TypeError(f"cell {reference}: {value!r} is neither text nor a whole number")
    return f'<row r="{number}">{"".join(cells)}</row>'


def _text(value: str) -> str:
    """A ``<t>`` element of ``value``, escaped, marked to keep leading or trailing spaces."""
    value = value[:_MAX_TEXT]
    if _ILLEGAL_CHARACTERS.search(value):
        raise ValueError(f"{value!r} holds a control character that a workbook cannot hold")
    escaped = escape(value)
    stripped = value.strip()
    if stripped and stripped != value:
        return f'<t xml:space="preserve">{escaped}</t>'
    return f"<t>{escaped}</t>"


def _column_letter(position: int) -> str:
    """Excel's name of the 1-based column ``position``: A, ..., Z, AA, ..."""
    letters = ""
    while position:
        position, remainder = divmod(position - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters


# -- the parts every workbook shares -------------------------------------------------------------

_CREATED = WORKBOOK_TIME.strftime("%Y-%m-%dT%H:%M:%SZ")

_APP_XML = (
    '<Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/extended-properties">'
    f"<Application>{WORKBOOK_CREATOR}</Application></Properties>"
).encode()

_CORE_XML = (
    '<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties"'
    ' xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/"'
    ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
    f"<dc:creator>{WORKBOOK_CREATOR}</dc:creator>"
    f'<dcterms:created xsi:type="dcterms:W3CDTF">{_CREATED}</dcterms:created>'
    f'<dcterms:modified xsi:type="dcterms:W3CDTF">{_CREATED}</dcterms:modified></cp:coreProperties>'
).encode()

_WORKBOOK_XML = (
    f'<workbook xmlns:r="{_DOCUMENT_RELATIONSHIP}" xmlns="{_MAIN_NS}"><workbookPr /><workbookProtection />'
    '<bookViews><workbookView visibility="visible" minimized="0" showHorizontalScroll="1"'
    ' showVerticalScroll="1" showSheetTabs="1" tabRatio="600" firstSheet="0" activeTab="0"'
    ' autoFilterDateGrouping="1" /></bookViews>'
    f'<sheets><sheet name="{LIST_SHEET}" sheetId="1" state="visible" r:id="rId1" />'
    f'<sheet name="{SUMMARY_SHEET}" sheetId="2" state="visible" r:id="rId2" /></sheets>'
    # Print titles: the header row atop every printed page of the list.
    '<definedNames><definedName name="_xlnm.Print_Titles" localSheetId="0">'
    f"'{LIST_SHEET}'!${LIST_HEADER_ROW}:${LIST_HEADER_ROW}</definedName></definedNames>"
    '<calcPr calcId="124519" fullCalcOnLoad="1" /></workbook>'
).encode()

_ROOT_RELS_XML = (
    f'<Relationships xmlns="{_RELATIONSHIPS_NS}">'
    f'<Relationship Type="{_DOCUMENT_RELATIONSHIP}/officeDocument" Target="xl/workbook.xml" Id="rId1" />'
    '<Relationship Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/'
    'core-properties" Target="docProps/core.xml" Id="rId2" />'
    f'<Relationship Type="{_DOCUMENT_RELATIONSHIP}/extended-properties"'
    ' Target="docProps/app.xml" Id="rId3" />'
    "</Relationships>"
).encode()

_WORKBOOK_RELS_XML = (
    f'<Relationships xmlns="{_RELATIONSHIPS_NS}">'
    f'<Relationship Type="{_DOCUMENT_RELATIONSHIP}/worksheet" Target="/xl/worksheets/sheet1.xml" Id="rId1" />'
    f'<Relationship Type="{_DOCUMENT_RELATIONSHIP}/worksheet" Target="/xl/worksheets/sheet2.xml" Id="rId2" />'
    f'<Relationship Type="{_DOCUMENT_RELATIONSHIP}/styles" Target="styles.xml" Id="rId3" />'
    f'<Relationship Type="{_DOCUMENT_RELATIONSHIP}/theme" Target="theme/theme1.xml" Id="rId4" />'
    "</Relationships>"
).encode()

_CONTENT_TYPES_XML = (
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml" />'
    '<Default Extension="xml" ContentType="application/xml" />'
    f'<Override PartName="/xl/styles.xml" ContentType="{_CONTENT_TYPE}.spreadsheetml.styles+xml" />'
    f'<Override PartName="/xl/theme/theme1.xml" ContentType="{_CONTENT_TYPE}.theme+xml" />'
    '<Override PartName="/docProps/core.xml"'
    ' ContentType="application/vnd.openxmlformats-package.core-properties+xml" />'
    f'<Override PartName="/docProps/app.xml" ContentType="{_CONTENT_TYPE}.extended-properties+xml" />'
    f'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="{_WORKSHEET_TYPE}" />'
    f'<Override PartName="/xl/worksheets/sheet2.xml" ContentType="{_WORKSHEET_TYPE}" />'
    f'<Override PartName="/xl/workbook.xml" ContentType="{_CONTENT_TYPE}.spreadsheetml.sheet.main+xml" />'
    "</Types>"
).encode()
