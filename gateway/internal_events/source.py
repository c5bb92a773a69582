"""Events of the MQTT source: its connection, its in-flight window, and what its broker
reports about itself under `$SYS`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from gateway.internal_events.base import Area, emit, log

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


class SourceEvents(Area):
    def _init_source(self, r: CollectorRegistry) -> None:
        # The source broker's own counters ($SYS), as last published by it.
        self.broker: dict[str, float] = {}
        self.inflight = Gauge(
            "gateway_inflight_messages",
            "Messages received from the broker and not yet acknowledged",
            registry=r,
        )
        self.inflight_limit = Gauge(
            "gateway_inflight_limit", "Bound of the in-flight window", registry=r
        )
        self.connected = Gauge(
            "gateway_source_connected", "1 while the MQTT source is connected", registry=r
        )

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

    def _scrape_broker(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        broker = dict(self.broker)
        for key, name, doc in _BROKER_COUNTERS:
            if key in broker:
                yield CounterMetricFamily(name, doc, value=broker[key])
        for key, name, doc in _BROKER_GAUGES:
            if key in broker:
                yield GaugeMetricFamily(name, doc, value=broker[key])
