"""Every internal event of the gateway: its log line and its metric, in one place.

Hot-path events (one per message or field) only bump a plain dict entry; a Collector turns
those dicts into Prometheus counters at scrape time, so enforcement never takes a metric lock
per field. Labels are bounded: product and kind come from the loaded policies (or
`_unknown`), fields from declared paths, undeclared fields from a fixed vocabulary.
No label and no log line ever carries a value from a message.
"""

from __future__ import annotations

import logging
import platform
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.version import VERSION

log = logging.getLogger("gateway")

UNKNOWN = "_unknown"
OTHER = "_other"
# Undeclared keys are chosen by whoever sends the message, and a key can itself be an
# identifier (`tasmota_A41B9E_2974`, a map keyed by MAC): only names from this fixed
# vocabulary of keys real devices send (miIO, Tasmota, ESPHome, Shelly, zigbee2mqtt) become a
# label, under their declared parent; every other key is counted as `<parent>._other`.
_KNOWN = """
    id method params result error code message partner_id exe_time token otu_stat miio_ver
    model hw_ver fw_ver wifi_fw_ver mcu_fw_ver mac uid life mmfree ap netif ssid bssid rssi
    primary secondary freq localIp gw mask ot ipflag config_type cfg_time did sid power mode
    state status arming rgb volume mute audio_mode aqi humidity temperature temp_dec
    filter1_life child_lock buzzer led brightness battery voltage linkquality vendor_ext seq
    tag time timestamp uptime hostname ip version name type value key values props children
    sdcard_status night_mode flip wdr motion
"""
KNOWN_KEYS: frozenset[str] = frozenset(_KNOWN.split())


def undeclared_label(prefix: str, key: str) -> str:
    """The label an undeclared key is counted under: never the raw key unless it is a known
    name."""
    return prefix + (key if key in KNOWN_KEYS else OTHER)


def emit(level: int, text: str, **labels: object) -> None:
    """One log line: `text key=value ...` as text; as JSON, each label its own field. Labels
    carry the metric label names and their bounded values, never a value from a message."""
    if not log.isEnabledFor(level):
        return
    tail = " ".join(f"{k}={v}" for k, v in labels.items())
    log.log(level, "%s %s", text, tail, extra={"text": text, "labels": labels})


class _RateLimitedLog:
    """At most `burst` lines per key per minute: a flood of bad messages must not become a
    flood of log lines."""

    def __init__(self, burst: int = 5) -> None:
        self.burst = burst
        self._window: dict[str, tuple[float, int]] = {}

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        start, n = self._window.get(key, (now, 0))
        if now - start >= 60.0:
            start, n = now, 0
        self._window[key] = (start, n + 1)
        return n < self.burst


class Events:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.received: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.outcomes: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        self.rejected: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        self.fields: defaultdict[tuple[str, str, str, str], int] = defaultdict(int)
        self.undeclared: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        self.region_records: defaultdict[tuple[str, str], int] = defaultdict(int)
        self._undeclared_names: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
        self._ratelog = _RateLimitedLog()
        # The source broker's own counters ($SYS), as last published by it.
        self.broker: dict[str, float] = {}
        self.registry.register(_HotCollector(self))
        r = self.registry
        # process_cpu_seconds_total, process_resident_memory_bytes, process_start_time_seconds..
        ProcessCollector(registry=r)
        build = Gauge(
            "gateway_build_info",
            "Version of the running gateway",
            ["version", "python"],
            registry=r,
        )
        build.labels(VERSION, platform.python_version()).set(1)
        self.sink_records = Counter(
            "gateway_sink_records",
            "Records handed to sinks",
            ["sink", "region", "outcome"],
            registry=r,
        )
        self.sink_latency = Histogram(
            "gateway_sink_latency_seconds",
            "Time for a sink to commit a batch",
            ["sink", "region"],
            registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.sink_attempts = Counter(
            "gateway_sink_attempts",
            "Attempts on a sink: ok, error (refused or timed out), spool_full (the sink was "
            "down and its spool refused the batch too)",
            ["sink", "region", "outcome"],
            registry=r,
        )
        self.drained = Counter(
            "gateway_spool_drained_records",
            "Records drained from the spool to their sink",
            ["sink", "region"],
            registry=r,
        )
        # Spool depth is read from the spools at scrape time (watch_spools): it is true
        # after a drain too, per sink and region.
        self._spools: Callable[[], Iterable[tuple[str, str, int, int]]] = list
        self.spool_damaged = Counter(
            "gateway_spool_damaged",
            "Damage found in a spool: quarantined frames, length fields, older segments, "
            "head files; torn final frames cut off",
            ["sink", "region", "damage"],
            registry=r,
        )
        self.inflight = Gauge(
            "gateway_inflight_messages",
            "Messages received from the broker and not yet acknowledged",
            registry=r,
        )
        self.inflight_limit = Gauge(
            "gateway_inflight_limit", "Bound of the in-flight window", registry=r
        )
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
        self.connected = Gauge(
            "gateway_source_connected", "1 while the MQTT source is connected", registry=r
        )

    # -- per message (hot) ------------------------------------------------------------------

    def message_received(self, product: str, kind: str) -> None:
        self.received[product, kind] += 1

    def message_rejected(self, product: str, kind: str, reason: str, field: str | None) -> None:
        self.rejected[product, kind, reason] += 1
        self.outcomes[product, kind, "rejected"] += 1
        if self._ratelog.allow(reason):
            emit(
                logging.INFO,
                "message rejected",
                product=product,
                kind=kind,
                reason=reason,
                field=field or "-",
            )

    def message_outcome(self, product: str, kind: str, outcome: str) -> None:
        self.outcomes[product, kind, outcome] += 1
        # Holding is enforcement working as designed (like a rejection): INFO, and the
        # GatewayRecordsHeld alert is the operator's signal.
        if outcome == "held" and self._ratelog.allow("held"):
            emit(
                logging.INFO,
                "record held: device region is not named by the policy",
                product=product,
                kind=kind,
            )

    def record_forwarded(self, product: str, kind: str, region: str) -> None:
        """A record durably with the sink of `region` (a region the product's policy names)."""
        self.outcomes[product, kind, "forwarded"] += 1
        self.region_records[product, region] += 1

    def undeclared_key(
        self, product: str, kind: str, prefix: str, key: str
    ) -> tuple[str, str, str]:
        """The counter key an undeclared key is counted under (logged the first time)."""
        path = undeclared_label(prefix, key)
        names = self._undeclared_names[product, kind]
        if path not in names:
            names.add(path)
            emit(logging.INFO, "undeclared field dropped", product=product, kind=kind, field=path)
        return (product, kind, path)

    # -- sinks, spool, source ---------------------------------------------------------------

    def sink_committed(self, sink: str, region: str, n: int, seconds: float) -> None:
        self.sink_records.labels(sink, region, "committed").inc(n)
        self.sink_latency.labels(sink, region).observe(seconds)

    def records_spooled(self, sink: str, region: str, n: int) -> None:
        self.sink_records.labels(sink, region, "spooled").inc(n)

    def records_failed(self, sink: str, region: str, n: int) -> None:
        """Given up on, unacknowledged: the worker stopped while neither sink nor spool took
        them (the broker redelivers them)."""
        self.sink_records.labels(sink, region, "failed").inc(n)

    def sink_attempt(self, sink: str, region: str, outcome: str, error: str = "") -> None:
        self.sink_attempts.labels(sink, region, outcome).inc()
        if outcome != "ok" and self._ratelog.allow(f"attempt:{sink}:{region}:{outcome}"):
            retry = " (the worker retries; nothing is acknowledged meanwhile)"
            emit(
                logging.WARNING,
                "sink attempt failed" + (retry if outcome == "spool_full" else ""),
                sink=sink,
                region=region,
                outcome=outcome,
                error=error,
            )

    def spool_drained(self, sink: str, region: str, records: int) -> None:
        self.drained.labels(sink, region).inc(records)

    def watch_spools(self, spools: Callable[[], Iterable[tuple[str, str, int, int]]]) -> None:
        """``spools()``: (sink, region, records, bytes on disk) of every open spool."""
        self._spools = spools

    def spool_opened(self, sink: str, region: str, damage_kinds: Iterable[str]) -> None:
        for what in damage_kinds:  # present at 0, so the first damage is an increase
            self.spool_damaged.labels(sink, region, what)

    def spool_damage(self, sink: str, region: str, what: str) -> None:
        # The spool logs the file and offset itself.
        self.spool_damaged.labels(sink, region, what).inc()

    def watch_inflight(self, unacked: Callable[[], int], limit: int) -> None:
        self.inflight.set_function(unacked)
        self.inflight_limit.set(limit)

    def source_connection(self, up: bool, detail: str = "", broker: str = "") -> None:
        self.connected.set(1 if up else 0)
        if up:
            emit(logging.INFO, "mqtt source connected", broker=broker)
        elif self._ratelog.allow("source-down"):
            emit(logging.WARNING, "mqtt source not connected", broker=broker, error=detail)

    def broker_stat(self, name: str, value: float) -> None:
        before = self.broker.get(name)
        self.broker[name] = value
        if name == "messages_dropped" and before is not None and value > before:
            log.error(
                "the mqtt broker dropped %d messages (its queue limits): they are lost",
                value - before,
            )
        elif name == "sessions_expired" and before is not None and value > before:
            log.warning(
                "the mqtt broker expired %d sessions; messages queued in them are discarded",
                value - before,
            )

    # -- control plane ----------------------------------------------------------------------

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


# The source broker's $SYS values (mosquitto), present once the broker has published them.
_BROKER_COUNTERS = (
    (
        "messages_dropped",
        "gateway_broker_messages_dropped",
        "Messages the source broker dropped (queue limits), as it reports under $SYS",
    ),
    (
        "sessions_expired",
        "gateway_broker_sessions_expired",
        "Sessions the source broker expired, discarding what was queued in them ($SYS)",
    ),
)
_BROKER_GAUGES = (
    (
        "stored_messages",
        "gateway_broker_stored_messages",
        "Messages the source broker holds: retained and queued for sessions ($SYS)",
    ),
    ("stored_bytes", "gateway_broker_stored_bytes", "Payload bytes of those messages ($SYS)"),
)


class _HotCollector(Collector):
    def __init__(self, ev: Events) -> None:
        self.ev = ev

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        ev = self.ev
        records = GaugeMetricFamily(
            "gateway_spool_records", "Records waiting in the spool", labels=["sink", "region"]
        )
        nbytes = GaugeMetricFamily(
            "gateway_spool_bytes", "Bytes on disk in the spool", labels=["sink", "region"]
        )
        for sink, region, n, b in ev._spools():
            records.add_metric([sink, region], n)
            nbytes.add_metric([sink, region], b)
        yield records
        yield nbytes
        broker = dict(ev.broker)
        for key, name, doc in _BROKER_COUNTERS:
            if key in broker:
                yield CounterMetricFamily(name, doc, value=broker[key])
        for key, name, doc in _BROKER_GAUGES:
            if key in broker:
                yield GaugeMetricFamily(name, doc, value=broker[key])
        # list(d.items()) snapshots in one C call: the worker thread keeps counting meanwhile.
        yield _family(
            "gateway_messages_received",
            "Messages received",
            ["product", "kind"],
            list(ev.received.items()),
        )
        yield _family(
            "gateway_messages",
            "Messages by outcome",
            ["product", "kind", "outcome"],
            list(ev.outcomes.items()),
        )
        yield _family(
            "gateway_messages_rejected",
            "Messages rejected",
            ["product", "kind", "reason"],
            list(ev.rejected.items()),
        )
        yield _family(
            "gateway_fields",
            "Declared fields by applied action",
            ["product", "kind", "field", "action"],
            list(ev.fields.items()),
        )
        yield _family(
            "gateway_region_records",
            "Records forwarded to the sink of a region, per product",
            ["product", "region"],
            list(ev.region_records.items()),
        )
        yield _family(
            "gateway_undeclared_fields",
            "Undeclared fields dropped",
            ["product", "kind", "field"],
            list(ev.undeclared.items()),
        )


def _family(
    name: str, doc: str, labels: list[str], items: Iterable[tuple[tuple[str, ...], int]]
) -> CounterMetricFamily:
    fam = CounterMetricFamily(name, doc, labels=labels)
    for key, n in items:
        fam.add_metric(list(key), n)
    return fam
