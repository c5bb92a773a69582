"""Each declared field's action, applied to a decoded message: keep (within its domain, with no
identifier inside), pseudonymize, coarsen, or drop; and the rare path that removes the values
a plan's types refuse, so one bad field costs that field, not the message.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import msgspec

from gateway.consent.state import ConsentState
from gateway.decode.plan import NUMBER_BOUND, Key, Leaf, Node
from gateway.transforms.coarsen import coarsen_position
from gateway.transforms.geo import coarse_ip
from gateway.transforms.pseudonymize import Pseudonymizer
from gateway.transforms.redact import contains_identifier, identifier_int, redact

Counts = defaultdict[Key, int]


def apply(
    node: Node,
    obj: Any,
    ps: Pseudonymizer,
    state: ConsentState | None,
    out: dict[str, Any],
    *,
    counts: Counts,
    countries: list[str],
) -> None:
    """Copy into `out` what may leave of the typed message `obj`, counting each field;
    `aggregate` values go to `countries`, never to `out`."""
    for leaf in node.leaves:
        v = getattr(obj, leaf.attr)
        if v is None:
            continue
        consent = leaf.consent
        if consent is not None and (state is None or consent not in state.toggles):
            counts[leaf.consent_key] += 1
            continue
        action = leaf.action
        if action == "keep":
            if leaf.scan:
                # The engine floor: whatever the policy says, no identifier leaves inside a
                # kept value. Declared free text loses the identifier; anything else the field.
                if leaf.scan == 2:
                    if _identifier_number(v):
                        counts[leaf.invalid_keys["identifier"]] += 1
                        continue
                elif leaf.text:
                    v, hit = redact(v)
                    if hit:
                        counts[leaf.redact_key] += 1
                elif _has_identifier(v):
                    counts[leaf.invalid_keys["identifier"]] += 1
                    continue
            counts[leaf.count_key] += 1
            out[leaf.name] = v
            continue
        counts[leaf.count_key] += 1
        if action == "pseudonymize":
            out[leaf.name] = _pseudonymize(ps, leaf.field.category, v)
        elif action == "coarsen":
            c = _coarsen(leaf.field.category, v, leaf.field.precision)
            if c is not None:
                out[leaf.name] = c
        elif action == "aggregate":
            c = coarse_ip(v) if isinstance(v, str) else None
            if c is not None and "country" in c:
                countries.append(c["country"])
    for sub in node.nodes:
        v = getattr(obj, sub.name)
        if v is None:
            continue
        if sub.is_list:
            items: list[dict[str, Any]] = []
            for item in v:
                d: dict[str, Any] = {}
                apply(sub, item, ps, state, d, counts=counts, countries=countries)
                items.append(d)
            out[sub.name] = items
        else:
            d = {}
            apply(sub, v, ps, state, d, counts=counts, countries=countries)
            if d:
                out[sub.name] = _positional(d) if sub.positional else d


# Kept values repeat across a fleet (firmware versions, models, modes): a bounded memo of short
# values' scan results makes the floor one dict lookup for them. It lives in memory only.
_SCANNED: dict[str, bool] = {}
_SCANNED_MAX = 8192
_SCANNED_LEN = 64


def _has_identifier(v: str) -> bool:
    hit = _SCANNED.get(v)
    if hit is None:
        hit = contains_identifier(v)
        if len(v) <= _SCANNED_LEN and len(_SCANNED) < _SCANNED_MAX:
            _SCANNED[v] = hit
    return hit


def carries_value(d: dict[str, Any]) -> bool:
    """Whether any declared value is left: empty blocks and list items alone say nothing."""
    for v in d.values():
        if type(v) is dict:
            if carries_value(v):
                return True
        elif type(v) is list:
            if any(carries_value(x) if type(x) is dict else x is not None for x in v):
                return True
        else:
            return True
    return False


def _identifier_number(v: int | float) -> bool:
    if type(v) is float:
        return abs(v) >= NUMBER_BOUND
    return identifier_int(int(v))


def _positional(d: dict[str, Any]) -> list[Any]:
    """Positional params leave as a list; a dropped argument keeps its place as null."""
    n = max(int(k) for k in d) + 1
    return [d.get(str(i)) for i in range(n)]


def clean(node: Node, obj: dict[str, Any], counts: Counts) -> None:
    """Remove from a decoded object each declared value the plan's types refuse, counting
    each by field and reason (never the value)."""
    for leaf in node.leaves:
        v = obj.get(leaf.name)
        if v is None or leaf.action == "drop":
            continue
        try:
            msgspec.convert(v, leaf.type)
        except msgspec.ValidationError:
            try:
                msgspec.convert(v, leaf.base)
                reason = "out_of_domain"
            except msgspec.ValidationError:
                reason = "wrong_type"
            del obj[leaf.name]
            counts[leaf.invalid_keys[reason]] += 1
    for sub in node.nodes:
        v = obj.get(sub.name)
        if v is None:
            continue
        if sub.is_list and type(v) is list:
            kept = [item for item in v if type(item) is dict]
            obj[sub.name] = kept
            for item in kept:
                clean(sub, item, counts)
        elif not sub.is_list and type(v) is dict:
            clean(sub, v, counts)
        else:
            del obj[sub.name]
            for leaf in _leaves(sub):
                counts[leaf.invalid_keys["wrong_type"]] += 1


def _leaves(node: Node) -> list[Leaf]:
    return node.leaves + [leaf for sub in node.nodes for leaf in _leaves(sub)]


def _pseudonymize(ps: Pseudonymizer, category: str, v: Any) -> Any:
    if type(v) is str:
        return ps.mac(v) if category == "device.mac" else ps.pseudonym(category, v)
    # bool is an int: keep `True` and `1` apart so they cannot collide.
    return ps.pseudonym(category, str(v) if not isinstance(v, bool) else f"bool:{v}")


def _coarsen(category: str, v: Any, precision: int) -> Any:
    if category == "location.precise":
        if isinstance(v, bool) or not isinstance(v, int | float):
            return None
        return coarsen_position(v, precision)
    # IPs: country and continent of public addresses, nothing for private ones.
    return coarse_ip(v) if isinstance(v, str) else None
