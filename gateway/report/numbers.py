"""The scrape's numbers for one product, and the verdict they support."""

from __future__ import annotations

import re
from collections import defaultdict

from gateway.report.html import e as _e
from gateway.report.scrape import Scrape
from gateway.report.svg import fmt

OUTCOMES = ("forwarded", "rejected", "held", "shadowed")
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
