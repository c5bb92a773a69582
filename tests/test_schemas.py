"""The committed `schemas/` directory is what `gateway schemas` renders from the shipped policies.

Regenerate with `python -m gateway schemas --out schemas` after changing a policy or the
policy format.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.policy.loader import load_dir
from gateway.schemas import all_schemas, render

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"
HINT = "regenerate with: python -m gateway schemas --out schemas"


def _expected() -> dict[str, bytes]:
    return {name: render(schema) for name, schema in all_schemas(load_dir()).items()}


def _committed() -> dict[str, bytes]:
    return {p.relative_to(SCHEMAS).as_posix(): p.read_bytes() for p in SCHEMAS.rglob("*.json")}


def test_same_files() -> None:
    expected, committed = set(_expected()), set(_committed())
    assert expected - committed == set(), f"missing in schemas/; {HINT}"
    assert committed - expected == set(), f"stale files in schemas/; {HINT}"


@pytest.mark.parametrize("name", sorted(_expected()))
def test_same_content(name: str) -> None:
    path = SCHEMAS / name
    assert path.is_file(), f"{name} missing; {HINT}"
    assert path.read_bytes() == _expected()[name], f"{name} is out of date; {HINT}"


def test_every_shipped_kind_has_a_schema() -> None:
    names = set(_committed())
    assert "policy.schema.json" in names
    for pid, lp in load_dir().items():
        for kind in lp.policy.kinds:
            assert f"messages/{pid}.{kind}.schema.json" in names


def test_schemas_are_json_schema_documents() -> None:
    for name, raw in _committed().items():
        doc = json.loads(raw)
        assert isinstance(doc, dict), name
        # One object per kind; `anyOf` one per method where the kind carries methods.
        assert "$ref" in doc or "type" in doc or "properties" in doc or "anyOf" in doc, name
