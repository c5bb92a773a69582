"""`gateway check`: what a privacy reviewer would refuse in a policy, as findings."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import msgspec

from gateway.decode.plan import NUMBER_BOUND, domain_type, effective_action
from gateway.policy.loader import LoadedPolicy
from gateway.policy.model import (
    AGGREGATE_ONLY,
    CATEGORIES,
    COARSEN_ONLY,
    IDENTIFIERS,
    REGIONS,
    Field,
    path_ok,
    positional_ok,
    toggle_ok,
)
from gateway.policy.quotes import comment_quotes
from gateway.transforms.redact import contains_identifier, identifier_int


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
        if rule.consent is not None and rule.consent not in toggles:
            err(f"kinds.{kind}", f"consent toggle {rule.consent!r} is not declared in [[toggles]]")
        paths = {f.path for f in rule.fields}
        if rule.methods and "method" not in paths:
            err(f"kinds.{kind}.methods", "a methods allowlist needs a declared `method` field")
        _fields(
            f"kinds.{kind}",
            rule.fields,
            params=False,
            methods=bool(rule.methods),
            err=err,
            cited=cited,
            toggles=toggles,
        )
        for m in rule.methods:
            where = f"kinds.{kind}.methods.{m.name}"
            cited(where, m.cite)
            if not m.purpose.strip():
                err(where, "a method needs a purpose")
            if m.consent is not None and m.consent not in toggles:
                err(where, f"consent toggle {m.consent!r} is not declared in [[toggles]]")
            if contains_identifier(m.name):
                err(where, "a method name must not carry an identifier")
            _fields(where, m.params, params=True, err=err, cited=cited, toggles=toggles)
    quotes = comment_quotes(lp.path)
    for kind, rule in p.kinds.items():
        unquoted = [f.path for f in rule.fields if effective_action(f) != "drop"]
        unquoted += [m.name for m in rule.methods]
        for label in unquoted:
            if (kind, label) not in quotes:
                warn(f"kinds.{kind}.{label}", "no comment above it quotes the text it rests on")
    if p.k_anonymity < 2:
        err("k_anonymity", "a statistics cell must hide at least 2 devices")
    if p.aggregate_window_s < 1:
        err("aggregate_window_s", "the statistics window must be at least one second")
    if p.erasure_cite:
        cited("erasure_cite", p.erasure_cite)
    if not p.withdrawal_cite.strip():
        warn("withdrawal_cite", "no clause cited for withdrawal of consent")
    return out


def _fields(
    prefix: str,
    fields: tuple[Field, ...],
    *,
    params: bool,
    methods: bool = False,
    err: Callable[[str, str], None],
    cited: Callable[[str, str], None],
    toggles: set[str],
) -> None:
    seen: set[str] = set()
    for f in fields:
        where = f"{prefix}.{f.path}"
        if params:
            if not (positional_ok(f.path) or (path_ok(f.path) and f.path.startswith("params."))):
                err(where, "a method's params are `params.0`, `params.1`, ... or `params.<name>`")
        elif not path_ok(f.path):
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
        if f.category in COARSEN_ONLY and f.action not in ("coarsen", "aggregate", "drop"):
            err(where, "IP addresses and positions leave only coarsened or aggregated")
        if f.action == "aggregate" and f.category not in AGGREGATE_ONLY:
            err(where, f"aggregate applies to {sorted(AGGREGATE_ONLY)}, not {f.category!r}")
        if f.action == "pseudonymize" and f.category not in IDENTIFIERS:
            err(where, f"pseudonymize applies to identifiers, not {f.category!r}")
        if f.action == "coarsen" and f.category not in COARSEN_ONLY:
            err(where, f"coarsen applies to IPs and positions, not {f.category!r}")
        if f.consent is not None and f.consent not in toggles:
            err(where, f"consent toggle {f.consent!r} is not declared in [[toggles]]")
        if f.text and f.type != "str":
            err(where, "only str fields can be free text")
        # A kind's `method` is bounded by its declared methods.
        if effective_action(f) == "keep" and not (f.path == "method" and methods):
            for problem in domain_problems(f):
                err(where, problem)


def domain_problems(f: Field) -> list[str]:
    """What is wrong with a kept field's value domain: every kept string, and every kept
    number, says which values it admits."""
    out: list[str] = []
    if f.type == "str":
        if f.enum:
            out += [f"enum value {v!r} carries an identifier" for v in f.enum if _ident(v)]
        elif f.pattern is not None:
            if not (f.pattern.startswith("^") and f.pattern.endswith("$")):
                out.append("a pattern must be anchored: ^...$")
            try:
                re.compile(f.pattern)
            except re.error:
                out.append("pattern is not a valid regular expression")
        elif not (f.text and f.max_length is not None):
            out.append("a kept string needs a domain: enum, pattern, or text with max_length")
    elif f.type in ("int", "float"):
        if f.min is None or f.max is None:
            out.append("a kept number needs min and max")
        elif max(abs(f.min), abs(f.max)) >= NUMBER_BOUND:
            out.append(f"a kept number's bounds must stay below {NUMBER_BOUND:.0e}: an IMEI fits")
    elif f.type == "id":
        out.append("an id is an identifier: pseudonymize or drop it")
    if f.type != "str" and (f.enum or f.pattern or f.max_length is not None):
        out.append("enum, pattern and max_length apply to strings")
    if not out:
        t = domain_type(f)
        for ex in f.examples:
            try:
                msgspec.convert(ex, t)
            except msgspec.ValidationError:
                out.append(f"example {ex!r} is outside the declared domain")
                continue
            if _ident(ex):
                out.append(f"example {ex!r} carries an identifier")
    return out


def _ident(v: object) -> bool:
    if isinstance(v, str):
        return contains_identifier(v)
    return isinstance(v, int) and not isinstance(v, bool) and identifier_int(v)
