"""Events of the control plane: policy loads and reloads, consent and the erasure it
triggers, statistics of aggregate windows, retention, the held store, and failed writes of
the gateway's own state (consent, held, retention share that counter)."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge

from gateway.internal_events.base import Area, emit, log


class ControlEvents(Area):
    def _init_control(self, r: CollectorRegistry) -> None:
        self.reloads = Counter("gateway_policy_reloads", "Policy reloads", ["outcome"], registry=r)
        for outcome in ("ok", "error"):  # present at 0, so rate() and alerts see the first
            self.reloads.labels(outcome)
        self.policy_info = Gauge(
            "gateway_policy_info",
            "Loaded policy per product",
            ["product", "policy_hash"],
            registry=r,
        )
        self.policy_regions_named = Gauge(
            "gateway_policy_regions",
            "Data-residency regions the loaded policy names (0: the product is never forwarded)",
            ["product"],
            registry=r,
        )
        self.withdrawals = Counter(
            "gateway_consent_withdrawals", "Consent withdrawals seen", ["product"], registry=r
        )
        self.erasures = Counter(
            "gateway_erasure_requests", "Erasure requests sent", ["sink", "region"], registry=r
        )
        self.stats_records = Counter(
            "gateway_stats_records",
            "Statistics records of closed aggregate windows",
            ["product", "region", "outcome"],
            registry=r,
        )
        self.erased = Counter(
            "gateway_erased_records",
            "Records of withdrawn devices removed from what the gateway stores",
            ["store", "region"],
            registry=r,
        )
        self.consent_synced_gauge = Gauge(
            "gateway_consent_synced",
            "1 once the retained consent state is applied; data waits while 0",
            registry=r,
        )
        self.consent_devices = Gauge(
            "gateway_consent_devices", "Devices in the consent store", registry=r
        )
        self.consent_store_rebuilds = Counter(
            "gateway_consent_store_rebuilds",
            "Consent stores found lost at start and rebuilt from retained messages",
            ["reason"],
            registry=r,
        )
        self.expired = Counter(
            "gateway_expired_records",
            "Stored records removed once older than their retention",
            ["store", "region"],
            registry=r,
        )
        self.held_records = Gauge(
            "gateway_held_records", "Records in the held store (encrypted)", registry=r
        )
        self.held_bytes = Gauge("gateway_held_bytes", "Bytes on disk of the held store", registry=r)
        self.held_dropped_records = Counter(
            "gateway_held_dropped",
            "Held records not kept: the product's policy names no region",
            ["product", "kind"],
            registry=r,
        )
        self.state_write_failures = Counter(
            "gateway_state_write_failures",
            "Failed writes of the gateway's own state, retried",
            ["store"],
            registry=r,
        )

    def policies_loaded(self, hashes: dict[str, str]) -> None:
        self.policy_info.clear()
        for product, h in hashes.items():
            self.policy_info.labels(product, h[:12]).set(1)
        log.info("policies loaded: %s", ", ".join(f"{p}@{h[:12]}" for p, h in hashes.items()))

    def policy_regions(self, regions: dict[str, int]) -> None:
        # Alerts tell "held by design" (no region named) from "held by a routing mistake".
        self.policy_regions_named.clear()
        for product, n in regions.items():
            self.policy_regions_named.labels(product).set(n)

    def policy_reload(self, ok: bool, detail: str = "") -> None:
        self.reloads.labels("ok" if ok else "error").inc()
        if ok:
            log.info("policy reload applied")
        else:
            emit(logging.ERROR, "policy reload refused, keeping the running policies", error=detail)

    def consent_withdrawn(self, product: str) -> None:
        self.withdrawals.labels(product).inc()
        emit(
            logging.INFO,
            "consent withdrawn: forwarding stopped, erasure requested",
            product=product,
        )

    def stats_emitted(self, product: str, region: str, sent: bool) -> None:
        self.stats_records.labels(product, region, "sent" if sent else "no_sink").inc()
        if not sent:
            emit(
                logging.WARNING,
                "statistics dropped: no sink for the region",
                product=product,
                region=region,
            )

    def erasure_sent(self, sink: str, region: str, n: int = 1) -> None:
        self.erasures.labels(sink, region).inc(n)

    def records_erased(self, store: str, region: str, n: int) -> None:
        if n:
            self.erased.labels(store, region).inc(n)

    def consent_synced(self, synced: bool, devices: int) -> None:
        self.consent_synced_gauge.set(1 if synced else 0)
        self.consent_devices.set(devices)
        if synced:
            log.info("consent state synced with the broker: %d devices", devices)

    def consent_store_lost(self, path: str, reason: str) -> None:
        # The path is the gateway's own state file, never a message value.
        self.consent_store_rebuilds.labels(reason).inc()
        log.warning(
            "consent store %s was %s; rebuilding it from the broker's retained consent "
            "(no data is forwarded until that is done)",
            path,
            reason,
        )

    def consent_write_failed(self, error: str) -> None:
        self.state_write_failures.labels("consent").inc()
        if self._ratelog.allow("consent-write"):
            log.warning("consent state write failed, retrying: %s", error)

    def records_expired(self, store: str, region: str, n: int) -> None:
        if n:
            self.expired.labels(store, region).inc(n)
            log.info("retention: %d records expired store=%s region=%s", n, store, region)

    def expiry_failed(self, error: str) -> None:
        self.state_write_failures.labels("retention").inc()
        log.warning("retention check failed, retrying at the next check: %s", error)

    def held_depth(self, records: int, nbytes: int) -> None:
        self.held_records.set(records)
        self.held_bytes.set(nbytes)

    def held_dropped(self, product: str, kind: str) -> None:
        self.held_dropped_records.labels(product, kind).inc()

    def held_write_failed(self, error: str) -> None:
        self.state_write_failures.labels("held").inc()
        if self._ratelog.allow("held-write"):
            log.warning("held record write failed, retrying: %s", error)
