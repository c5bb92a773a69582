"""Citations: each `<text file> § <heading>` must name a heading that exists in that text.

The published texts sit in `<policy dir>/texts/`. A heading exists when it is a line of the
text on its own, or, for texts that came without line breaks, when it occurs verbatim as an
upper-case run (how such texts mark their sections).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from pathlib import Path

from gateway.policy.lint import Finding
from gateway.policy.loader import LoadedPolicy

SEP = " § "


def cites(lp: LoadedPolicy) -> Iterator[tuple[str, str]]:
    """(where, citation) of every non-empty citation in the policy, `where` as lint names it."""
    p = lp.policy
    for r in p.regions:
        yield f"regions.{r.id}", r.cite
    for t in p.toggles:
        yield f"toggles.{t.name}", t.cite
    for kind, rule in p.kinds.items():
        yield f"kinds.{kind}", rule.cite
        for f in rule.fields:
            yield f"kinds.{kind}.{f.path}", f.cite
        for m in rule.methods:
            yield f"kinds.{kind}.methods.{m.name}", m.cite
            for f in m.params:
                yield f"kinds.{kind}.methods.{m.name}.{f.path}", f.cite
    yield "withdrawal_cite", p.withdrawal_cite
    if p.erasure_cite:
        yield "erasure_cite", p.erasure_cite


@cache
def _headings(path: Path) -> tuple[frozenset[str], str] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return frozenset(line.strip() for line in text.splitlines()), text


def heading_exists(text_file: Path, heading: str) -> bool | None:
    """None when the text cannot be read."""
    found = _headings(text_file)
    if found is None:
        return None
    lines, text = found
    return heading in lines or (heading.isupper() and heading in text)


def check_citations(lp: LoadedPolicy) -> list[Finding]:
    texts = lp.path.parent / "texts"
    out: list[Finding] = []
    seed = lp.policy.seed
    if Path(seed).name != seed:
        return [Finding("error", f"{lp.path.name}:seed", "seed must be a file name in texts/")]
    if heading_exists(texts / seed, "") is None:
        return [Finding("error", f"{lp.path.name}:seed", f"policy text texts/{seed} not found")]
    for where, cite in cites(lp):
        # Empty or foreign citations are lint's findings; here only the heading is judged.
        if not cite.startswith(seed + SEP):
            continue
        heading = cite.removeprefix(seed + SEP).strip()
        if heading and not heading_exists(texts / seed, heading):
            out.append(
                Finding("error", f"{lp.path.name}:{where}", f"no heading {heading!r} in {seed}")
            )
    return out
