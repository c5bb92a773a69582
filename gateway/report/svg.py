"""Inline SVG horizontal bar charts: no script, no external asset, every label escaped."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

# Okabe-Ito palette: distinguishable with the common colour-vision deficiencies.
PALETTE: dict[str, str] = {
    "keep": "#0072B2",
    "redact": "#E69F00",
    "pseudonymize": "#CC79A7",
    "coarsen": "#009E73",
    "drop": "#D55E00",
    "consent_drop": "#56B4E9",
    "forwarded": "#009E73",
    "withdrawn": "#F0E442",
    "no_consent": "#56B4E9",
    "nothing_declared": "#999999",
    "rejected": "#D55E00",
    "held": "#E69F00",
    "shadowed": "#999999",
}
DEFAULT_COLOUR = "#666666"

WIDTH = 760
ROW = 22
BAR = 14
TOP = 8
CHAR = 7.3  # advance of one 12 px monospace character (labels are monospace)
MAX_LABEL_CHARS = 38

Segment = tuple[str, float]  # (series, value)


def fmt(v: float) -> str:
    return f"{int(v):,}" if v == int(v) else f"{v:,.2f}"


def _clip(label: str) -> str:
    return label if len(label) <= MAX_LABEL_CHARS else label[: MAX_LABEL_CHARS - 1] + "…"


def bar_chart(
    title: str,
    rows: Sequence[tuple[str, Sequence[Segment]]],
    colours: Mapping[str, str] | None = None,
) -> str:
    """One `<svg>`: a horizontal bar per row, stacked by series, the total at its end.

    Each bar segment carries a `<title>` (row, series, count) for hover and screen readers.
    """
    colours = colours or PALETTE
    label_w = min(MAX_LABEL_CHARS, max((len(r[0]) for r in rows), default=4)) * CHAR + 12
    totals = [sum(v for _, v in segs) for _, segs in rows]
    biggest = max(totals, default=0.0) or 1.0
    value_w = len(fmt(biggest)) * CHAR + 10
    plot_w = WIDTH - label_w - value_w
    height = TOP * 2 + ROW * max(len(rows), 1)
    parts = [
        f'<svg width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for i, ((label, segs), total) in enumerate(zip(rows, totals, strict=True)):
        y = TOP + i * ROW
        parts.append(
            f'<text x="{label_w - 8:.1f}" y="{y + BAR - 2}" text-anchor="end" '
            f'class="lbl"><title>{escape(label)}</title>{escape(_clip(label))}</text>'
        )
        x = label_w
        for series, value in segs:
            if value <= 0:
                continue
            w = max(plot_w * value / biggest, 1.5)
            colour = colours.get(series, DEFAULT_COLOUR)
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{BAR}" fill="{colour}">'
                f"<title>{escape(label)}: {escape(series)} {fmt(value)}</title></rect>"
            )
            x += w
        parts.append(f'<text x="{x + 6:.1f}" y="{y + BAR - 2}" class="val">{fmt(total)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def legend(series: Sequence[str], colours: Mapping[str, str] | None = None) -> str:
    """An HTML legend (text, so it does not rely on colour alone)."""
    colours = colours or PALETTE
    items = "".join(
        f'<span class="key"><span class="swatch" style="background:'
        f'{colours.get(s, DEFAULT_COLOUR)}"></span>{escape(s)}</span>'
        for s in series
    )
    return f'<p class="legend">{items}</p>'
