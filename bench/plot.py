"""Draw bench/results.svg from the raw data blocks that bench/e2e.py writes into RESULTS.md.

    .venv/bin/python bench/plot.py [--results bench/RESULTS.md] [--out bench/results.svg]

Plain SVG written by hand: no plotting library. Three panels: saturated throughput (median
bar, min-max whisker over rounds), latency below saturation (paced p50 bar, p99 as a pale
extension, log scale) and peak RSS of the contender process. When RESULTS.md holds both
runs, the mosquitto-defaults run is drawn solid and the ``--broker-nodelay`` run hatched
next to it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "RESULTS.md"
SVG = BENCH / "results.svg"
DATA_BEGIN = "```json e2e-data"

COLOURS = {
    "c-relay": "#2b8a3e",
    "raw": "#8a8a8a",
    "raw-aiomqtt": "#444444",
    "naive": "#4c7bd9",
    "gateway-mqtt": "#d9482b",
    "gateway-file": "#e8a317",
    "nodered": "#8f2d56",
}
SHORT = {
    "c-relay": "C relay (limit)",
    "raw": "raw relay",
    "raw-aiomqtt": "raw relay (aiomqtt)",
    "naive": "naive relay",
    "gateway-mqtt": "gateway (MQTT sink)",
    "gateway-file": "gateway (file sink)",
    "nodered": "Node-RED",
}
SERIES = {"e2e": "mosquitto defaults (Nagle on)", "e2e-nodelay": "set_tcp_nodelay true"}
FONT = "font-family='DejaVu Sans, Arial, sans-serif'"


@dataclass(frozen=True)
class Bar:
    value: float
    low: float = math.nan
    high: float = math.nan
    upper: float = math.nan  # a pale extension above the bar (p99 over p50)


def load(path: Path) -> dict[str, dict[str, Any]]:
    """Every data block of the file, by section."""
    text = path.read_text()
    out: dict[str, dict[str, Any]] = {}
    start = text.find(DATA_BEGIN)
    while start >= 0:
        start += len(DATA_BEGIN)
        end = text.find("```", start)
        data: dict[str, Any] = json.loads(text[start:end])
        out[str(data.get("section", "e2e"))] = data
        start = text.find(DATA_BEGIN, end)
    if not out:
        raise SystemExit(f"{path}: no e2e data block; run bench/e2e.py first")
    return out


def _num(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _nice_max(v: float) -> float:
    if not v > 0 or math.isnan(v):
        return 1.0
    mag = 10.0 ** math.floor(math.log10(v))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if v <= step * mag:
            return step * mag
    return 10.0 * mag


def _fmt(v: float) -> str:
    if v >= 10_000:
        return f"{v / 1000:.1f}k"
    return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"


def panel(
    x0: float,
    y0: float,
    w: float,
    h: float,
    title: str,
    unit: str,
    slots: list[str],
    series: list[list[Bar | None]],
    log: bool = False,
) -> list[str]:
    """A bar chart: one slot per contender, one bar per series in each slot."""
    out = [
        f"<text x='{x0 + w / 2:.1f}' y='{y0 - 12:.1f}' text-anchor='middle' {FONT} "
        f"font-size='14' font-weight='bold'>{escape(title)}</text>"
    ]
    vals = [
        v
        for bars in series
        for b in bars
        if b is not None
        for v in (b.value, b.high, b.upper)
        if v > 0
    ]
    if log:
        lo_exp = math.floor(math.log10(min(vals, default=1.0)))
        hi_exp = max(math.ceil(math.log10(max(vals, default=10.0))), lo_exp + 1)

        def ypos(v: float) -> float:
            v = max(v, 10.0**lo_exp)
            return y0 + h - (math.log10(v) - lo_exp) / (hi_exp - lo_exp) * h

        ticks = [10.0**e for e in range(lo_exp, hi_exp + 1)]
    else:
        vmax = _nice_max(max(vals, default=1.0) * 1.1)

        def ypos(v: float) -> float:
            return y0 + h - max(v, 0.0) / vmax * h

        ticks = [vmax * i / 5 for i in range(6)]
    for t in ticks:
        y = ypos(t)
        out.append(
            f"<line x1='{x0:.1f}' y1='{y:.1f}' x2='{x0 + w:.1f}' y2='{y:.1f}' "
            "stroke='#e3e3e3' stroke-width='1'/>"
        )
        out.append(
            f"<text x='{x0 - 6:.1f}' y='{y + 4:.1f}' text-anchor='end' {FONT} "
            f"font-size='11' fill='#555'>{t:,.0f}</text>"
            if t >= 1
            else f"<text x='{x0 - 6:.1f}' y='{y + 4:.1f}' text-anchor='end' {FONT} "
            f"font-size='11' fill='#555'>{t:g}</text>"
        )
    ux, uy = x0 - 56, y0 + h / 2
    out.append(
        f"<text x='{ux:.1f}' y='{uy:.1f}' {FONT} font-size='11' fill='#555' "
        f"transform='rotate(-90 {ux:.1f} {uy:.1f})' text-anchor='middle'>{escape(unit)}</text>"
    )
    out.append(
        f"<line x1='{x0:.1f}' y1='{y0 + h:.1f}' x2='{x0 + w:.1f}' y2='{y0 + h:.1f}' "
        "stroke='#333' stroke-width='1'/>"
    )
    slot = w / max(len(slots), 1)
    bw = slot * 0.72 / max(len(series), 1)
    for i, name in enumerate(slots):
        colour = COLOURS.get(name, "#444444")
        for j, bars in enumerate(series):
            b = bars[i]
            cx = x0 + slot * i + slot * 0.14 + bw * (j + 0.5)
            fill = f"fill='{colour}'" if j == 0 else f"fill='url(#hatch-{name})'"
            if b is None or math.isnan(b.value):
                out.append(
                    f"<text x='{cx:.1f}' y='{y0 + h - 6:.1f}' text-anchor='middle' {FONT} "
                    "font-size='9' fill='#a00'>n/a</text>"
                )
                continue
            yv = ypos(b.value)
            if not math.isnan(b.upper) and b.upper > b.value:
                yu = ypos(b.upper)
                out.append(
                    f"<rect x='{cx - bw / 2:.1f}' y='{yu:.1f}' width='{bw:.1f}' "
                    f"height='{yv - yu:.1f}' fill='{colour}' fill-opacity='0.25'/>"
                )
                out.append(
                    f"<text x='{cx:.1f}' y='{min(yu - 3, yv - 14) - 9 * (j % 2):.1f}' "
                    "text-anchor='middle' "
                    f"{FONT} font-size='8' fill='#666'>{_fmt(b.upper)}</text>"
                )
            out.append(
                f"<rect x='{cx - bw / 2:.1f}' y='{yv:.1f}' width='{bw:.1f}' "
                f"height='{y0 + h - yv:.1f}' {fill} stroke='{colour}' stroke-width='1'/>"
            )
            if not (math.isnan(b.low) or math.isnan(b.high)):
                yl, yh = ypos(b.low), ypos(b.high)
                out.append(
                    f"<path d='M{cx:.1f} {yl:.1f}V{yh:.1f}M{cx - 4:.1f} {yl:.1f}H{cx + 4:.1f}"
                    f"M{cx - 4:.1f} {yh:.1f}H{cx + 4:.1f}' stroke='#111' stroke-width='1.1'/>"
                )
                label_y = min(yh, yv) - 4
            else:
                label_y = yv - 4
            # Dark text just above the bar (inside the pale p99 extension, if any).
            out.append(
                f"<text x='{cx:.1f}' y='{label_y - 9 * (j % 2):.1f}' text-anchor='middle' "
                f"{FONT} font-size='8' fill='#222'>{_fmt(b.value)}</text>"
            )
        for k, part in enumerate(_wrap(SHORT.get(name, name), 12)):
            out.append(
                f"<text x='{x0 + slot * (i + 0.5):.1f}' y='{y0 + h + 15 + 12 * k:.1f}' "
                f"text-anchor='middle' {FONT} font-size='10'>{escape(part)}</text>"
            )
    return out


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    cur = ""
    for word in text.split():
        if cur and len(cur) + 1 + len(word) > width:
            lines.append(cur)
            cur = word
        else:
            cur = f"{cur} {word}".strip()
    if cur:
        lines.append(cur)
    return lines[:3]


def render(runs: dict[str, dict[str, Any]]) -> str:
    order = [s for s in ("e2e", "e2e-nodelay") if s in runs] + [
        s for s in runs if s not in ("e2e", "e2e-nodelay")
    ]
    main = runs[order[0]]
    slots = [str(s["contender"]) for s in main["summaries"]]
    by = {sec: {str(s["contender"]): s for s in runs[sec]["summaries"]} for sec in order}

    def bars(sec: str, make: Any) -> list[Bar | None]:
        return [make(by[sec][n]) if n in by[sec] else None for n in slots]

    def thr(s: dict[str, Any]) -> Bar:
        return Bar(_num(s["msgs_per_s"]), _num(s["msgs_per_s_min"]), _num(s["msgs_per_s_max"]))

    def lat(s: dict[str, Any]) -> Bar:
        return Bar(_num(s["paced_p50_ms"]), upper=_num(s["paced_p99_ms"]))

    def rss(s: dict[str, Any]) -> Bar:
        return Bar(_num(s["rss_mib"]))

    info: dict[str, str] = main["info"]
    args: dict[str, Any] = main["args"]
    pw, ph, gap, left, top = 350.0, 270.0, 95.0, 85.0, 105.0
    width = left + 3 * pw + 2 * gap + 30
    height = top + ph + 45
    els = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width:.0f}' height='{height:.0f}' "
        f"viewBox='0 0 {width:.0f} {height:.0f}'>",
        "<defs>",
        *(
            f"<pattern id='hatch-{n}' width='5' height='5' patternUnits='userSpaceOnUse' "
            f"patternTransform='rotate(45)'><rect width='5' height='5' fill='#fff'/>"
            f"<rect width='2.5' height='5' fill='{c}'/></pattern>"
            for n, c in COLOURS.items()
        ),
        "</defs>",
        f"<rect width='{width:.0f}' height='{height:.0f}' fill='#fff'/>",
        f"<text x='20' y='28' {FONT} font-size='17' font-weight='bold'>"
        "End to end through mosquitto: privacy gateway vs relays vs Node-RED</text>",
        f"<text x='20' y='48' {FONT} font-size='11' fill='#555'>"
        f"{escape(info.get('date', ''))}; {escape(info.get('nproc', '?'))} CPUs (shared); "
        f"Python {escape(info.get('python', '?'))}; mosquitto "
        f"{escape(info.get('mosquitto', '?'))}; N={args.get('n')} per saturated phase; "
        f"{args.get('rounds')} interleaved rounds; medians, whiskers min-max over rounds</text>",
    ]
    lx = 20.0
    for j, sec in enumerate(order):
        swatch = "fill='#666'" if j == 0 else "fill='url(#hatch-raw)' stroke='#8a8a8a'"
        els.append(f"<rect x='{lx:.0f}' y='58' width='14' height='10' {swatch}/>")
        label = SERIES.get(sec, sec)
        els.append(
            f"<text x='{lx + 19:.0f}' y='67' {FONT} font-size='11'>broker: {escape(label)}</text>"
        )
        lx += 40 + 6.5 * len(label) + 50
    els += panel(
        left,
        top,
        pw,
        ph,
        "Saturated throughput",
        "input messages / s",
        slots,
        [bars(s, thr) for s in order],
    )
    els += panel(
        left + pw + gap,
        top,
        pw,
        ph,
        f"Latency at {_num(args.get('paced_rate')):g} msg/s",
        "ms (log): p50 bar, p99 pale",
        slots,
        [bars(s, lat) for s in order],
        log=True,
    )
    els += panel(
        left + 2 * (pw + gap),
        top,
        pw,
        ph,
        "Peak RSS of the contender",
        "MiB (VmHWM)",
        slots,
        [bars(s, rss) for s in order],
    )
    els.append("</svg>")
    return "\n".join(els) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="bench/RESULTS.md -> bench/results.svg")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--out", type=Path, default=SVG)
    args = p.parse_args(argv)
    args.out.write_text(render(load(args.results)))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
