"""The household page's two charts as inline SVG, drawn on the server: no script, no external file.

Both scale to the width of the screen (``viewBox`` with ``width: 100%``), so a
phone shows the same chart smaller rather than a sideways scroll.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

SOURCE_COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 640, 240, 56, 28, 10


def _svg_open(title: str) -> str:
    return f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">'


def _axis(top: float, label_months: Sequence[str], step: float) -> list[str]:
    parts = []
    for fraction in (0.0, 0.5, 1.0):
        y = TOP + (HEIGHT - TOP - BOTTOM) * (1 - fraction)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(
            f'<text x="{LEFT - 4}" y="{y + 4:.1f}" font-size="11" text-anchor="end">'
            f"{top * fraction:,.0f}</text>"
        )
    for i, month in enumerate(label_months):
        if i % 6 == 0 or i == len(label_months) - 1:
            x = LEFT + step * (i + 0.5)
            parts.append(
                f'<text x="{x:.1f}" y="{HEIGHT - 8}" font-size="11" text-anchor="middle">'
                f"{escape(month)}</text>"
            )
    return parts


def income_chart(months: Sequence[str], income: dict[str, list[float | None]], labels: dict[str, str]) -> str:
    """Stacked monthly bars, one colour per income source; negative net income (farm, business) below 0 is
    drawn as 0 and the legend says the month's total."""
    step = (WIDTH - LEFT) / max(len(months), 1)
    totals = [sum(max(v[i] or 0.0, 0.0) for v in income.values()) for i in range(len(months))]
    top = max([*totals, 1.0])
    plot = HEIGHT - TOP - BOTTOM
    parts = [
        _svg_open(labels["title"]),
        *_axis(top, months, step),
    ]
    for i in range(len(months)):
        base = 0.0
        for k, (source, values) in enumerate(income.items()):
            value = max(values[i] or 0.0, 0.0)
            if value <= 0:
                continue
            h = plot * value / top
            y = TOP + plot * (1 - (base + value) / top)
            colour = SOURCE_COLOURS[k % len(SOURCE_COLOURS)]
            parts.append(
                f'<rect x="{LEFT + step * i + 1:.1f}" y="{y:.1f}" width="{max(step - 2, 1):.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{escape(months[i])} {escape(source)}: '
                f"{value:,.0f}</title></rect>"
            )
            base += value
    parts.append("</svg>")
    legend = "".join(
        f'<span class="key"><i style="background:{SOURCE_COLOURS[k % len(SOURCE_COLOURS)]}"></i>'
        f"{escape(labels.get(source, source))}</span>"
        for k, source in enumerate(income)
    )
    return "".join(parts) + f'<div class="legend">{legend}</div>'


def margin_chart(
    months: Sequence[str],
    series: dict[str, list[float | None]],
    labels: dict[str, str],
) -> str:
    """Lines of per-capita yearly income (and after rigid spending) against the monitoring line."""
    step = (WIDTH - LEFT) / max(len(months), 1)
    values = [v for s in series.values() for v in s if v is not None]
    top = max([*values, 1.0]) * 1.1
    bottom = min([*values, 0.0])
    span = top - bottom
    plot = HEIGHT - TOP - BOTTOM
    parts = [
        _svg_open(labels["title"]),
        *_axis(top, months, step),
    ]
    styles = {
        "per_capita": ("#1f77b4", ""),
        "per_capita_after_rigid": ("#ff7f0e", ""),
        "line": ("#c0392b", "6 4"),
    }
    for name, points in series.items():
        colour, dash = styles.get(name, ("#333", ""))
        segments: list[list[str]] = [[]]
        for i, value in enumerate(points):
            if value is None:
                segments.append([])
                continue
            x = LEFT + step * (i + 0.5)
            y = TOP + plot * (1 - (value - bottom) / span)
            segments[-1].append(f"{x:.1f},{y:.1f}")
        for segment in segments:
            if segment:
                dashes = f' stroke-dasharray="{dash}"' if dash else ""
                parts.append(
                    f'<polyline points="{" ".join(segment)}" fill="none" stroke="{colour}" '
                    f'stroke-width="2"{dashes}/>'
                )
    parts.append("</svg>")
    legend = "".join(
        f'<span class="key"><i style="background:{styles.get(n, ("#333", ""))[0]}"></i>'
        f"{escape(labels.get(n, n))}</span>"
        for n in series
    )
    return "".join(parts) + f'<div class="legend">{legend}</div>'
