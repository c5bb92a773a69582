"""JSON Schemas: the policy file format, and each product's device messages as the msgspec
types compiled from its policy accept them. `tests/test_schemas.py` keeps `schemas/` in sync."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from gateway.decode.plan import compile_kind, message_schema
from gateway.policy.loader import LoadedPolicy
from gateway.policy.model import Policy


def all_schemas(policies: Mapping[str, LoadedPolicy]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {"policy.schema.json": msgspec.json.schema(Policy)}
    for pid, lp in sorted(policies.items()):
        for kind, rule in lp.policy.kinds.items():
            out[f"messages/{pid}.{kind}.schema.json"] = message_schema(
                compile_kind(pid, kind, rule)
            )
    return out


def render(schema: dict[str, Any]) -> bytes:
    return msgspec.json.format(msgspec.json.encode(schema), indent=2) + b"\n"


def write_schemas(out: Path, policies: Mapping[str, LoadedPolicy]) -> list[Path]:
    written = []
    for name, schema in all_schemas(policies).items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(render(schema))
        written.append(path)
    return written
