"""The in-process pipeline: one MQTT message in, one Record, Held or Rejection out.

topic -> product/kind/device -> consent -> decode (limits) -> method -> undeclared fields
counted -> msgspec types compiled from the policy, domains included -> per-field action ->
region -> envelope. Fail closed: any doubt about the message is a Rejection, and nothing of it
is forwarded; a doubt about one field (wrong type, outside its domain, an identifier inside)
costs that field only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import blake2b
from typing import Any, Protocol

import msgspec

from gateway.consent.state import ConsentState
from gateway.decode.limits import Bad, Limits, decode_object
from gateway.decode.plan import Node, Plan, as_declared, compile_kind
from gateway.envelope import Held, Outcome, PolicyRef, Record, Rejection
from gateway.internal_events import UNKNOWN, Events
from gateway.policy.loader import LoadedPolicy
from gateway.policy.model import KINDS
from gateway.route.router import Router
from gateway.route.topics import TopicScheme
from gateway.transforms.aggregate import Aggregator, Stats
from gateway.transforms.fields import apply, carries_value, clean
from gateway.transforms.pseudonymize import KeyRing, Pseudonymizer

MAX_DEVICE_ID = 128
UNDECLARED_MEMO = 256
LAYOUT_MEMO = 256  # key layouts remembered per node
LAYOUT_KEYS = 64  # longer layouts are not remembered: bounded memory
ROUTE_MEMO = 65536


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
    key_id: str  # the pseudonymizer's, built once


@dataclass(frozen=True, slots=True)
class Route:
    """What a valid topic decides whatever the payload, worked out once per topic: a fleet
    repeats its topics (device x kind), so the hot path does one dict lookup for all of it."""

    product: Product
    plan: Plan
    kind: str
    device: str
    topic_region: str | None
    pseudonym: str  # of the device: HMAC, memoized per product anyway, but one lookup less
    id_seed: Any  # keyed blake2b fed `topic NUL`: each message's id copies it, adds the payload


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
            keys.for_product(pid).key_id,
        )
    return out


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
        stats: Aggregator | None = None,
    ) -> None:
        self.keys = keys
        self.router = router
        self.events = events or Events()
        self.consent = consent
        self.limits = limits or Limits()
        self.topics = topics or TopicScheme()
        self.stats = stats
        self._id_key = keys.derive("message-id")
        self.products = compile_products(policies, keys)
        self._routes: dict[str, Route] = {}
        # The service stamps a whole batch with one time: convert it once per batch.
        self._stamp: tuple[float, datetime] = (float("nan"), datetime.now(UTC))
        self.events.policies_loaded({p: c.loaded.hash for p, c in self.products.items()})

    def reload(self, policies: Mapping[str, LoadedPolicy]) -> None:
        """Compile first, then swap one reference: a message sees the old set or the new."""
        products = compile_products(policies, self.keys)
        self.products = products
        self._routes = {}  # routes name the old products: start over (after the swap)
        self.events.policies_loaded({p: c.loaded.hash for p, c in products.items()})

    def _reject(self, product: str, kind: str, reason: str, field: str | None = None) -> Rejection:
        self.events.message_rejected(product, kind, reason, field)
        return Rejection(product, kind, reason, field)

    def _route(self, topic: str) -> Route | Rejection:
        """The topic's product, kind and device, or why the message cannot have any (then
        counted received and rejected here)."""
        # Read before the products: `reload` swaps products, then routes, so a route built
        # from old products can only land in the old memo, which is dropped.
        routes = self._routes
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
        plan = product.plans.get(kind)
        if plan is None:
            self.events.message_received(product_id, kind_label)
            return self._reject(product_id, kind_label, "undeclared_kind")
        if not device or len(device) > MAX_DEVICE_ID:
            self.events.message_received(product_id, kind)
            return self._reject(product_id, kind, "bad_topic")
        seed = blake2b(topic.encode() + b"\x00", key=self._id_key, digest_size=16)
        pseudonym = product.pseudo.pseudonym("device.id", device)
        route = Route(product, plan, kind, device, topic_region, pseudonym, seed)
        if len(routes) >= ROUTE_MEMO:  # topics are chosen by whoever publishes: bounded
            routes.clear()
        routes[topic] = route
        return route

    def process(self, topic: str, payload: bytes, received: float) -> Outcome:
        route = self._routes.get(topic) or self._route(topic)
        if isinstance(route, Rejection):
            return route
        # A routed kind is declared, so it is one of KINDS: a bounded label.
        self.events.message_received(route.product.ref.id, route.kind)
        product, plan, kind, device = route.product, route.plan, route.kind, route.device
        pid = product.ref.id
        state = self.consent.get(pid, device) if self.consent is not None else None
        if state is not None and state.withdrawn:
            return self._withhold(pid, kind, "consent_withdrawn", "withdrawn")
        try:
            obj = decode_object(payload, self.limits)
        except Bad as bad:
            return self._reject(pid, kind, bad.reason)
        shape = plan.shape_of(obj)
        if shape is None:
            return self._reject(pid, kind, "method_not_allowed", "method")
        if shape.consent is not None and (state is None or shape.consent not in state.toggles):
            return self._withhold(pid, kind, "no_consent")
        as_declared(shape, obj)
        self._count_undeclared(shape.root, obj, pid, kind)
        counts = self.events.fields
        try:
            typed = msgspec.convert(obj, shape.type)
        except msgspec.ValidationError:
            # Rare: a declared value of the wrong type or outside its domain. Only those
            # fields are dropped, counted; the rest of the message still leaves.
            clean(shape.root, obj, counts)
            try:
                typed = msgspec.convert(obj, shape.type)
            except msgspec.ValidationError:
                return self._reject(pid, kind, "type_error")
        data: dict[str, Any] = {}
        countries: list[str] = []
        apply(shape.root, typed, product.pseudo, state, data, counts=counts, countries=countries)
        region = self.router.region(device, route.topic_region)
        pseudonym = route.pseudonym
        if countries and self.stats is not None and region in product.regions:
            window = product.loaded.policy.aggregate_window_s
            for c in countries:
                self.stats.observe(pid, region, c, pseudonym, at=received, length=window)
        if not carries_value(data):
            return self._withhold(pid, kind, "nothing_declared")
        digest = route.id_seed.copy()
        digest.update(payload)
        at, when = self._stamp
        if received != at:
            when = datetime.fromtimestamp(received, UTC)
            self._stamp = (received, when)
        record = Record(
            id=digest.hexdigest(),
            product=pid,
            kind=kind,
            device=pseudonym,
            region=region or "",
            received=when,
            policy=product.ref,
            key=product.key_id,
            data=data,
        )
        if region is None or region not in product.regions:
            self.events.message_outcome(pid, kind, "held")
            return Held(record)
        return record

    def _withhold(
        self, product: str, kind: str, reason: str, outcome: str | None = None
    ) -> Rejection:
        """Not forwarded by design (consent, nothing declared left): an outcome of its own,
        not a rejection, so alerts on rejections stay quiet on healthy traffic."""
        self.events.message_outcome(product, kind, outcome or reason)
        return Rejection(product, kind, reason)

    def _count_undeclared(self, node: Node, obj: dict[str, Any], pid: str, kind: str) -> None:
        # A fleet sends few key layouts per node: remember each layout's undeclared counter
        # keys (one per undeclared key), bounded, as layouts are chosen by the sender.
        layout = tuple(obj)
        extras = node.layouts.get(layout)
        if extras is None:
            extras = self._undeclared_keys(node, obj, pid, kind)
            if len(node.layouts) < LAYOUT_MEMO and len(layout) <= LAYOUT_KEYS:
                node.layouts[layout] = extras
        if extras:
            counts = self.events.undeclared
            for ck in extras:
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

    def _undeclared_keys(
        self, node: Node, obj: dict[str, Any], pid: str, kind: str
    ) -> tuple[tuple[str, str, str], ...]:
        """The counter key of each key of `obj` the node does not declare (bounded labels)."""
        out: list[tuple[str, str, str]] = []
        memo = node.undeclared
        for key in obj.keys() - node.declared:
            ck = memo.get(key)
            if ck is None:
                ck = self.events.undeclared_key(pid, kind, node.prefix, key)
                if len(memo) < UNDECLARED_MEMO:  # keys are attacker-chosen: bounded
                    memo[key] = ck
            out.append(ck)
        return tuple(out)

    def stats_due(self, now: float) -> list[Stats]:
        """Statistics of every `aggregate` window that has closed by `now`."""
        if self.stats is None:
            return []
        refs = {pid: (p.ref, p.loaded.policy.k_anonymity) for pid, p in self.products.items()}
        return self.stats.due(now, refs)
