"""Erasure: everything of withdrawn devices that this worker owns, gone.

Called by the consent stage (`stage.py`) for every new withdrawal, before the withdrawn
state is stored. A device's records carry its pseudonym under every key epoch it was seen
with, so each epoch's pseudonym is erased: the held store, each region's spool (records
never delivered now) and the sink itself. Remote sinks (MQTT, NATS) are asked by worker 0
only: every worker sees every withdrawal, and one request per sink is enough.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from gateway.held import HeldStore
from gateway.internal_events import Events
from gateway.sinks.spooled import SpooledSink
from gateway.transforms.pseudonymize import KeyRing

if TYPE_CHECKING:
    from gateway.engine import Product


class Erasure:
    def __init__(
        self,
        *,
        products: Callable[[], Mapping[str, Product]],
        old_keys: Sequence[KeyRing],
        held: HeldStore,
        sink: Callable[[str], SpooledSink | None],
        worker: int,
        events: Events,
        before: Callable[[], None],
    ) -> None:
        self.products = products  # the engine's current ones (a reload swaps them)
        self.old_keys = old_keys  # earlier key epochs: their pseudonyms are erased too
        self.held = held
        self.sink = sink
        self.worker = worker
        self.events = events
        self.before = before  # settles the worker's batch in flight: its records go too

    def __call__(self, devices: list[tuple[str, str]], requested: float) -> None:
        """Erase these (product, device) pairs, one pass per store; durable on return,
        else SinkError / OSError (the consent stage retries)."""
        self.before()
        products = self.products()
        by_region: dict[str, list[tuple[str, str]]] = defaultdict(list)
        pseudonyms: set[str] = set()
        for product, device in devices:
            p = products.get(product)
            if p is None:
                continue
            for ps in (p.pseudo, *(old.for_product(product) for old in self.old_keys)):
                pseudonym = ps.pseudonym("device.id", device)
                pseudonyms.add(pseudonym)
                for region in p.regions:
                    by_region[region].append((product, pseudonym))
        self.events.records_erased("held", "-", self.held.erase(pseudonyms))
        for region, pairs in sorted(by_region.items()):
            sink = self.sink(region)
            if sink is None:
                continue
            send = self.worker == 0 or not sink.sink.remote
            spooled, at_sink = sink.erase_many(pairs, requested, send=send)
            self.events.records_erased("spool", region, spooled)
            self.events.records_erased(sink.name, region, at_sink)
            if send:
                self.events.erasure_sent(sink.name, region, len(pairs))
