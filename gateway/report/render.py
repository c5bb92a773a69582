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
from gateway.report.html import figure as _figure
from gateway.report.html import table as _table
from gateway.report.html import tag as _tag
from gateway.report.numbers import ACTIONS, OTHER, OUTCOMES, UNKNOWN, Verdict, hash_state, verdict
from gateway.report.numbers import Product as _Product
from gateway.report.numbers import applied as _applied
from gateway.report.numbers import seen as _seen
from gateway.report.numbers import segments as _segments
from gateway.report.scrape import ReportError, Scrape, display_source, parse, read_source
from gateway.report.svg import bar_chart, fmt, legend

REASONS: dict[str, str] = {
    "bad_topic": "topic does not match the topic layout, or the device id is empty or too long",
    "unknown_product": "no policy is loaded for the product in the topic",
    "undeclared_kind": "the policy declares no such message kind",
    "consent_withdrawn": "the device's user withdrew consent: nothing is forwarded",
    "too_large": "payload over the size limit",
    "too_deep": "payload nested deeper than the limit",
    "invalid_utf8": "payload is not UTF-8",
    "invalid_json": "payload is not JSON",
    "not_object": "payload is not a JSON object",
    "duplicate_key": "payload repeats a key (ambiguous: refused)",
    "type_error": "a declared field has a value of the wrong type",
    "method_not_allowed": "a command method the policy does not list",
}
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


def _hash_status(lp: LoadedPolicy, hashes: set[str]) -> tuple[str, str]:
    """(tag html, sentence html) comparing the file with what the gateway reports loaded."""
    listed = ", ".join(f"<code>{_e(h)}</code>" for h in sorted(hashes))
    state = hash_state(lp, hashes)
    if state == "not loaded":
        return _tag("not loaded", "bad"), (
            "The gateway reports no policy loaded for this product: it rejects the product's "
            "messages as <code>unknown_product</code>."
        )
    if state == "matches":
        return _tag("matches file", "ok"), (
            f"The gateway reports policy {listed} loaded: the same file as below."
        )
    if state == "several":
        return _tag("several loaded", "warn"), (
            f"The gateway reports several policy versions loaded ({listed}), one of them this "
            "file: a reload was in progress, or workers disagree."
        )
    return _tag("differs", "bad"), (
        f"The gateway reports policy {listed} loaded, but the file read for this report hashes "
        f"to <code>{_e(lp.hash[:12])}</code>: the declarations below may not be the ones enforced."
    )


VERDICT_TAGS = {"ok": "matches", "warn": "review", "bad": "does not match", "none": "no traffic"}
_CLASS = {"ok": "ok", "warn": "warn", "bad": "bad", "none": "mut"}


def _verdict_tag(v: Verdict) -> str:
    return _tag(VERDICT_TAGS[v.level], _CLASS[v.level])


_POINT = {"ok": "safe", "warn": "review", "bad": "wrong", "none": "—"}


def _verdict_box(v: Verdict) -> str:
    items = "".join(
        f"<li>{_tag(_POINT[lvl], _CLASS[lvl])} {_e(text)}</li>" for lvl, text in v.reasons
    )
    return (
        f"<div class='verdict {_CLASS[v.level]}'><p><b>{_e(v.headline)}</b></p>"
        f"<ul>{items}</ul></div>"
    )


def _regions_table(lp: LoadedPolicy, regions: dict[str, float]) -> str:
    named = {r.id: r for r in lp.policy.regions}
    rows = [
        (f"<code>{_e(r.id)}</code>", _e(r.datacentre), _e(r.cite), fmt(regions.get(r.id, 0.0)))
        for r in lp.policy.regions
    ]
    rows += [
        (f"<code>{_e(r)}</code> {_tag('named by no policy clause', 'bad')}", "—", "—", fmt(v))
        for r, v in sorted(regions.items())
        if r not in named
    ]
    return _table(("Region", "Data centre", "Citation", "Records forwarded"), rows, numeric=(3,))


def _product_section(lp: LoadedPolicy, s: Scrape) -> str:
    pol = lp.policy
    pid = pol.id
    pr = _Product(pid, s)
    rows = list(policy_rows(lp))
    out: list[str] = [f'<section id="{_anchor(pid)}">']
    out.append(
        f"<h2>{_e(pid)} <span class='note'>— {_e(pol.name)} ({_e(pol.publisher)})</span></h2>"
    )
    out.append(_verdict_box(verdict(lp, pr)))

    # Policy loaded
    tag, sentence = _hash_status(lp, pr.hashes)
    out.append("<h3>Policy</h3>")
    out.append(
        f"<p>File <code>{_e(lp.path.name)}</code>, sha256 <code>{_e(lp.hash)}</code>. "
        f"{tag} {sentence}</p>"
    )
    if pol.seed:
        out.append(f"<p class='note'>Published text: {_e(pol.seed)}.</p>")

    # Data residency
    out.append("<h3>Data residency</h3>")
    if pol.regions:
        out.append(
            "<p>Records of this product are written only to sinks of the regions the policy "
            "names:</p>"
        )
        out.append(_regions_table(lp, pr.regions))
    else:
        out.append(
            f"<p>{_tag('no region', 'ok')} The policy names no data centre: nothing of this "
            "product is forwarded.</p>"
        )
        if pr.regions:
            out.append(_regions_table(lp, pr.regions))
    held = pr.outcome("held")
    if held and pol.regions:
        out.append(
            f"<p>{_tag('held', 'warn')} {fmt(held)} record(s) were held at the gateway because "
            "the device's region is not one the policy names.</p>"
        )
    elif held:
        out.append(
            f"<p>{_tag('held by design', 'ok')} {fmt(held)} record(s) were held at the gateway: "
            "the policy names no region they could go to.</p>"
        )

    # Consent
    out.append("<h3>Consent</h3>")
    withdrawn = pr.outcome("withdrawn")
    if pr.withdrawals or withdrawn:
        out.append(
            f"<p>{_tag('honoured', 'ok')} {fmt(pr.withdrawals)} consent withdrawal(s): the "
            f"gateway stopped forwarding for those devices ({fmt(withdrawn)} message(s) not "
            "forwarded) and requested erasure of their records from every region's sink "
            "(see Where records went).</p>"
        )
    else:
        out.append("<p class='note'>No consent withdrawal.</p>")

    # Messages
    out.append("<h3>Messages</h3>")
    kinds = sorted(set(pol.kinds) | pr.kinds())
    if not any(pr.received.values()) and not any(pr.outcomes.values()):
        out.append("<p class='note'>No message of this product since the gateway started.</p>")
    else:
        body = []
        for k in kinds:
            cells = [_e(k), fmt(pr.received.get(k, 0.0))]
            cells += [fmt(pr.outcomes.get((k, o), 0.0)) for o in OUTCOMES]
            body.append(cells)
        totals = ["total", fmt(sum(pr.received.values()))]
        totals += [fmt(pr.outcome(o)) for o in OUTCOMES]
        out.append(
            _table(
                ("Kind", "Received", *(o.capitalize() for o in OUTCOMES)),
                body,
                numeric=range(1, 2 + len(OUTCOMES)),
                total=totals,
            )
        )
        chart_rows = [
            (k, [(o, pr.outcomes.get((k, o), 0.0)) for o in OUTCOMES])
            for k in kinds
            if any(pr.outcomes.get((k, o), 0.0) for o in OUTCOMES)
        ]
        if chart_rows:
            out.append(
                _figure(
                    "Message outcomes by kind",
                    bar_chart(f"{pid}: message outcomes by kind", chart_rows),
                    legend(OUTCOMES),
                )
            )

    # Rejections
    out.append("<h3>Rejections</h3>")
    if pr.rejected:
        by_reason: defaultdict[str, float] = defaultdict(float)
        for (_, reason), v in pr.rejected.items():
            by_reason[reason] += v
        ordered = sorted(pr.rejected.items(), key=lambda kv: (-kv[1], kv[0]))
        out.append(
            _table(
                ("Reason", "Kind", "Messages", "Meaning"),
                (
                    (f"<code>{_e(rs)}</code>", _e(k), fmt(v), _e(REASONS.get(rs, "")))
                    for (k, rs), v in ordered
                ),
                numeric=(2,),
            )
        )
        out.append(
            _figure(
                "Rejections by reason",
                bar_chart(
                    f"{pid}: rejections by reason",
                    [
                        (rs, [("rejected", v)])
                        for rs, v in sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))
                    ],
                ),
            )
        )
    else:
        out.append("<p class='note'>No message of this product rejected since start.</p>")

    # Declared fields
    out.append("<h3>Declared fields</h3>")
    out.append(
        "<p class='note'>Every field the policy declares, what the file says to do with it, what "
        "the gateway actually does (it overrides the file where the file is unsafe: "
        "<span class='ovr'>marked</span>), and how often each action was applied.</p>"
    )
    field_rows: list[tuple[str, ...]] = []
    classes: list[str] = []
    for r in rows:
        counts = pr.fields.get((r["kind"], r["field"]), {})
        seen = _seen(counts)
        eff = _e(r["action"])
        if r["action"] != r["declared"]:
            eff = f"<span class='ovr' title='overridden by the gateway'>{eff} ‡</span>"
        if r["consent"]:
            eff += f"<br><span class='note'>opt-in: <code>{_e(r['consent'])}</code></span>"
        field_rows.append(
            (
                _e(r["kind"]),
                f"<code>{_e(r['field'])}</code>",
                f"<code>{_e(r['category'])}</code>",
                _e(r["declared"]),
                eff,
                _e(r["purpose"]) or "<span class='note'>—</span>",
                _e(r["cite"]),
                fmt(seen) if seen else _tag("never seen", "warn"),
                _applied(counts),
            )
        )
        classes.append("" if seen else "unseen")
    out.append(
        _table(
            (
                "Kind",
                "Field",
                "Category",
                "Declared",
                "Effective",
                "Purpose",
                "Citation",
                "Seen",
                "Applied",
            ),
            field_rows,
            numeric=(7,),
            row_class=classes,
        )
    )
    chart_rows = [
        (f"{r['kind']} {r['field']}", _segments(pr.fields[(r["kind"], r["field"])]))
        for r in rows
        if _seen(pr.fields.get((r["kind"], r["field"]), {}))
    ]
    if chart_rows:
        used = sorted(
            {a for _, segs in chart_rows for a, v in segs if v > 0},
            key=lambda a: ACTIONS.index(a) if a in ACTIONS else 99,
        )
        out.append(
            _figure(
                "Actions applied per declared field",
                bar_chart(f"{pid}: actions applied per declared field", chart_rows),
                legend(used),
            )
        )
    declared = {(r["kind"], r["field"]) for r in rows}
    stale = sorted(k for k in pr.fields if k not in declared and _seen(pr.fields[k]))
    if stale:
        out.append(
            f"<p>{_tag('not in file', 'bad')} The gateway counted fields this policy file does "
            "not declare (it enforces another version of the policy): "
            + ", ".join(f"<code>{_e(k)} {_e(f)}</code>" for k, f in stale)
            + ".</p>"
        )

    # Never seen
    out.append("<h3>Declared but never seen</h3>")
    unseen = [r for r in rows if not _seen(pr.fields.get((r["kind"], r["field"]), {}))]
    if unseen:
        out.append(
            "<p class='note'>The policy declares these fields, but no accepted message carried "
            "them since start: a declaration that may be broader than what devices send.</p>"
        )
        out.append(
            "<ul class='compact'>"
            + "".join(
                f"<li>{_e(r['kind'])} <code>{_e(r['field'])}</code> "
                f"<span class='note'>({_e(r['category'])})</span></li>"
                for r in unseen
            )
            + "</ul>"
        )
    else:
        out.append("<p class='note'>Every declared field was seen at least once.</p>")

    # Drift
    out.append("<h3>Policy drift: undeclared fields seen and dropped</h3>")
    if pr.undeclared:
        out.append(
            "<p>Devices sent these fields, which the policy does not declare; the gateway "
            "dropped every one. A field here means the product sends more than its policy "
            f"describes. <code>{OTHER}</code> counts names past the per-kind bound or not "
            "shaped like an identifier.</p>"
        )
        ordered_u = sorted(pr.undeclared.items(), key=lambda kv: (-kv[1], kv[0]))
        out.append(
            _table(
                ("Kind", "Undeclared field", "Times dropped"),
                ((_e(k), f"<code>{_e(f)}</code>", fmt(v)) for (k, f), v in ordered_u),
                numeric=(2,),
            )
        )
        out.append(
            _figure(
                "Undeclared fields dropped",
                bar_chart(
                    f"{pid}: undeclared fields dropped",
                    [(f"{k} {f}", [("drop", v)]) for (k, f), v in ordered_u],
                ),
            )
        )
    else:
        out.append("<p class='note'>No undeclared field seen since start.</p>")
    out.append("</section>")
    return "\n".join(out)


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
                _verdict_tag(verdict(lp, pr)),
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
        *(_product_section(policies[p], s) for p in sorted(policies)),
        _others(policies, s),
        _sinks(policies, s),
        _glossary(),
        "</main></body></html>\n",
    ]
    return "\n".join(p for p in parts if p)
