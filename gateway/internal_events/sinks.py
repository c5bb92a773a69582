"""Events of the sinks and of the spool each sink falls back to."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from gateway.internal_events.base import Area, emit


class SinkEvents(Area):
    def _init_sinks(self, r: CollectorRegistry) -> None:
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

    def _scrape_spools(self) -> Iterator[GaugeMetricFamily]:
        records = GaugeMetricFamily(
            "gateway_spool_records", "Records waiting in the spool", labels=["sink", "region"]
        )
        nbytes = GaugeMetricFamily(
            "gateway_spool_bytes", "Bytes on disk in the spool", labels=["sink", "region"]
        )
        for sink, region, n, b in self._spools():
            records.add_metric([sink, region], n)
            nbytes.add_metric([sink, region], b)
        yield records
        yield nbytes
