"""Compile one kind of a policy into a decode plan: msgspec types for the declared fields, with
each field's value domain compiled into its type (msgspec `Meta`, `Literal`), and a tree the
engine walks to apply each field's action.

Everything a plan does not name is undeclared: it is never converted, never copied, only
counted. A kind that carries miIO RPC methods compiles one shape per method, with that
method's own `params`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec

from gateway.policy.loader import PolicyError
from gateway.policy.model import (
    AGGREGATE_ONLY,
    COARSEN_ONLY,
    IDENTIFIERS,
    Field,
    KindRule,
    positional_ok,
)

_BASE: dict[str, Any] = {"str": str, "int": int, "float": float, "bool": bool, "id": int | str}
# Numbers this large can carry an IMEI or a MAC: no kept number's domain may reach them.
NUMBER_BOUND = 10**10
# A kept number whose domain reaches this far could be an IPv4 address written as an integer
# (192.168.20.46 is 3232240686): each value is checked at run time (`Leaf.scan`).
SMALL_NUMBER = 2**24
# What a field is counted as when its value cannot leave: a fixed vocabulary.
INVALID_REASONS = ("wrong_type", "out_of_domain", "identifier")


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
        if f.action == "aggregate":
            return "aggregate" if f.category in AGGREGATE_ONLY else "drop"
        return "coarsen" if f.action != "drop" else "drop"
    if f.action in ("pseudonymize", "coarsen", "aggregate"):
        return "drop"
    return f.action


def domain_type(f: Field) -> Any:
    """The field's wire type with its declared domain, checked inside msgspec's decoder."""
    base = _BASE[f.type]
    if f.type == "str":
        if f.enum:
            return Literal[tuple(f.enum)]
        kw: dict[str, Any] = {}
        if f.pattern is not None:
            kw["pattern"] = f.pattern
        if f.max_length is not None:
            kw["max_length"] = f.max_length
        return Annotated[str, msgspec.Meta(**kw)] if kw else str
    if f.type in ("int", "float"):
        kw = {}
        if f.min is not None:
            kw["ge"] = f.min
        if f.max is not None:
            kw["le"] = f.max
        return Annotated[base, msgspec.Meta(**kw)] if kw else base
    return base


def _scan(f: Field, action: str) -> int:
    """0: nothing to scan; 1: a string that can hold an identifier; 2: a number whose declared
    domain does not rule an identifier out."""
    if action != "keep":
        return 0
    if f.type == "str":
        return 0 if f.enum else 1
    if f.type in ("int", "float"):
        lo, hi = f.min, f.max
        small = lo is not None and hi is not None and max(abs(lo), abs(hi)) < SMALL_NUMBER
        return 0 if small else 2
    return 0


Key = tuple[str, str, str, str]


@dataclass(slots=True)
class Leaf:
    name: str  # wire key ("power"; "0" for a positional RPC argument)
    attr: str  # attribute of the compiled Struct
    field: Field
    action: str
    type: Any  # wire type with domain: what the decoder checks
    base: Any  # wire type alone: tells a wrong type from a value outside the domain
    # Metric keys, built once so the hot path only bumps a dict entry.
    count_key: Key
    consent_key: Key
    redact_key: Key
    invalid_keys: dict[str, Key]
    # Copied from `field` for the hot path: one attribute load instead of two.
    consent: str | None
    text: bool
    scan: int


@dataclass(slots=True)
class Node:
    name: str
    prefix: str  # wire path of this node plus '.', '' at the root
    is_list: bool = False
    positional: bool = False  # miIO positional `params`: a list read as {"0": .., "1": ..}
    leaves: list[Leaf] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    declared: frozenset[str] = frozenset()
    struct: type[msgspec.Struct] | None = None
    # Undeclared key -> its counter key, so a fleet's recurring extras cost one dict lookup.
    undeclared: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    # Key layout (keys in wire order) -> the counter keys of its undeclared keys.
    layouts: dict[tuple[str, ...], tuple[tuple[str, str, str], ...]] = field(default_factory=dict)


@dataclass(slots=True)
class Shape:
    """One message layout: the kind's fields, plus one method's params where it has methods."""

    root: Node
    type: type[msgspec.Struct]
    consent: str | None  # toggle the whole message needs (the kind's or the method's)
    positional: bool  # `params` is a positional list


@dataclass(slots=True)
class Plan:
    product: str
    kind: str
    shape: Shape | None  # the kind has no methods
    methods: dict[str, Shape]  # method name -> its shape

    @property
    def shapes(self) -> list[Shape]:
        return [self.shape] if self.shape is not None else list(self.methods.values())

    def shape_of(self, obj: dict[str, Any]) -> Shape | None:
        """The layout a decoded message is read with: the kind's, or its method's; None when
        its method is not declared."""
        if self.shape is not None:
            return self.shape
        method = obj.get("method")
        return self.methods.get(method) if type(method) is str else None


def as_declared(shape: Shape, obj: dict[str, Any]) -> None:
    """Bring real wire variants to the declared layout, in place: a miIO RPC reply carries its
    props as `result`; positional `params` are read as {"0": .., "1": ..}."""
    if "params" not in obj and type(obj.get("result")) is dict:
        obj["params"] = obj.pop("result")
    if shape.positional and type(obj.get("params")) is list:
        obj["params"] = {str(i): v for i, v in enumerate(obj["params"])}


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
        t = leaf.type if leaf.action != "drop" else Any  # a dropped value is never read
        fields.append((leaf.attr, t | None, msgspec.field(default=None, name=leaf.name)))
    for sub in node.nodes:
        t = _seal(sub, f"{type_name}_{sub.name}")
        typ = list[t] if sub.is_list else t  # type: ignore[valid-type]
        fields.append((sub.name, typ | None, None))
    node.declared = frozenset(
        [leaf.name for leaf in node.leaves] + [sub.name for sub in node.nodes]
    )
    node.struct = msgspec.defstruct(type_name, fields, kw_only=True)
    return node.struct


def _leaf(product: str, kind: str, label: str, name: str, f: Field) -> Leaf:
    action = effective_action(f)
    return Leaf(
        name,
        f"p{name}" if name.isdigit() else name,
        f,
        action,
        domain_type(f),
        _BASE[f.type],
        (product, kind, label, action),
        (product, kind, label, "consent_drop"),
        (product, kind, label, "redact"),
        {r: (product, kind, label, r) for r in INVALID_REASONS},
        f.consent,
        f.text,
        _scan(f, action),
    )


def _shape(
    product: str,
    kind: str,
    fields: list[tuple[Field, str]],
    type_name: str,
    consent: str | None,
) -> Shape:
    root = Node("", "")
    positional = False
    for f, label in fields:
        *parents, last = f.path.split(".")
        if last.endswith("[]"):
            raise PlanError(f"{f.path}: a leaf cannot be a list; declare its items")
        node = root
        for seg in parents:
            node = _child(node, seg.removesuffix("[]"), seg.endswith("[]"), f.path)
        if positional_ok(f.path):
            node.positional = positional = True
        if last in {leaf.name for leaf in node.leaves} or last in {n.name for n in node.nodes}:
            raise PlanError(f"{f.path}: declared twice")
        node.leaves.append(_leaf(product, kind, label, last, f))
    for n in root.nodes:
        if n.positional and any(not leaf.name.isdigit() for leaf in n.leaves) | bool(n.nodes):
            raise PlanError(f"{n.name}: positional and named params cannot be mixed")
    return Shape(root, _seal(root, type_name), consent, positional)


def compile_kind(product: str, kind: str, rule: KindRule) -> Plan:
    name = "".join(p.capitalize() for p in f"{product}-{kind}".replace("_", "-").split("-"))
    base = [(f, f.path) for f in rule.fields]
    if not rule.methods:
        return Plan(product, kind, _shape(product, kind, base, name, rule.consent), {})
    methods: dict[str, Shape] = {}
    for i, m in enumerate(rule.methods):
        if m.name in methods:
            raise PlanError(f"method {m.name!r} declared twice")
        # In a method's shape `method` can only be that method's name: a one-value enum.
        fields = [
            (msgspec.structs.replace(f, enum=(m.name,)) if f.path == "method" else f, label)
            for f, label in base
        ]
        fields += [(f, f"{m.name}:{f.path}") for f in m.params]
        methods[m.name] = _shape(product, kind, fields, f"{name}M{i}", m.consent or rule.consent)
    return Plan(product, kind, None, methods)


def message_schema(plan: Plan) -> dict[str, Any]:
    """JSON Schema of the device message this plan accepts (undeclared keys are allowed on
    the wire, and dropped); one alternative per method."""
    types = [s.type for s in plan.shapes]
    if len(types) == 1:
        return msgspec.json.schema(types[0])
    _, defs = msgspec.json.schema_components(types, ref_template="#/$defs/{name}")
    return {"anyOf": [{"$ref": f"#/$defs/{t.__name__}"} for t in types], "$defs": defs}
