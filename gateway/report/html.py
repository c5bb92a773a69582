"""HTML building blocks of the report: style, escaping, tables, tags. No script, no asset."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from html import escape

CSS = """
:root{--fg:#1d2330;--mut:#5b6475;--line:#d9dde5;--bg:#f6f7f9;--warn:#8a4b00;--warnbg:#fff4e0;
--ok:#0b6b3a;--okbg:#e6f5ec;--bad:#a12a00;--badbg:#fde9e1}
*{box-sizing:border-box}
body{font:13px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
color:var(--fg);margin:0;background:#fff}
main{max-width:1180px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:22px;margin:0 0 6px}
h2{font-size:18px;margin:36px 0 4px;padding-top:14px;border-top:3px solid var(--fg)}
h3{font-size:14px;margin:22px 0 6px}
p{margin:6px 0}
.meta{background:var(--bg);border:1px solid var(--line);border-radius:6px;padding:10px 14px;
margin:12px 0}
.meta dt{float:left;clear:left;width:150px;color:var(--mut)}
.meta dd{margin:0 0 2px 150px}
.note{color:var(--mut)}
table{border-collapse:collapse;width:100%;margin:6px 0 10px}
th,td{border-bottom:1px solid var(--line);padding:4px 6px;text-align:left;vertical-align:top}
th{background:var(--bg);font-weight:600;white-space:nowrap}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.total td{font-weight:600;border-top:2px solid var(--line)}
tr.unseen td{color:var(--mut)}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.tag{display:inline-block;padding:0 6px;border-radius:9px;font-size:11px;white-space:nowrap}
.ok{background:var(--okbg);color:var(--ok)}
.warn{background:var(--warnbg);color:var(--warn)}
.bad{background:var(--badbg);color:var(--bad)}
.mut{background:var(--bg);color:var(--mut)}
.ovr{color:var(--bad);font-weight:600}
.verdict{border:1px solid var(--line);border-left:6px solid var(--mut);border-radius:6px;
padding:6px 14px;margin:10px 0}
.verdict.ok{border-left-color:var(--ok);background:#fff;color:var(--fg)}
.verdict.warn{border-left-color:var(--warn);background:#fff;color:var(--fg)}
.verdict.bad{border-left-color:var(--bad);background:#fff;color:var(--fg)}
.verdict ul{margin:4px 0;padding-left:0;list-style:none}
.verdict li{margin:2px 0}
figure.chart{margin:8px 0 14px}
figure.chart figcaption{font-weight:600;margin-bottom:2px}
svg .lbl{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;fill:#1d2330}
svg .val{font:11px system-ui,sans-serif;fill:#5b6475}
.legend{margin:2px 0 6px}
.key{margin-right:14px;white-space:nowrap}
.swatch{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px;
vertical-align:-1px}
ul.compact{margin:4px 0;padding-left:20px;columns:2}
nav ul{margin:4px 0;padding-left:20px}
@media print{h2{break-before:page}main{max-width:none;padding:0}}
"""


def e(s: object) -> str:
    return escape(str(s), quote=True)


def table(
    head: Sequence[str],
    rows: Iterable[Sequence[str]],
    numeric: Iterable[int] = (),
    *,
    total: Sequence[str] | None = None,
    row_class: Sequence[str] | None = None,
) -> str:
    """Cells are already-escaped HTML; columns in `numeric` align right; `total` is a last,
    emphasised row; `row_class` gives each body row a class ("" for none)."""
    nums = set(numeric)

    def tr(cells: Sequence[str], tag: str = "td", cls: str = "") -> str:
        attr = f' class="{cls}"' if cls else ""
        tds = "".join(
            f'<{tag} class="n">{c}</{tag}>' if i in nums else f"<{tag}>{c}</{tag}>"
            for i, c in enumerate(cells)
        )
        return f"<tr{attr}>{tds}</tr>"

    out = ["<table><thead>", tr(head, "th"), "</thead><tbody>"]
    for i, row in enumerate(rows):
        out.append(tr(row, cls=row_class[i] if row_class else ""))
    if total is not None:
        out.append(tr(total, cls="total"))
    out.append("</tbody></table>")
    return "".join(out)


def figure(caption: str, svg: str, extra: str = "") -> str:
    return f'<figure class="chart"><figcaption>{e(caption)}</figcaption>{extra}{svg}</figure>'


def tag(text: str, kind: str) -> str:
    return f'<span class="tag {kind}">{e(text)}</span>'


def anchor(pid: str) -> str:
    return "p-" + re.sub(r"[^A-Za-z0-9_-]", "_", pid)
