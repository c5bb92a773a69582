"""Compile one kind of a policy into a decode plan: msgspec types for the declared fields, and
a tree the engine walks to apply each field's action.

Everything a plan does not name is undeclared: it is never converted, never copied, only
counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from gateway.policy.loader import PolicyError
from gateway.policy.model import COARSEN_ONLY, IDENTIFIERS, Field, KindRule

Scalar = str | int | float | bool | None

_TYPES: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "id": int | str,
    "scalars": list[Scalar],
}


class PlanError(PolicyError):
    """The policy cannot be compiled (conflicting paths); names the path, never a value."""


def effective_action(f: Field) -> str:
    """What the engine does, whatever the file says: secrets never leave, identifiers leave
    only pseudonymized, IPs and positions only coarsened. Anything else that does not fit is
    dropped (fail closed)."""
    if f.category.startswith("secret."):
        return "drop"
    if f.category in IDENTIFIERS:
        return "pseudonymize" if f.action in ("keep", "pseudonymize") else "drop"
    if f.category in COARSEN_ONLY:
        return "coarsen" if f.action != "drop" else "drop"
    if f.action in ("pseudonymize", "coarsen"):
        return "drop"
    return f.action


@dataclass(slots=True)
class Leaf:
    name: str
    field: Field
    action: str
    # Metric keys, built once so the hot path only bumps a dict entry.
    count_key: tuple[str, str, str, str]
    consent_key: tuple[str, str, str, str]
    redact_key: tuple[str, str, str, str]
    # Copied from `field` for the hot path: one attribute load instead of two.
    consent: str | None
    text: bool


@dataclass(slots=True)
class Node:
    name: str
    prefix: str  # wire path of this node plus '.', '' at the root
    is_list: bool = False
    leaves: list[Leaf] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    declared: frozenset[str] = frozenset()
    struct: type[msgspec.Struct] | None = None
    # Undeclared key -> its counter key, so a fleet's recurring extras cost one dict lookup.
    undeclared: dict[str, tuple[str, str, str]] = field(default_factory=dict)


@dataclass(slots=True)
class Plan:
    product: str
    kind: str
    root: Node
    type: type[msgspec.Struct]
    methods: frozenset[str]


def _child(node: Node, name: str, is_list: bool, path: str) -> Node:
    for n in node.nodes:
        if n.name == name:
            if n.is_list != is_list:
                raise PlanError(f"{path}: {name!r} is declared both as a list and an object")
            return n
    if any(leaf.name == name for leaf in node.leaves):
        raise PlanError(f"{path}: {name!r} is declared both as a field and as a block")
    n = Node(name, f"{node.prefix}{name}{'[]' if is_list else ''}.", is_list)
    node.nodes.append(n)
    return n


def _seal(node: Node, type_name: str) -> type[msgspec.Struct]:
    fields: list[tuple[str, Any, Any]] = []
    for leaf in node.leaves:
        fields.append((leaf.name, _TYPES[leaf.field.type] | None, None))
    for sub in node.nodes:
        t = _seal(sub, f"{type_name}_{sub.name}")
        fields.append((sub.name, (list[t] if sub.is_list else t) | None, None))  # type: ignore[valid-type]
    node.declared = frozenset(name for name, _, _ in fields)
    node.struct = msgspec.defstruct(type_name, fields, kw_only=True)
    return node.struct


def compile_kind(product: str, kind: str, rule: KindRule) -> Plan:
    root = Node("", "")
    for f in rule.fields:
        *parents, last = f.path.split(".")
        if last.endswith("[]"):
            raise PlanError(f"{f.path}: a leaf cannot be a list of objects; use type 'scalars'")
        node = root
        for seg in parents:
            node = _child(node, seg.removesuffix("[]"), seg.endswith("[]"), f.path)
        if last in {leaf.name for leaf in node.leaves} or last in {n.name for n in node.nodes}:
            raise PlanError(f"{f.path}: declared twice")
        action = effective_action(f)
        node.leaves.append(
            Leaf(
                last,
                f,
                action,
                (product, kind, f.path, action),
                (product, kind, f.path, "consent_drop"),
                (product, kind, f.path, "redact"),
                f.consent,
                f.text,
            )
        )
    name = "".join(p.capitalize() for p in f"{product}-{kind}".replace("_", "-").split("-"))
    typ = _seal(root, name)
    return Plan(product, kind, root, typ, frozenset(rule.methods))


def message_schema(plan: Plan) -> dict[str, Any]:
    """JSON Schema of the device message this plan accepts (undeclared keys are allowed on
    the wire, and dropped)."""
    return msgspec.json.schema(plan.type)
