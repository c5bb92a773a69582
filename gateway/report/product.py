"""One product's section of the report: its verdict, data residency, consent, messages,
rejections, declared fields, and the undeclared fields it sent (dropped)."""

from __future__ import annotations

from collections import defaultdict

from gateway.explain import policy_rows
from gateway.policy.loader import LoadedPolicy
from gateway.report.html import anchor as _anchor
from gateway.report.html import e as _e
from gateway.report.html import figure as _figure
from gateway.report.html import table as _table
from gateway.report.html import tag as _tag
from gateway.report.numbers import ACTIONS, OTHER, OUTCOMES, Verdict, hash_state, verdict
from gateway.report.numbers import Product as _Product
from gateway.report.numbers import applied as _applied
from gateway.report.numbers import seen as _seen
from gateway.report.numbers import segments as _segments
from gateway.report.scrape import Scrape
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


def hash_status(lp: LoadedPolicy, hashes: set[str]) -> tuple[str, str]:
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


def verdict_tag(v: Verdict) -> str:
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


def product_section(lp: LoadedPolicy, s: Scrape) -> str:
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
    tag, sentence = hash_status(lp, pr.hashes)
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
