"""Printable visit lists per township: HTML (A4, Chinese) and XLSX.

For each township with households in the county's visit list, one page in
``visit_lists/<township_code>.html`` and one workbook
``visit_lists/<township_code>.xlsx`` (sheet 走访名单: the ranked households;
sheet 汇总: risk bands and top reasons), plus ``visit_lists/index.html``
listing every township. The pages are self-contained: no scripts, fonts or
images from elsewhere; the summary chart is inline SVG.

Only household identifiers and village codes are shown: no names, no other
personal data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from relapse_risk.models.reasons import MEASURES, TEMPLATES_BY_CODE

from ..cells import ScoresRow, is_missing, to_int
from ..config import RISK_BAND_ZH, RISK_BANDS
from .visit_workbook import write_visit_workbook

TEMPLATES_DIR = Path(__file__).parent / "templates"
TEMPLATE_NAME = "visit_list.html.j2"
TOP_REASONS_SHOWN = 5
OUTCOME_COLUMN_ZH = "走访情况"

BAND_COLOURS = {"high": "#c0392b", "medium": "#e67e22", "low": "#7f8c8d"}

DRIVER_FAMILY_ZH: dict[str, str] = {
    "income": "收入偏低或下降",
    "employment": "务工就业减少",
    "agriculture": "种养殖减收",
    "business": "经营亏损",
    "health": "疾病和医疗负担",
    "disability": "残疾",
    "education": "教育支出",
    "loans": "贷款还款压力",
    "shocks": "灾害事故等突发事件",
    "household": "家庭人口负担",
    "assistance": "帮扶措施变化",
    "reporting": "收入信息缺报",
    "location": "所在村风险较高",
    "other": "其他",
}
"""Short Chinese names of the driver families reasons belong to, for the township chart."""


@dataclass(frozen=True)
class VisitRow:
    rank_township: int
    rank_county: int
    household_id: str
    village_code: str
    band: str
    band_zh: str
    reasons_zh: tuple[str, ...]
    measures: tuple[str, ...]
    """The measure each reason points to, aligned with ``reasons_zh``."""

    @property
    def distinct_measures(self) -> tuple[str, ...]:
        """Each suggested measure once, in the order of the reasons (two reasons may share one)."""
        return tuple(dict.fromkeys(m for m in self.measures if m))


@dataclass(frozen=True)
class Bar:
    label: str
    count: int
    width: float
    colour: str


@dataclass(frozen=True)
class TownshipPage:
    county_code: str
    township_code: str
    as_of: str
    horizon_months: int
    model: str
    households: int
    scored: int
    under_monitoring: int
    triggered_now: int
    rejected: int
    rows: tuple[VisitRow, ...]
    band_bars: tuple[Bar, ...]
    reason_bars: tuple[Bar, ...]

    @property
    def file_stem(self) -> str:
        return self.township_code


def township_pages(scores: pd.DataFrame) -> list[TownshipPage]:
    """One page per township that has households in the visit list, by township code.

    ``scores`` is a scores table (docs/outputs.md). The chart counts the visit-list
    households citing each driver family (a reason code's family, e.g.
    ``medical_oop_high`` -> health) in any of their three reasons.
    """
    pages: list[TownshipPage] = []
    has_township = scores["township_code"].notna().to_numpy()
    # Counts come from groupings over every household, of just the three columns they
    # need: filtering the whole table (30 columns of text) cost a second at 1,000,000
    # households. Only the (few) listed households are walked township by township.
    counted = scores.loc[has_township, ["township_code", "status", "risk_band"]]
    households = counted.groupby("township_code", sort=True).size()
    statuses = counted.groupby(["township_code", "status"], sort=True).size()
    scored = counted[counted["status"] == "scored"]
    bands = scored.groupby(["township_code", "risk_band"], sort=True).size()
    listed_mask = np.zeros(len(scores), dtype=bool)
    listed_mask[has_township] = scores.loc[has_township, "in_visit_list"].astype(bool).to_numpy()
    listed_all = scores[listed_mask].sort_values(
        ["township_code", "rank_township", "household_id"], kind="stable"
    )
    # The listed rows are read out of pandas once, column by column, and grouped in
    # Python: converting each township's rows to records on its own cost a second at
    # 1,000,000 households (281 townships, 44,293 rows).
    columns = list(dict.fromkeys((*_VISIT_ROW_COLUMNS, *_PAGE_COLUMNS, *_REASON_CODE_COLUMNS)))
    values = [listed_all[column].tolist() for column in columns]
    by_township: dict[str, list[ScoresRow]] = {}
    for row in zip(*values, strict=True):
        record: ScoresRow = dict(zip(columns, row, strict=True))
        # listed_all is sorted by township code, so the groups come in township order.
        by_township.setdefault(str(record["township_code"]), []).append(record)
    for township_code, listed in by_township.items():
        rows = tuple(_visit_row(record) for record in listed)
        band_counts = [
            (RISK_BAND_ZH[band], int(bands.get((township_code, band), 0)), band) for band in RISK_BANDS
        ]
        family_counts = _family_counts(listed).most_common(TOP_REASONS_SHOWN)
        first = listed[0]
        pages.append(
            TownshipPage(
                county_code=str(first["county_code"]),
                township_code=township_code,
                as_of=str(first["as_of"]),
                horizon_months=to_int(first["horizon_months"]),
                model=f"{first['model_name']} v{first['model_version']}",
                households=int(households[township_code]),
                scored=int(statuses.get((township_code, "scored"), 0)),
                under_monitoring=int(statuses.get((township_code, "under_monitoring"), 0)),
                triggered_now=int(statuses.get((township_code, "triggered_now"), 0)),
                rejected=int(statuses.get((township_code, "rejected"), 0)),
                rows=rows,
                band_bars=_bars([(label, count, BAND_COLOURS[band]) for label, count, band in band_counts]),
                reason_bars=_bars(
                    [
                        (DRIVER_FAMILY_ZH.get(family, family), count, "#2c6e91")
                        for family, count in family_counts
                    ]
                ),
            )
        )
    return pages


def township_summaries(scores: pd.DataFrame) -> pd.DataFrame:
    """Households, scored households and visit-list size per township, for the index and the console."""
    has_township = scores["township_code"].notna().to_numpy()
    # Only the columns counted, with the tests done once over the column rather than
    # group by group: the whole-table filter and the per-group lambdas cost most of a
    # second at 1,000,000 households.
    known = pd.DataFrame(
        {
            "township_code": scores["township_code"][has_township],
            "county_code": scores["county_code"][has_township],
            "scored": (scores["status"][has_township] == "scored").astype(np.int64),
            "visit_list": scores["in_visit_list"][has_township].astype(bool).astype(np.int64),
        }
    )
    summary = known.groupby("township_code", sort=True).agg(
        county_code=("county_code", "first"),
        households=("township_code", "size"),
        scored=("scored", "sum"),
        visit_list=("visit_list", "sum"),
    )
    return summary.reset_index()


def render_township_html(page: TownshipPage, environment: Environment | None = None) -> str:
    environment = environment or template_environment()
    return environment.get_template(TEMPLATE_NAME).render(page=page, index=None, outcome_zh=OUTCOME_COLUMN_ZH)


def render_index_html(
    summaries: pd.DataFrame, pages: Sequence[TownshipPage], as_of: str, environment: Environment | None = None
) -> str:
    environment = environment or template_environment()
    with_page = {p.township_code for p in pages}
    townships = [
        {**record, "has_page": record["township_code"] in with_page}
        for record in summaries.to_dict("records")
    ]
    return environment.get_template(TEMPLATE_NAME).render(
        page=None, index={"as_of": as_of, "townships": townships}, outcome_zh=OUTCOME_COLUMN_ZH
    )


def template_environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def write_visit_lists(scores: pd.DataFrame, folder: Path) -> list[TownshipPage]:
    """Write the HTML pages, the XLSX workbooks and the index into ``folder``; return the pages."""
    folder.mkdir(parents=True, exist_ok=True)
    pages = township_pages(scores)
    environment = template_environment()
    for page in pages:
        (folder / f"{page.file_stem}.html").write_text(
            render_township_html(page, environment), encoding="utf-8"
        )
        write_township_xlsx(page, folder / f"{page.file_stem}.xlsx")
    as_of = str(scores["as_of"].iloc[0]) if len(scores) else ""
    (folder / "index.html").write_text(
        render_index_html(township_summaries(scores), pages, as_of, environment), encoding="utf-8"
    )
    return pages


XLSX_HEADERS = (
    "乡镇排名",
    "全县排名",
    "户编号",
    "村代码",
    "风险等级",
    "风险原因一",
    "建议措施一",
    "风险原因二",
    "建议措施二",
    "风险原因三",
    "建议措施三",
    OUTCOME_COLUMN_ZH,
)
XLSX_WIDTHS = (8, 8, 16, 15, 8, 40, 22, 40, 22, 40, 22, 30)


def write_township_xlsx(page: TownshipPage, path: Path) -> None:
    """One workbook: 走访名单 (ranked households, print-ready on A4 landscape) and 汇总."""
    body = (
        [
            row.rank_township,
            row.rank_county,
            row.household_id,
            row.village_code,
            row.band_zh,
            *(
                text
                for slot in range(3)
                for text in (
                    row.reasons_zh[slot] if slot < len(row.reasons_zh) else "",
                    row.measures[slot] if slot < len(row.measures) else "",
                )
            ),
            None,  # 走访情况: filled in by hand on the visit
        ]
        for row in page.rows
    )
    summary: list[list[int | str | None]] = [["风险等级", "户数（参与评分）"]]
    summary += [[bar.label, bar.count] for bar in page.band_bars]
    summary += [[], ["主要风险原因（走访名单内）", "户数"]]
    summary += [[bar.label, bar.count] for bar in page.reason_bars]
    write_visit_workbook(
        path,
        title=f"{page.township_code} 乡镇返贫风险走访名单（数据截至 {page.as_of}）",
        note=(
            f"纳入走访名单 {len(page.rows)} 户；参与评分 {page.scored} 户；"
            f"已是监测对象 {page.under_monitoring} 户；当前已触发监测标准 {page.triggered_now} 户；"
            f"数据有误待核实 {page.rejected} 户。模型 {page.model}，预测期 {page.horizon_months} 个月。"
        ),
        headers=XLSX_HEADERS,
        widths=XLSX_WIDTHS,
        body=body,
        summary=summary,
        summary_widths=(36, 18),
    )


_VISIT_ROW_COLUMNS = (
    "rank_township",
    "rank_county",
    "household_id",
    "village_code",
    "risk_band",
    *(f"reason_{slot}_{field}" for slot in (1, 2, 3) for field in ("zh", "measure")),
)
"""The columns :func:`_visit_row` reads (converting only these to records is much cheaper)."""
_PAGE_COLUMNS = ("township_code", "county_code", "as_of", "horizon_months", "model_name", "model_version")
"""The columns a page's heading reads of its first listed row."""
_REASON_CODE_COLUMNS = tuple(f"reason_{slot}_code" for slot in (1, 2, 3))
"""The columns :func:`_family_counts` reads."""


def _visit_row(record: ScoresRow) -> VisitRow:
    reasons: list[str] = []
    measures: list[str] = []
    for slot in (1, 2, 3):
        reason = record.get(f"reason_{slot}_zh")
        if not is_missing(reason):
            reasons.append(str(reason))
            measure = record.get(f"reason_{slot}_measure")
            measures.append(measure_zh(str(measure)) if not is_missing(measure) else "")
    band = str(record["risk_band"]) if not is_missing(record.get("risk_band")) else ""
    return VisitRow(
        rank_township=to_int(record["rank_township"]),
        rank_county=to_int(record["rank_county"]),
        household_id=str(record["household_id"]),
        village_code=str(record["village_code"]),
        band=band,
        band_zh=RISK_BAND_ZH.get(band, ""),
        reasons_zh=tuple(reasons),
        measures=tuple(measures),
    )


def measure_zh(code: str) -> str:
    """The Chinese text of a support measure code; an unknown code is shown as it is."""
    measure = MEASURES.get(code)
    return measure.zh if measure is not None else code


def reason_family(code: str) -> str:
    template = TEMPLATES_BY_CODE.get(code)
    return template.family if template is not None else "other"


def _family_counts(listed: Sequence[ScoresRow]) -> Counter[str]:
    """Households citing each driver family in any of their three reasons."""
    counts: Counter[str] = Counter()
    for record in listed:
        codes = (record[column] for column in _REASON_CODE_COLUMNS)
        counts.update({reason_family(str(code)) for code in codes if not is_missing(code)})
    # Ties in count are ordered by name so the chart is the same on every run.
    return Counter(dict(sorted(counts.items(), key=lambda item: (-item[1], item[0]))))


def _bars(items: Sequence[tuple[str, int, str]]) -> tuple[Bar, ...]:
    largest = max((count for _, count, _ in items), default=0)
    return tuple(
        Bar(label=label, count=count, width=(count / largest if largest else 0.0), colour=colour)
        for label, count, colour in items
    )
