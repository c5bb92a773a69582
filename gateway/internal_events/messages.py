"""Events of each message and each of its fields: the hot path.

They only bump a plain dict entry; ``_scrape_messages`` turns those dicts into Prometheus
counters at scrape time, so enforcement never takes a metric lock per field. Labels are
bounded: product and kind come from the loaded policies (or `_unknown`), fields from
declared paths, undeclared fields from a fixed vocabulary.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily

from gateway.internal_events.base import Area, emit

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


class MessageEvents(Area):
    def _init_messages(self) -> None:
        self.received: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.outcomes: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        self.rejected: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        self.fields: defaultdict[tuple[str, str, str, str], int] = defaultdict(int)
        self.undeclared: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        self.region_records: defaultdict[tuple[str, str], int] = defaultdict(int)
        self._undeclared_names: defaultdict[tuple[str, str], set[str]] = defaultdict(set)

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

    def _scrape_messages(self) -> Iterator[CounterMetricFamily]:
        # list(d.items()) snapshots in one C call: the worker thread keeps counting meanwhile.
        yield _family(
            "gateway_messages_received",
            "Messages received",
            ["product", "kind"],
            list(self.received.items()),
        )
        yield _family(
            "gateway_messages",
            "Messages by outcome",
            ["product", "kind", "outcome"],
            list(self.outcomes.items()),
        )
        yield _family(
            "gateway_messages_rejected",
            "Messages rejected",
            ["product", "kind", "reason"],
            list(self.rejected.items()),
        )
        yield _family(
            "gateway_fields",
            "Declared fields by applied action",
            ["product", "kind", "field", "action"],
            list(self.fields.items()),
        )
        yield _family(
            "gateway_region_records",
            "Records forwarded to the sink of a region, per product",
            ["product", "region"],
            list(self.region_records.items()),
        )
        yield _family(
            "gateway_undeclared_fields",
            "Undeclared fields dropped",
            ["product", "kind", "field"],
            list(self.undeclared.items()),
        )


def _family(
    name: str, doc: str, labels: list[str], items: Iterable[tuple[tuple[str, ...], int]]
) -> CounterMetricFamily:
    fam = CounterMetricFamily(name, doc, labels=labels)
    for key, n in items:
        fam.add_metric(list(key), n)
    return fam
