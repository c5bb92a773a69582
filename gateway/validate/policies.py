"""Everything `gateway check` finds in one policy: lint, the plan compiler, citations."""

from __future__ import annotations

from gateway.decode.plan import PlanError, compile_kind
from gateway.policy.lint import Finding, lint
from gateway.policy.loader import LoadedPolicy
from gateway.validate.citations import check_citations


def policy_findings(lp: LoadedPolicy) -> list[Finding]:
    findings = lint(lp)
    for kind, rule in lp.policy.kinds.items():
        try:
            compile_kind(lp.policy.id, kind, rule)
        except PlanError as exc:
            findings.append(Finding("error", f"{lp.path.name}:kinds.{kind}", str(exc)))
    return findings + check_citations(lp)
