"""Per-field decisions, never values: for a policy (what it declares) or for one message (what
the gateway did with each field it carried)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gateway.decode.limits import Bad, decode_object
from gateway.decode.plan import Node, as_declared, effective_action
from gateway.engine import Engine
from gateway.internal_events import OTHER, undeclared_label
from gateway.policy.loader import LoadedPolicy
from gateway.policy.model import Field
from gateway.policy.quotes import comment_quotes


def policy_rows(lp: LoadedPolicy) -> Iterator[dict[str, str]]:
    quotes = comment_quotes(lp.path)
    for kind, rule in lp.policy.kinds.items():
        fields = [(f, f.path, rule.consent) for f in rule.fields]
        for m in rule.methods:
            fields += [(f, f"{m.name}:{f.path}", m.consent or rule.consent) for f in m.params]
        for f, label, gate in fields:
            yield {
                "product": lp.policy.id,
                "kind": kind,
                "field": label,
                "category": f.category,
                "declared": f.action,
                "action": effective_action(f),
                "domain": domain_text(f),
                "consent": f.consent or gate or "",
                "purpose": f.purpose,
                "cite": f.cite,
                # The file's own reasoning, quoting the text: the field's, else its method's
                # or its kind's.
                "quote": quotes.get((kind, label))
                or quotes.get((kind, label.split(":", 1)[0]))
                or quotes.get((kind, ""), ""),
            }


def domain_text(f: Field) -> str:
    """The declared value domain, as a reviewer reads it."""
    parts = []
    if f.enum:
        parts.append("one of " + "|".join(f.enum))
    if f.pattern is not None:
        parts.append(f"matches {f.pattern}")
    if f.max_length is not None:
        parts.append(f"at most {f.max_length} chars")
    if f.min is not None or f.max is not None:
        parts.append(f"in [{f.min}, {f.max}]")
    return "; ".join(parts)


def _walk(node: Node, obj: dict[str, Any], out: dict[str, str]) -> None:
    for leaf in node.leaves:
        if obj.get(leaf.name) is not None:
            action = leaf.action
            if leaf.field.consent:
                action += f" (needs consent {leaf.field.consent})"
            out[node.prefix + leaf.name] = action
    hidden = 0
    for key in obj.keys() - node.declared:
        # A key can itself be a value (a map keyed by MAC): only known names are shown.
        label = undeclared_label(node.prefix, key)
        if label.endswith(OTHER):
            hidden += 1
        else:
            out[label] = "drop (undeclared)"
    if hidden:
        out[f"{node.prefix}<{hidden} undeclared keys not shown>"] = "drop (undeclared)"
    for sub in node.nodes:
        v = obj.get(sub.name)
        items = v if sub.is_list and type(v) is list else [v] if not sub.is_list else []
        for item in items:
            if type(item) is dict:
                _walk(sub, item, out)


def message_decisions(engine: Engine, topic: str, payload: bytes) -> dict[str, Any]:
    parsed = engine.topics.parse(topic)
    if parsed is None:
        return {"reason": "bad_topic"}
    product = engine.products.get(parsed.product)
    if product is None:
        return {"reason": "unknown_product"}
    plan = product.plans.get(parsed.kind)
    if plan is None:
        return {"product": parsed.product, "reason": "undeclared_kind"}
    try:
        obj = decode_object(payload, engine.limits)
    except Bad as bad:
        return {"product": parsed.product, "kind": parsed.kind, "reason": bad.reason}
    shape = plan.shape_of(obj)
    if shape is None:
        return {"product": parsed.product, "kind": parsed.kind, "reason": "method_not_allowed"}
    as_declared(shape, obj)
    fields: dict[str, str] = {}
    _walk(shape.root, obj, fields)
    return {"product": parsed.product, "kind": parsed.kind, "fields": fields}
