"""`gateway check`: what a privacy reviewer would refuse in a policy, as findings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gateway.policy.loader import LoadedPolicy
from gateway.policy.model import (
    CATEGORIES,
    COARSEN_ONLY,
    IDENTIFIERS,
    REGIONS,
    path_ok,
    toggle_ok,
)


@dataclass(frozen=True, slots=True)
class Finding:
    level: Literal["error", "warning"]
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.where}: {self.message}"


def lint(lp: LoadedPolicy) -> list[Finding]:
    p = lp.policy
    out: list[Finding] = []

    def err(where: str, msg: str) -> None:
        out.append(Finding("error", f"{lp.path.name}:{where}", msg))

    def warn(where: str, msg: str) -> None:
        out.append(Finding("warning", f"{lp.path.name}:{where}", msg))

    def cited(where: str, cite: str) -> None:
        if not cite.strip():
            err(where, "no citation")
        elif not cite.startswith(p.seed):
            err(where, f"citation must name the policy text {p.seed!r}")

    if not p.regions:
        warn("regions", "the policy names no data centre: nothing of this product is forwarded")
    for r in p.regions:
        if r.id not in REGIONS:
            err(f"regions.{r.id}", f"unknown region id; known: {', '.join(sorted(REGIONS))}")
        cited(f"regions.{r.id}", r.cite)
    toggles = {t.name for t in p.toggles}
    for t in p.toggles:
        if not toggle_ok(t.name):
            err(f"toggles.{t.name}", "toggle names are lower_snake_case")
        cited(f"toggles.{t.name}", t.cite)
    for kind, rule in p.kinds.items():
        cited(f"kinds.{kind}", rule.cite)
        if rule.methods and "method" not in {f.path for f in rule.fields}:
            err(f"kinds.{kind}.methods", "a methods allowlist needs a declared `method` field")
        seen: set[str] = set()
        for f in rule.fields:
            where = f"kinds.{kind}.{f.path}"
            if not path_ok(f.path):
                err(where, "path must be dotted identifiers, `[]` marking a list of objects")
            if f.path in seen:
                err(where, "declared twice")
            seen.add(f.path)
            if f.category not in CATEGORIES:
                err(where, f"unknown category {f.category!r}")
            if f.action != "drop":
                if not f.purpose.strip():
                    err(where, "a forwarded field needs a purpose")
                cited(where, f.cite)
            if f.category.startswith("secret.") and f.action != "drop":
                err(where, "secrets never leave: action must be drop")
            if f.category in IDENTIFIERS and f.action not in ("pseudonymize", "drop"):
                err(where, "identifiers leave only pseudonymized")
            if f.category in COARSEN_ONLY and f.action not in ("coarsen", "drop"):
                err(where, "IP addresses and positions leave only coarsened")
            if f.action == "pseudonymize" and f.category not in IDENTIFIERS:
                err(where, f"pseudonymize applies to identifiers, not {f.category!r}")
            if f.action == "coarsen" and f.category not in COARSEN_ONLY:
                err(where, f"coarsen applies to IPs and positions, not {f.category!r}")
            if f.consent is not None and f.consent not in toggles:
                err(where, f"consent toggle {f.consent!r} is not declared in [[toggles]]")
            if f.text and f.type not in ("str", "scalars"):
                err(where, "only str or scalars fields can be free text")
    if not p.withdrawal_cite.strip():
        warn("withdrawal_cite", "no clause cited for withdrawal of consent")
    return out
