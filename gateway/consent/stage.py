"""The consent stage: applies the consent feed to the store, erasing on withdrawal.

Order per batch of consent messages: every new withdrawal is erased first (the callback
removes the device's records from everything the gateway owns and asks remote sinks to
erase), then all states are stored in one transaction. A crash in between redelivers the
retained withdrawal at the next start, which still finds the device not withdrawn and
erases again (erasure is idempotent). A write that fails (disk full, sink down and spool
full) is retried every `retry_s` until it succeeds or the gateway stops: never dropped,
never the end of the worker.
"""

from __future__ import annotations

import functools
import queue
import threading
import time
from collections.abc import Callable
from typing import Protocol

from gateway.consent.feed import ConsentFeed, ConsentMsg, Synced
from gateway.consent.state import MAX_DEVICE_ID, ConsentError, ConsentState, parse_consent
from gateway.consent.store import Change, ConsentStore, StoreError
from gateway.internal_events import UNKNOWN, Events
from gateway.route.topics import TopicScheme
from gateway.sinks.base import SinkError

MAX_BATCH = 5000


class Stopping(Exception):
    """The gateway stops while a consent write is still being retried."""


class Policies(Protocol):
    def toggles(self, product: str) -> frozenset[str] | None:
        """The product's declared toggles; None for a product no policy describes."""
        ...


# ([(product, device)], requested_at): erase everything of these devices, durably, or
# raise SinkError / OSError (then it is retried).
Eraser = Callable[[list[tuple[str, str]], float], None]


class ConsentStage:
    def __init__(
        self,
        feed: ConsentFeed | None,
        store: ConsentStore,
        *,
        policies: Policies,
        topics: TopicScheme,
        events: Events,
        erase: Eraser,
        stop: threading.Event,
        retry_s: float,
    ) -> None:
        self.feed = feed
        self.store = store
        self.policies = policies
        self.topics = topics
        self.events = events
        self.erase = erase
        self._stop = stop
        self.retry_s = retry_s
        self._synced_generation = -1
        if store.lost is not None and store.path is not None:
            events.consent_store_lost(str(store.path), store.lost)

    @property
    def synced(self) -> bool:
        """Every retained consent message of the current feed connection is applied."""
        return self.feed is None or self._synced_generation == self.feed.generation

    def step(self) -> int:
        """Apply what the feed queued (bounded per call); returns how many were applied."""
        if self.feed is None:
            return 0
        items: list[ConsentMsg | Synced] = []
        try:
            while len(items) < MAX_BATCH:
                items.append(self.feed.queue.get_nowait())
        except queue.Empty:
            pass
        if not items:
            return 0
        marker: Synced | None = None
        latest: dict[tuple[str, str], ConsentState] = {}
        for item in items:
            if isinstance(item, Synced):
                marker = item
                continue
            parsed = self._parse(item)
            if parsed is not None:
                product, device, state = parsed
                latest[product, device] = state
        self.apply([(p, d, s) for (p, d), s in latest.items()])
        if marker is not None:
            self._synced_generation = marker.generation
            self.events.consent_synced(self.synced, len(self.store))
        return len(items)

    def apply(self, changes: list[Change]) -> None:
        """Erase for new withdrawals, then store every change; retried until done."""
        withdrawn = []
        for product, device, state in changes:
            prev = self.store.get(product, device)
            if state.withdrawn and not (prev is not None and prev.withdrawn):
                withdrawn.append((product, device))
        if withdrawn:
            # All of a batch's withdrawals in one pass over each store (a rebuilt store
            # re-erases every withdrawn device at once).
            self._retry(functools.partial(self.erase, withdrawn, time.time()))
            for product, _ in withdrawn:
                self.events.consent_withdrawn(product)
        self._retry(lambda: self.store.set_many(changes))

    def _parse(self, msg: ConsentMsg) -> tuple[str, str, ConsentState] | None:
        parsed = self.topics.parse(msg.topic)
        if parsed is None or parsed.kind != "consent":
            self.events.message_rejected(UNKNOWN, "consent", "bad_topic", None)
            return None
        toggles = self.policies.toggles(parsed.product)
        if toggles is None:
            self.events.message_rejected(UNKNOWN, "consent", "unknown_product", None)
            return None
        if not parsed.device or len(parsed.device) > MAX_DEVICE_ID:
            self.events.message_rejected(parsed.product, "consent", "bad_topic", None)
            return None
        try:
            state = parse_consent(msg.payload, toggles)
        except ConsentError as exc:
            self.events.message_rejected(parsed.product, "consent", exc.reason, None)
            return None
        return parsed.product, parsed.device, state

    def _retry(self, op: Callable[[], None]) -> None:
        while True:
            try:
                op()
                return
            except (OSError, StoreError, SinkError) as exc:  # disk full, sink down + spool full
                self.events.consent_write_failed(type(exc).__name__)
                if self._stop.wait(self.retry_s):
                    raise Stopping from None
