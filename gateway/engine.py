"""The in-process pipeline: one MQTT message in, one Record, Held or Rejection out.

topic -> product/kind/device -> consent -> decode (limits) -> undeclared fields counted ->
msgspec types compiled from the policy -> per-field action -> region -> envelope.
Fail closed: any doubt is a Rejection, and nothing of a rejected message is forwarded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import blake2b
from typing import Any, Protocol

import msgspec

from gateway.consent.state import ConsentState
from gateway.decode.limits import Bad, Limits, decode_object
from gateway.decode.plan import Node, Plan, compile_kind
from gateway.envelope import Held, Outcome, PolicyRef, Record, Rejection
from gateway.internal_events import UNKNOWN, Events
from gateway.policy.loader import LoadedPolicy
from gateway.policy.model import KINDS, Field
from gateway.route.router import Router
from gateway.route.topics import TopicScheme
from gateway.transforms.coarsen import coarsen_position
from gateway.transforms.geo import coarse_ip
from gateway.transforms.pseudonymize import KeyRing, Pseudonymizer
from gateway.transforms.redact import redact

_MAX_DEVICE_ID = 128
UNDECLARED_MEMO = 256
_ERR_PATH = re.compile(r"at `\$\.?([^`]*)`")
_INDEX = re.compile(r"\[\d+\]")


class ConsentView(Protocol):
    def get(self, product: str, device: str) -> ConsentState | None: ...


@dataclass(frozen=True, slots=True)
class Product:
    """A loaded policy compiled for the hot path."""

    loaded: LoadedPolicy
    plans: dict[str, Plan]
    regions: frozenset[str]
    ref: PolicyRef
    pseudo: Pseudonymizer
    declared_paths: dict[str, frozenset[str]]


def compile_products(policies: Mapping[str, LoadedPolicy], keys: KeyRing) -> dict[str, Product]:
    out: dict[str, Product] = {}
    for pid, lp in policies.items():
        plans: dict[str, Plan] = {
            k: compile_kind(pid, k, rule) for k, rule in lp.policy.kinds.items()
        }
        out[pid] = Product(
            lp,
            plans,
            frozenset(r.id for r in lp.policy.regions),
            PolicyRef(pid, lp.hash),
            keys.for_product(pid),
            {k: _declared_paths(r.fields) for k, r in lp.policy.kinds.items()},
        )
    return out


def _declared_paths(fields: tuple[Field, ...]) -> frozenset[str]:
    """Every declared path and every block above one (`ap`, `params.children`): the names a
    type error may be reported at."""
    out: set[str] = set()
    for f in fields:
        parts = f.path.split(".")
        for i in range(1, len(parts) + 1):
            out.add(".".join(parts[:i]).removesuffix("[]"))
    return frozenset(out)


class Engine:
    def __init__(
        self,
        policies: Mapping[str, LoadedPolicy],
        keys: KeyRing,
        router: Router,
        *,
        events: Events | None = None,
        consent: ConsentView | None = None,
        limits: Limits | None = None,
        topics: TopicScheme | None = None,
    ) -> None:
        self.keys = keys
        self.router = router
        self.events = events or Events()
        self.consent = consent
        self.limits = limits or Limits()
        self.topics = topics or TopicScheme()
        self._id_key = keys.derive("message-id")
        self.products = compile_products(policies, keys)
        self.events.policies_loaded({p: c.loaded.hash for p, c in self.products.items()})

    def reload(self, policies: Mapping[str, LoadedPolicy]) -> None:
        """Compile first, then swap one reference: a message sees the old set or the new."""
        products = compile_products(policies, self.keys)
        self.products = products
        self.events.policies_loaded({p: c.loaded.hash for p, c in products.items()})

    def _reject(self, product: str, kind: str, reason: str, field: str | None = None) -> Rejection:
        self.events.message_rejected(product, kind, reason, field)
        return Rejection(product, kind, reason, field)

    def process(self, topic: str, payload: bytes, received: float) -> Outcome:
        parsed = self.topics.parse(topic)
        if parsed is None:
            self.events.message_received(UNKNOWN, UNKNOWN)
            return self._reject(UNKNOWN, UNKNOWN, "bad_topic")
        product_id, device, kind, topic_region = parsed
        product = self.products.get(product_id)
        kind_label = kind if kind in KINDS else UNKNOWN
        if product is None:
            self.events.message_received(UNKNOWN, kind_label)
            return self._reject(UNKNOWN, kind_label, "unknown_product")
        pid = product_id
        self.events.message_received(pid, kind_label)
        plan = product.plans.get(kind)
        if plan is None:
            return self._reject(pid, kind_label, "undeclared_kind")
        if not device or len(device) > _MAX_DEVICE_ID:
            return self._reject(pid, kind, "bad_topic")
        state = self.consent.get(pid, device) if self.consent is not None else None
        if state is not None and state.withdrawn:
            return self._reject(pid, kind, "consent_withdrawn")
        try:
            obj = decode_object(payload, self.limits)
        except Bad as bad:
            return self._reject(pid, kind, bad.reason)
        self._count_undeclared(plan.root, obj, pid, kind)
        try:
            typed = msgspec.convert(obj, plan.type)
        except msgspec.ValidationError as exc:
            return self._reject(pid, kind, "type_error", self._field_of(exc, product, kind))
        if plan.methods and getattr(typed, "method", None) not in plan.methods:
            return self._reject(pid, kind, "method_not_allowed", "method")
        data: dict[str, Any] = {}
        self._apply(plan.root, typed, product.pseudo, state, data)
        region = self.router.region(device, topic_region)
        record = Record(
            id=blake2b(
                topic.encode() + b"\x00" + payload, key=self._id_key, digest_size=16
            ).hexdigest(),
            product=pid,
            kind=kind,
            device=product.pseudo.pseudonym("device.id", device),
            region=region or "",
            received=datetime.fromtimestamp(received, UTC),
            policy=product.ref,
            key=product.pseudo.key_id,
            data=data,
        )
        if region is None or region not in product.regions:
            self.events.message_outcome(pid, kind, "held")
            return Held(record)
        return record

    def _count_undeclared(self, node: Node, obj: dict[str, Any], pid: str, kind: str) -> None:
        extra = obj.keys() - node.declared
        if extra:
            counts = self.events.undeclared
            memo = node.undeclared
            for key in extra:
                ck = memo.get(key)
                if ck is None:
                    ck = self.events.undeclared_key(pid, kind, node.prefix + key)
                    if len(memo) < UNDECLARED_MEMO:  # keys are attacker-chosen: bounded
                        memo[key] = ck
                counts[ck] += 1
        for sub in node.nodes:
            v = obj.get(sub.name)
            if sub.is_list:
                if type(v) is list:
                    for item in v:
                        if type(item) is dict:
                            self._count_undeclared(sub, item, pid, kind)
            elif type(v) is dict:
                self._count_undeclared(sub, v, pid, kind)

    @staticmethod
    def _field_of(exc: msgspec.ValidationError, product: Product, kind: str) -> str | None:
        """The declared path a type error is at; None rather than anything unbounded."""
        m = _ERR_PATH.search(str(exc))
        if m is None:
            return None
        path = _INDEX.sub("[]", m.group(1))
        declared = product.declared_paths.get(kind, frozenset())
        for candidate in (path, path.removesuffix("[]")):
            if candidate in declared:
                return candidate
        return None

    def _apply(
        self,
        node: Node,
        obj: Any,
        ps: Pseudonymizer,
        state: ConsentState | None,
        out: dict[str, Any],
    ) -> None:
        counts = self.events.fields
        for leaf in node.leaves:
            v = getattr(obj, leaf.name)
            if v is None:
                continue
            consent = leaf.consent
            if consent is not None and (state is None or consent not in state.toggles):
                counts[leaf.consent_key] += 1
                continue
            counts[leaf.count_key] += 1
            action = leaf.action
            if action == "keep":
                if leaf.text:
                    v, hit = _redact_value(v)
                    if hit:
                        counts[leaf.redact_key] += 1
                out[leaf.name] = v
            elif action == "pseudonymize":
                out[leaf.name] = _pseudonymize(ps, leaf.field.category, v)
            elif action == "coarsen":
                c = _coarsen(leaf.field.category, v, leaf.field.precision)
                if c is not None:
                    out[leaf.name] = c
        for sub in node.nodes:
            v = getattr(obj, sub.name)
            if v is None:
                continue
            if sub.is_list:
                items: list[dict[str, Any]] = []
                for item in v:
                    d: dict[str, Any] = {}
                    self._apply(sub, item, ps, state, d)
                    items.append(d)
                out[sub.name] = items
            else:
                d = {}
                self._apply(sub, v, ps, state, d)
                if d:
                    out[sub.name] = d


def _redact_value(v: Any) -> tuple[Any, bool]:
    if isinstance(v, str):
        return redact(v)
    if isinstance(v, list):
        hit = False
        items = []
        for x in v:
            if isinstance(x, str):
                clean, h = redact(x)
                hit |= h
                items.append(clean)
            else:
                items.append(x)
        return items, hit
    return v, False


def _pseudonymize(ps: Pseudonymizer, category: str, v: Any) -> Any:
    if type(v) is str:
        return ps.mac(v) if category == "device.mac" else ps.pseudonym(category, v)
    if isinstance(v, list):
        return [None if x is None else _pseudonymize(ps, category, x) for x in v]
    # bool is an int: keep `True` and `1` apart so they cannot collide.
    return ps.pseudonym(category, str(v) if not isinstance(v, bool) else f"bool:{v}")


def _coarsen(category: str, v: Any, precision: int) -> Any:
    if isinstance(v, list):
        return [_coarsen(category, x, precision) for x in v]
    if category == "location.precise":
        if isinstance(v, bool) or not isinstance(v, int | float):
            return None
        return coarsen_position(v, precision)
    # IPs: country and continent of public addresses, nothing for private ones.
    return coarse_ip(v) if isinstance(v, str) else None
