"""Render the compliance report: one self-contained HTML page (inline CSS and SVG, no script).

What the report shows comes from two places only: the policy files (declarations) and the
gateway's bounded metric labels (counts). No message value ever reaches the gateway's metrics,
so none can reach the report; every string is HTML-escaped all the same.
"""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from gateway.explain import policy_rows
from gateway.policy.loader import LoadedPolicy
from gateway.report.html import CSS as _CSS
from gateway.report.html import anchor as _anchor
from gateway.report.html import e as _e
from gateway.report.html import table as _table
from gateway.report.html import tag as _tag
from gateway.report.numbers import UNKNOWN, verdict
from gateway.report.numbers import Product as _Product
from gateway.report.numbers import seen as _seen
from gateway.report.product import product_section, verdict_tag
from gateway.report.scrape import ReportError, Scrape, display_source, parse, read_source
from gateway.report.svg import fmt

ACTION_NOTES: dict[str, str] = {
    "keep": "forwarded as received (free text is scanned and identifiers in it redacted)",
    "redact": "kept, after identifiers were found in its free text and redacted",
    "pseudonymize": "replaced by a keyed pseudonym (HMAC-SHA256, per-product key)",
    "coarsen": "IP address to country + continent; position rounded",
    "drop": "never forwarded",
    "consent_drop": "dropped because the device has not opted in to the field's consent toggle",
}


def write_report(
    metrics: str,
    out: Path,
    policies: dict[str, LoadedPolicy],
    *,
    now: datetime | None = None,
    window: str | None = None,
) -> None:
    """Fetch or read `metrics`, render the report for `policies`, write it to `out`. With a
    `window`, `metrics` is a Prometheus server's URL and the counts are increases over it.

    Raises ReportError (naming the source, never a credential in it) when the metrics cannot
    be read or are not a gateway's.
    """
    if window is not None:
        from gateway.report.prometheus import read_prometheus

        scrape, shown = read_prometheus(metrics, window)
    else:
        shown = display_source(metrics)
        scrape = parse(read_source(metrics), shown)
    page = render(scrape, policies, shown, now or datetime.now(UTC))
    out = Path(out)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".html", dir=out.parent or ".")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(page)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except OSError as exc:
        raise ReportError(f"{out}: cannot write the report: {exc.strerror}") from None


# -- helpers ---------------------------------------------------------------------------------


# -- sections --------------------------------------------------------------------------------


def _summary(policies: dict[str, LoadedPolicy], s: Scrape) -> str:
    body = []
    for pid in sorted(policies):
        lp = policies[pid]
        pr = _Product(pid, s)
        rows = list(policy_rows(lp))
        unseen = sum(1 for r in rows if not _seen(pr.fields.get((r["kind"], r["field"]), {})))
        drift = sum(pr.undeclared.values())
        held = pr.outcome("held")
        held_cell = fmt(held)
        if held and not lp.policy.regions:
            held_cell += " " + _tag("by design", "ok")
        regions = ", ".join(f"{_e(r)} {fmt(v)}" for r, v in sorted(pr.regions.items()))
        if not lp.policy.regions:
            regions = regions or _tag("names none", "mut")
        body.append(
            (
                f"<a href='#{_anchor(pid)}'>{_e(pid)}</a>",
                verdict_tag(verdict(lp, pr)),
                fmt(sum(pr.received.values())),
                fmt(pr.outcome("forwarded")),
                regions or "—",
                fmt(pr.outcome("withdrawn")),
                fmt(pr.outcome("rejected")),
                held_cell,
                f"{fmt(unseen)} / {len(rows)}",
                _tag(f"{len(pr.undeclared)} names, {fmt(drift)} times", "ok") if drift else fmt(0),
            )
        )
    return _table(
        (
            "Product",
            "Verdict",
            "Received",
            "Forwarded",
            "Records per region",
            "Withdrawn",
            "Rejected",
            "Held",
            "Fields never seen",
            "Undeclared, dropped",
        ),
        body,
        numeric=(2, 3, 5, 6, 7, 8),
    )


def _others(policies: dict[str, LoadedPolicy], s: Scrape) -> str:
    others = sorted(s.products() - set(policies))
    if not others:
        return ""
    out = ['<section id="others"><h2>Products without a policy in this report</h2>']
    out.append(
        "<p class='note'>Counted by the gateway but not among the policies read for this "
        f"report. <code>{UNKNOWN}</code> collects messages whose topic or product matched no "
        "loaded policy.</p>"
    )
    body = []
    for pid in others:
        pr = _Product(pid, s)
        reasons: defaultdict[str, float] = defaultdict(float)
        for (_, r), v in pr.rejected.items():
            reasons[r] += v
        body.append(
            (
                f"<code>{_e(pid)}</code>",
                fmt(sum(pr.received.values())),
                fmt(pr.outcome("forwarded")),
                fmt(pr.outcome("rejected")),
                ", ".join(f"<code>{_e(r)}</code> {fmt(v)}" for r, v in sorted(reasons.items()))
                or "—",
            )
        )
    out.append(
        _table(
            ("Product", "Received", "Forwarded", "Rejected", "Rejection reasons"),
            body,
            numeric=(1, 2, 3),
        )
    )
    out.append("</section>")
    return "\n".join(out)


def _sinks(policies: dict[str, LoadedPolicy], s: Scrape) -> str:
    if not s.sink_records and not s.erasures:
        return ""
    named = {r.id for lp in policies.values() for r in lp.policy.regions}
    pairs = sorted({(sink, region) for sink, region, _ in s.sink_records} | set(s.erasures))
    body = []
    for sink, region in pairs:
        region_cell = f"<code>{_e(region)}</code>"
        if region not in named:
            region_cell += " " + _tag("named by no policy", "bad")
        body.append(
            (
                _e(sink),
                region_cell,
                *(
                    fmt(s.sink_records.get((sink, region, o), 0.0))
                    for o in ("committed", "spooled", "failed")
                ),
                fmt(s.erasures.get((sink, region), 0.0)),
            )
        )
    return (
        '<section id="sinks"><h2>Where records went: sinks by region</h2>'
        "<p class='note'>All products together (sink metrics carry no product label).</p>"
        + _table(
            ("Sink", "Region", "Committed", "Spooled", "Failed", "Erasure requests"),
            body,
            numeric=(2, 3, 4, 5),
        )
        + "</section>"
    )


def _glossary() -> str:
    return (
        '<section id="glossary"><h2>Actions</h2>'
        + _table(
            ("Action", "Meaning"),
            ((f"<code>{_e(a)}</code>", _e(n)) for a, n in ACTION_NOTES.items()),
        )
        + "<p class='note'>‡ The gateway overrides the file where the declared action is unsafe: "
        "secrets are always dropped, identifiers leave only pseudonymized, IP addresses and "
        "positions only coarsened, anything else that does not fit is dropped.</p></section>"
    )


def render(s: Scrape, policies: dict[str, LoadedPolicy], source: str, now: datetime) -> str:
    generated = now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    since = "the gateway process started (counters restart from zero when it restarts)"
    counts = f"cumulative since {since}"
    if s.process_start:
        started = datetime.fromtimestamp(s.process_start, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        since = f"the gateway process started at {started} (counters restart with it)"
        counts = f"cumulative since {since}"
    if s.window:
        counts = f"increase over the last {s.window}, summed over {s.instances or 0} instance(s)"
    dirs = sorted({str(lp.path.parent) for lp in policies.values()})
    head = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>Privacy gateway compliance report — {_e(generated)}</title>"
        f"<style>{_CSS}</style></head><body><main>"
    )
    header = (
        "<header><h1>Privacy gateway compliance report</h1>"
        "<p>Per product: what the policy declares, what the gateway did with each field, what "
        "devices sent that the policy does not declare, and where records may go. Counts only; "
        "the report holds no message content.</p>"
        "<dl class='meta'>"
        f"<dt>Generated</dt><dd>{_e(generated)}</dd>"
        f"<dt>Metrics source</dt><dd><code>{_e(source)}</code></dd>"
        f"<dt>Counts</dt><dd>{_e(counts)}</dd>"
        f"<dt>Policy files</dt><dd>{', '.join(f'<code>{_e(d)}</code>' for d in dirs)}</dd>"
        "</dl></header>"
    )
    parts = [
        head,
        header,
        "<section id='summary'><h2>Summary</h2>",
        _summary(policies, s),
        "</section>",
        *(product_section(policies[p], s) for p in sorted(policies)),
        _others(policies, s),
        _sinks(policies, s),
        _glossary(),
        "</main></body></html>\n",
    ]
    return "\n".join(p for p in parts if p)
