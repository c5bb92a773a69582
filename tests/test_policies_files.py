"""The shipped policy files in `policies/`: each decodes and stays consistent with its seed text.

The published texts are kept in `policies/texts/` (a copy of the seeds), so the tests also
check that every cited heading exists in its text and that the table below matches the
texts' README.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from gateway.policy import model
from gateway.policy.model import Field, Policy
from gateway.policy.quotes import comment_quotes

ROOT = Path(__file__).resolve().parent.parent
POLICY_DIR = ROOT / "policies"
POLICY_FILES = sorted(POLICY_DIR.glob("*.toml"))

# The seed README table: policy id -> (seed file, data centres named, as the table spells them).
SEEDS: dict[str, tuple[str, frozenset[str]]] = {
    "mijia-camera": (
        "000_3cf4df2db366e5d8.txt",
        frozenset({"Beijing", "United States", "Singapore", "France"}),
    ),
    "mi-tv-remote": (
        "001_22bb046e5335d40c.txt",
        frozenset({"China", "United States", "Germany", "India", "Russia", "Singapore"}),
    ),
    "xiaofang-camera": (
        "002_9148162925e54193.txt",
        frozenset({"Beijing", "United States", "Singapore", "India", "Russia", "Germany"}),
    ),
    "smartmi": ("003_e3de22a289a00743.txt", frozenset()),
    "mi-home": (
        "004_fb02018b5b40ec4f.txt",
        frozenset({"Beijing", "United States", "Russia", "Singapore", "Germany"}),
    ),
}
DATACENTRE_REGION: dict[str, str] = {
    "Beijing": "cn",
    "China": "cn",
    "United States": "us",
    "Singapore": "sg",
    "France": "fr",
    "Germany": "de",
    "India": "in",
    "Russia": "ru",
}
# Seed texts without any clause on withdrawing consent.
NO_WITHDRAWAL_CLAUSE: frozenset[str] = frozenset({"smartmi"})
SEP = " § "


def _load(path: Path) -> Policy:
    return msgspec.toml.decode(path.read_bytes(), type=Policy)


def _fields(policy: Policy) -> Iterator[tuple[str, Field]]:
    for kind, rule in policy.kinds.items():
        for field in rule.fields:
            yield kind, field
        for m in rule.methods:
            for field in m.params:
                yield kind, field


def _cites(policy: Policy) -> Iterator[str]:
    for region in policy.regions:
        yield region.cite
    for toggle in policy.toggles:
        yield toggle.cite
    for rule in policy.kinds.values():
        yield rule.cite
        for field in rule.fields:
            yield field.cite
        for m in rule.methods:
            yield m.cite
            for field in m.params:
                yield field.cite
    if policy.withdrawal_cite:
        yield policy.withdrawal_cite
    if policy.erasure_cite:
        yield policy.erasure_cite


def _seeds_dir() -> Path:
    # The published texts ship beside the policies, so every citation can be checked.
    return Path(__file__).resolve().parent.parent / "policies" / "texts"


@pytest.fixture(params=POLICY_FILES, ids=[p.stem for p in POLICY_FILES])
def policy_file(request: pytest.FixtureRequest) -> Path:
    path: Path = request.param
    return path


@pytest.fixture
def policy(policy_file: Path) -> Policy:
    return _load(policy_file)


def test_one_file_per_product() -> None:
    assert {p.stem for p in POLICY_FILES} == set(SEEDS)


def test_decodes_and_id_is_file_stem(policy_file: Path) -> None:
    policy = _load(policy_file)
    assert isinstance(policy, Policy)
    assert policy.id == policy_file.stem


def test_seed_is_the_products_text(policy: Policy) -> None:
    assert policy.seed == SEEDS[policy.id][0]


def test_every_cite_names_the_seed_and_a_heading(policy: Policy) -> None:
    cites = list(_cites(policy))
    assert cites
    for cite in cites:
        assert cite.startswith(policy.seed + SEP), cite
        assert cite.removeprefix(policy.seed + SEP).strip(), cite


def test_withdrawal_cite(policy: Policy) -> None:
    if policy.id in NO_WITHDRAWAL_CLAUSE:
        assert policy.withdrawal_cite == ""
    else:
        assert policy.withdrawal_cite.startswith(policy.seed + SEP)


def test_regions_are_the_data_centres_the_seed_names(policy: Policy) -> None:
    ids = [r.id for r in policy.regions]
    assert len(ids) == len(set(ids))
    assert set(ids) <= model.REGIONS
    named = SEEDS[policy.id][1]
    assert {r.datacentre for r in policy.regions} == named
    assert set(ids) == {DATACENTRE_REGION[name] for name in named}
    for region in policy.regions:
        assert DATACENTRE_REGION[region.datacentre] == region.id


def test_secrets_are_dropped(policy: Policy) -> None:
    for kind, field in _fields(policy):
        if field.category.startswith("secret."):
            assert field.action == "drop", (kind, field.path)


def test_token_is_declared_dropped(policy: Policy) -> None:
    if "info" not in policy.kinds:  # smartmi: a heartbeat declares nothing, so no info kind
        return
    info = policy.kinds["info"]
    tokens = [f for f in info.fields if f.path == "token"]
    assert len(tokens) == 1
    assert tokens[0].category == "secret.token"
    assert tokens[0].action == "drop"


def test_identifiers_are_never_kept(policy: Policy) -> None:
    for kind, field in _fields(policy):
        if field.category in model.IDENTIFIERS:
            assert field.action in ("pseudonymize", "drop"), (kind, field.path)


def test_coarsen_only_categories(policy: Policy) -> None:
    for kind, field in _fields(policy):
        if field.category in model.COARSEN_ONLY:
            assert field.action in ("coarsen", "aggregate", "drop"), (kind, field.path)


def test_categories_and_paths_are_valid(policy: Policy) -> None:
    for kind, field in _fields(policy):
        assert field.category in model.CATEGORIES, (kind, field.path)
        assert model.path_ok(field.path) or model.positional_ok(field.path), (kind, field.path)
        assert field.purpose.strip(), (kind, field.path)


def test_no_duplicate_paths_within_a_kind(policy: Policy) -> None:
    for kind, rule in policy.kinds.items():
        paths = [f.path for f in rule.fields]
        assert len(paths) == len(set(paths)), kind


def test_consent_names_a_declared_toggle(policy: Policy) -> None:
    names = [t.name for t in policy.toggles]
    assert len(names) == len(set(names))
    assert all(model.toggle_ok(n) for n in names)
    used: set[str | None] = {f.consent for _, f in _fields(policy)}
    for rule in policy.kinds.values():
        used |= {rule.consent} | {m.consent for m in rule.methods}
    assert used - {None} == set(names)


def test_methods_need_a_method_field(policy: Policy) -> None:
    for kind, rule in policy.kinds.items():
        if rule.methods or kind == "command":
            assert any(f.path == "method" for f in rule.fields), kind


def test_cited_headings_exist_in_seed(policy: Policy) -> None:
    text = (_seeds_dir() / policy.seed).read_text(encoding="utf-8")
    lines = {line.strip() for line in text.splitlines()}
    for cite in _cites(policy):
        heading = cite.removeprefix(policy.seed + SEP)
        # Texts without line breaks carry their headings as upper-case runs.
        assert heading in lines or (heading.isupper() and heading in text), cite


def test_table_matches_seed_readme() -> None:
    readme = (_seeds_dir() / "README.md").read_text(encoding="utf-8")
    rows: dict[str, frozenset[str]] = {}
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].endswith(".txt"):
            named = cells[3]
            names = [] if named == "none named" else [n.strip() for n in named.split(",")]
            rows[cells[0]] = frozenset(names)
    assert rows == dict(SEEDS.values())


def test_every_forwarded_decision_quotes_the_text(policy: Policy) -> None:
    """A comment right above each forwarded field and each method quotes the text it rests on
    (`gateway explain` prints it beside the decision)."""
    quotes = comment_quotes(POLICY_DIR / f"{policy.id}.toml")
    for kind, rule in policy.kinds.items():
        for f in rule.fields:
            if f.action != "drop" and not f.category.startswith("secret."):
                assert (kind, f.path) in quotes, (kind, f.path)
        for m in rule.methods:
            assert (kind, m.name) in quotes, (kind, m.name)
