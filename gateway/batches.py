"""A batch of deliveries from enforcement to acknowledgement: each message's record to the
sink of its region (or held, when no sink may take it), durable, then acknowledged to the
source broker, in order.

In two halves, so that the worker enforces the next batch while this one's records wait
for their acknowledgements: `prepare` (enforce) and `begin` (start the sink writes), then
`settle` (finish them, spooling or retrying what was refused; hold; acknowledge). A record
is acknowledged only once durable at its sink or in the spool: a kill -9 at any moment
leaves every unacknowledged message with the broker, which redelivers it.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import NamedTuple

from gateway.engine import Engine
from gateway.envelope import Held, Record, encode
from gateway.held import HeldStore
from gateway.internal_events import Events
from gateway.sinks.base import OutRecord, SinkError
from gateway.sinks.spooled import Pending, SpooledSink
from gateway.sources.mqtt.source import Delivery
from gateway.spool.spool import SpoolError
from gateway.transforms.aggregate import Aggregator, Stats, encode_stats


class Prepared(NamedTuple):
    """A batch enforced: its records per sink, and what is held."""

    batch: list[Delivery]
    writes: list[tuple[SpooledSink, list[OutRecord]]]
    held: list[OutRecord]


class InFlight(NamedTuple):
    """A prepared batch whose sink writes have begun (one `Pending` per write; None: the
    sink and its spool refused at once, retried when settled)."""

    prepared: Prepared
    pending: list[Pending | None]
    started: float


class Batches:
    def __init__(
        self,
        *,
        engine: Engine,
        events: Events,
        sink: Callable[[str], SpooledSink | None],
        held: HeldStore,
        stats: Aggregator,
        ack: Callable[[list[Delivery]], None],
        stop: threading.Event,
        retry_s: float,
        shadow: bool,
    ) -> None:
        self.engine = engine
        self.events = events
        self.sink = sink  # the spooled sink of a region, None when none is configured
        self.held = held
        self.stats = stats
        self.ack = ack  # to the source broker
        self.stop = stop
        self.retry_s = retry_s
        self.shadow = shadow  # enforce and count, write nothing

    def prepare(self, batch: list[Delivery]) -> Prepared:
        """Enforce: each message's record, by region, or held."""
        by_region: dict[str, list[OutRecord]] = defaultdict(list)
        held: list[OutRecord] = []
        now = time.time()
        for d in batch:
            parsed = self.engine.topics.parse(d.topic)
            if parsed is not None and parsed.kind == "consent":
                continue  # from a session of an older version: the consent feed has it
            out = self.engine.process(d.topic, d.payload, now)
            if isinstance(out, Record):
                if self.shadow:
                    self.events.message_outcome(out.product, out.kind, "shadowed")
                    continue
                by_region[out.region].append(_out_record(out))
            elif isinstance(out, Held):
                rec = out.record
                if not self.engine.products[rec.product].regions:
                    # A policy that names no region: no sink may ever receive it, so it is
                    # not kept either.
                    self.events.held_dropped(rec.product, rec.kind)
                elif not self.shadow:
                    held.append(_out_record(rec))
        writes: list[tuple[SpooledSink, list[OutRecord]]] = []
        for region, records in by_region.items():
            sink = self.sink(region)
            if sink is None:  # no sink configured for a region the policy allows: hold
                for r in records:
                    held.append(r)
                    self.events.message_outcome(r.product, r.kind, "held")
                continue
            writes.append((sink, records))
        # What the batch added to open statistics windows, durable before its acks.
        self.stats.sync()
        return Prepared(batch, writes, held)

    def begin(self, prep: Prepared) -> InFlight:
        """Start the sink writes; a sink that sends in the background (MQTT) returns at
        once, and the worker enforces the next batch meanwhile."""
        started = time.monotonic()
        pending: list[Pending | None] = []
        try:
            for sink, records in prep.writes:
                try:
                    pending.append(sink.begin(records))
                except SinkError:
                    pending.append(None)  # sink and spool refused: retried in settle
        except BaseException:
            for p in pending:
                if p is not None:
                    p.abandon()
            raise
        return InFlight(prep, pending, started)

    def settle(self, flight: InFlight) -> None:
        """Finish the writes in order, retrying what sink and spool refused, hold what no
        sink may take, then acknowledge the batch to the source."""
        prep = flight.prepared
        try:
            for i, (sink, records) in enumerate(prep.writes):
                p, flight.pending[i] = flight.pending[i], None
                done = 0
                if p is not None:
                    try:
                        spooled = p.finish()
                        done = len(records)
                    except SinkError as exc:
                        spooled, done = 0, exc.delivered
                    if spooled:
                        self.events.records_spooled(sink.name, sink.region, spooled)
                    if done - spooled:
                        took = time.monotonic() - flight.started
                        self.events.sink_committed(sink.name, sink.region, done - spooled, took)
                if done < len(records):
                    self.commit(sink, records[done:])
                for r in records:
                    self.events.record_forwarded(r.product, r.kind, sink.region)
        finally:
            for left in flight.pending:
                if left is not None:
                    left.abandon()
        if prep.held:
            self.hold(prep.held)
        self.ack(prep.batch)

    def emit_stats(self, due: list[Stats]) -> None:
        """Statistics of these closed `aggregate` windows, to the sink of their region."""
        if not self.shadow:
            for s in due:
                sink = self.sink(s.region)
                if sink is not None:
                    rec = OutRecord(s.id, s.product, s.kind, s.region, encode_stats(s))
                    self.commit(sink, [rec])
                self.events.stats_emitted(s.product, s.region, sink is not None)
        self.stats.emitted(due)

    def commit(self, sink: SpooledSink, batch: Sequence[OutRecord]) -> None:
        """Retry until the sink or its spool has the records durably. Back-pressure, not
        loss: while both refuse, nothing is acknowledged and the broker's in-flight window
        fills. A retry offers only what the sink has not acknowledged yet
        (SinkError.delivered); each is an attempt the SpooledSink counts and logs."""
        t0 = time.monotonic()
        rest = batch
        while True:
            try:
                spooled = sink.write(rest)
                break
            except SinkError as exc:
                rest = rest[exc.delivered :]
                if self.stop.wait(self.retry_s):
                    self.events.records_failed(sink.name, sink.region, len(rest))
                    raise
        if spooled:
            self.events.records_spooled(sink.name, sink.region, spooled)
        if spooled < len(batch):
            self.events.sink_committed(
                sink.name, sink.region, len(batch) - spooled, time.monotonic() - t0
            )

    def hold(self, records: list[OutRecord]) -> None:
        """Like a sink commit: a full disk waits and retries, it never ends the worker."""
        while True:
            try:
                self.held.write(records)
                self.events.held_depth(self.held.records, self.held.disk_bytes)
                return
            except SpoolError as exc:  # full (bound or disk): nothing acknowledged meanwhile
                self.events.held_write_failed(type(exc).__name__)
                if self.stop.wait(self.retry_s):
                    raise SinkError("stopping while the held store refuses") from None


def _out_record(rec: Record) -> OutRecord:
    return OutRecord(rec.id, rec.product, rec.kind, rec.region, encode(rec), rec.device)
