"""The scrape's numbers for one product, and the verdict they support."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Literal

from gateway.explain import policy_rows
from gateway.policy.loader import LoadedPolicy
from gateway.report.html import e as _e
from gateway.report.scrape import Scrape
from gateway.report.svg import fmt

OUTCOMES = (
    "forwarded",
    "withdrawn",
    "no_consent",
    "nothing_declared",
    "rejected",
    "held",
    "shadowed",
)
WITHDRAWN_REASON = "consent_withdrawn"  # how gateways before the `withdrawn` outcome count it
REJECTION_REVIEW = 0.05  # the GatewayHighRejectionRatio threshold
# Chart order of the applied actions; `redact` is counted on top of `keep` (a kept free-text
# field in which an identifier was found and redacted), so it is charted as a part of keep.
ACTIONS = ("keep", "redact", "pseudonymize", "coarsen", "drop", "consent_drop")
UNKNOWN = "_unknown"
OTHER = "_other"
# Undeclared names are shown only when identifier-shaped (the gateway bounds them the same
# way); anything else is folded into `_other`.
_SEG = r"[A-Za-z_][A-Za-z0-9_]{0,39}(\[\])?"
_SAFE_NAME = re.compile(rf"^{_SEG}(\.{_SEG})*$")


def shown_field(name: str) -> str:
    return name if name == OTHER or _SAFE_NAME.match(name) else OTHER


class Product:
    """The scrape's numbers for one product."""

    def __init__(self, pid: str, s: Scrape) -> None:
        self.received: defaultdict[str, float] = defaultdict(float)
        self.outcomes: defaultdict[tuple[str, str], float] = defaultdict(float)
        self.rejected: defaultdict[tuple[str, str], float] = defaultdict(float)
        self.fields: defaultdict[tuple[str, str], dict[str, float]] = defaultdict(dict)
        self.undeclared: defaultdict[tuple[str, str], float] = defaultdict(float)
        for (p, k), v in s.received.items():
            if p == pid:
                self.received[k] += v
        for (p, k, o), v in s.outcomes.items():
            if p == pid:
                self.outcomes[k, o] += v
        for (p, k, r), v in s.rejected.items():
            if p == pid:
                self.rejected[k, r] += v
        for (p, k, f, a), v in s.fields.items():
            if p == pid:
                d = self.fields[k, f]
                d[a] = d.get(a, 0.0) + v
        for (p, k, f), v in s.undeclared.items():
            if p == pid:
                self.undeclared[k, shown_field(f)] += v
        self.hashes = s.policy_hashes.get(pid, set())
        # A withdrawal honoured is not a rejection, whichever way the gateway counted it.
        for (k, r), v in list(self.rejected.items()):
            if r == WITHDRAWN_REASON:
                del self.rejected[k, r]
                self.outcomes[k, "rejected"] -= v
                self.outcomes[k, "withdrawn"] += v
        self.regions: dict[str, float] = {
            r: v for (p, r), v in s.region_records.items() if p == pid and v > 0
        }
        self.withdrawals = s.withdrawals.get((pid,), 0.0)

    def outcome(self, name: str) -> float:
        return sum(v for (_, o), v in self.outcomes.items() if o == name)

    def kinds(self) -> set[str]:
        ks = set(self.received) | {k for k, _ in self.outcomes} | {k for k, _ in self.rejected}
        return ks | {k for k, _ in self.fields} | {k for k, _ in self.undeclared}


def seen(counts: dict[str, float]) -> float:
    return sum(v for a, v in counts.items() if a != "redact")


def applied(counts: dict[str, float]) -> str:
    parts = []
    for a in sorted(counts, key=lambda a: (ACTIONS.index(a) if a in ACTIONS else 99, a)):
        if a == "redact" or counts[a] <= 0:
            continue
        text = f"{_e(a)} {fmt(counts[a])}"
        if a == "keep" and counts.get("redact", 0) > 0:
            text += f" ({fmt(counts['redact'])} redacted)"
        parts.append(text)
    return " · ".join(parts) or "—"


def segments(counts: dict[str, float]) -> list[tuple[str, float]]:
    segs = []
    for a in ACTIONS:
        v = counts.get(a, 0.0)
        if a == "keep":
            v -= counts.get("redact", 0.0)
        segs.append((a, v))
    segs += [(a, v) for a, v in sorted(counts.items()) if a not in ACTIONS]
    return segs


Level = Literal["ok", "warn", "bad", "none"]
HEADLINES: dict[Level, str] = {
    "ok": "Collection matches the published policy",
    "warn": "Collection matches the policy; points to review",
    "bad": "Collection does not match the policy read for this report",
    "none": "No traffic of this product: nothing to judge",
}


@dataclass(slots=True)
class Verdict:
    level: Level
    # (level of the point, plain-text sentence): escaped when rendered.
    reasons: list[tuple[Level, str]] = field(default_factory=list)

    @property
    def headline(self) -> str:
        return HEADLINES[self.level]


def hash_state(lp: LoadedPolicy, hashes: set[str]) -> str:
    """`not loaded`, `matches`, `several` or `differs`: the file against what is enforced."""
    if not hashes:
        return "not loaded"
    match = any(len(h) >= 8 and lp.hash.startswith(h) for h in hashes)
    if match:
        return "matches" if len(hashes) == 1 else "several"
    return "differs"


def verdict(lp: LoadedPolicy, pr: Product) -> Verdict:
    """Does what the gateway forwarded for this product match the published policy?"""
    pol = lp.policy
    named = {r.id for r in pol.regions}
    rows = list(policy_rows(lp))
    points: list[tuple[Level, str]] = []
    received = sum(pr.received.values())
    state = hash_state(lp, pr.hashes)
    if state == "not loaded":
        points.append(("bad", "the gateway reports no policy loaded for this product"))
    elif state == "differs":
        points.append(("bad", "the gateway enforces another version of this policy file"))
    elif state == "several":
        points.append(("warn", "replicas report several versions of this policy loaded"))
    elsewhere = {r: v for r, v in pr.regions.items() if r not in named}
    if elsewhere:
        where = ", ".join(f"{r} {fmt(v)}" for r, v in sorted(elsewhere.items()))
        points.append(("bad", f"records went to regions the policy does not name: {where}"))
    declared = {(r["kind"], r["field"]) for r in rows}
    if any(k not in declared and seen(c) for k, c in pr.fields.items()):
        points.append(("bad", "the gateway applied fields this policy file does not declare"))
    overridden = sum(1 for r in rows if r["action"] != r["declared"])
    if overridden:
        points.append(
            (
                "warn",
                f"the file declares {overridden} field(s) with an unsafe action; the gateway "
                "enforced the safe one (fix the file)",
            )
        )
    held = pr.outcome("held")
    if named:
        inside = ", ".join(f"{r} {fmt(v)}" for r, v in sorted(pr.regions.items()) if r in named)
        points.append(
            ("ok", f"records only in regions the policy names: {inside or 'none forwarded yet'}")
        )
        if held:
            points.append(
                (
                    "warn",
                    f"{fmt(held)} record(s) held: devices resolved to regions the policy does "
                    "not name (check the registry and the default region)",
                )
            )
    else:
        points.append(
            ("ok", f"the policy names no region: nothing forwarded, {fmt(held)} held by design")
        )
    rejected = pr.outcome("rejected")
    if received and rejected / received > REJECTION_REVIEW:
        points.append(("warn", f"{rejected / received:.0%} of messages rejected (see Rejections)"))
    withdrawn = pr.outcome("withdrawn")
    if pr.withdrawals or withdrawn:
        points.append(
            (
                "ok",
                f"consent withdrawals honoured: {fmt(pr.withdrawals)} withdrawal(s), "
                f"{fmt(withdrawn)} message(s) of those devices not forwarded",
            )
        )
    if pr.undeclared:
        n = sum(pr.undeclared.values())
        points.append(
            (
                "ok",
                f"{len(pr.undeclared)} undeclared field name(s) dropped as designed "
                f"({fmt(n)} times): nothing undeclared left the gateway",
            )
        )
    levels = {lvl for lvl, _ in points}
    level: Level = "bad" if "bad" in levels else "warn" if "warn" in levels else "ok"
    if level == "ok" and not received:
        level = "none"
    order = {"bad": 0, "warn": 1, "ok": 2, "none": 3}
    return Verdict(level, sorted(points, key=lambda p: order[p[0]]))
