"""``Events``: every area's events on one object, their metrics in one registry.

One object, so a component gets one handle whatever it reports; the areas stay apart so
each event's log line and metric are found in the module of its area.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Gauge, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.internal_events.base import RateLimitedLog
from gateway.internal_events.control import ControlEvents
from gateway.internal_events.messages import MessageEvents
from gateway.internal_events.sinks import SinkEvents
from gateway.internal_events.source import SourceEvents
from gateway.version import VERSION


class Events(MessageEvents, SinkEvents, SourceEvents, ControlEvents):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._ratelog = RateLimitedLog()
        self._init_messages()
        r = self.registry
        r.register(_ScrapeCollector(self))
        # process_cpu_seconds_total, process_resident_memory_bytes, process_start_time_seconds..
        ProcessCollector(registry=r)
        build = Gauge(
            "gateway_build_info",
            "Version of the running gateway",
            ["version", "python"],
            registry=r,
        )
        build.labels(VERSION, platform.python_version()).set(1)
        self._init_sinks(r)
        self._init_source(r)
        self._init_control(r)


class _ScrapeCollector(Collector):
    """The metrics read at scrape time, from the areas' plain counters and gauges."""

    def __init__(self, ev: Events) -> None:
        self.ev = ev

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        yield from self.ev._scrape_spools()
        yield from self.ev._scrape_broker()
        yield from self.ev._scrape_messages()
