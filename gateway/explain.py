"""Per-field decisions, never values: for a policy (what it declares) or for one message (what
the gateway did with each field it carried)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gateway.decode.limits import Bad, decode_object
from gateway.decode.plan import Node, effective_action
from gateway.engine import Engine
from gateway.internal_events import label_safe
from gateway.policy.loader import LoadedPolicy


def policy_rows(lp: LoadedPolicy) -> Iterator[dict[str, str]]:
    for kind, rule in lp.policy.kinds.items():
        for f in rule.fields:
            yield {
                "product": lp.policy.id,
                "kind": kind,
                "field": f.path,
                "category": f.category,
                "declared": f.action,
                "action": effective_action(f),
                "consent": f.consent or "",
                "purpose": f.purpose,
                "cite": f.cite,
            }


def _walk(node: Node, obj: dict[str, Any], out: dict[str, str]) -> None:
    for leaf in node.leaves:
        if obj.get(leaf.name) is not None:
            action = leaf.action
            if leaf.field.consent:
                action += f" (needs consent {leaf.field.consent})"
            out[node.prefix + leaf.name] = action
    hidden = 0
    for key in obj.keys() - node.declared:
        # A key can itself be a value (a map keyed by MAC): only name-shaped keys are shown.
        if label_safe(node.prefix + key):
            out[node.prefix + key] = "drop (undeclared)"
        else:
            hidden += 1
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
    fields: dict[str, str] = {}
    _walk(plan.root, obj, fields)
    return {"product": parsed.product, "kind": parsed.kind, "fields": fields}
