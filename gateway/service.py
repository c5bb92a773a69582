"""`gateway run`: MQTT in, policy enforced, records out to the sink of their region.

At-least-once: a message is acknowledged to the broker only after the sink of its region
(or, while that sink is down, the encrypted local spool) has durably committed its record,
after it was rejected and counted, or after it was held. A kill -9 at any moment leaves every
unacknowledged message with the broker's persistent session, which redelivers it.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from pathlib import Path

from gateway.batches import Batches, InFlight
from gateway.config import GatewayConfig, SinkSpec, StartupError
from gateway.consent.erasure import Erasure
from gateway.consent.feed import ConsentFeed
from gateway.consent.stage import ConsentStage, Stopping
from gateway.consent.store import ConsentStore
from gateway.engine import Engine
from gateway.held import HeldStore
from gateway.internal_events import Events
from gateway.keys import load_master
from gateway.policy.loader import DEFAULT_DIR, PolicyError, load_dir
from gateway.policy.model import REGIONS
from gateway.retention import expired
from gateway.route.router import Router, load_registry
from gateway.route.topics import TopicScheme
from gateway.sinks.base import Sink, SinkError
from gateway.sinks.file.config import FileSinkConfig
from gateway.sinks.file.sink import FileSink
from gateway.sinks.spooled import SpooledSink
from gateway.sources.mqtt.source import Delivery, MqttSource
from gateway.spool import DAMAGE_KINDS, Spool
from gateway.spool.spool import SpoolError
from gateway.telemetry_http import serve_http
from gateway.transforms.aggregate import Aggregator
from gateway.transforms.pseudonymize import KeyRing

log = logging.getLogger("gateway.service")


# A reload may not drop a product that received messages within this window.
TRAFFIC_WINDOW_S = 600.0
TRAFFIC_SNAPSHOT_S = 30.0
# With several workers, worker 0 emits a window's statistics this long after its end: the
# other workers' last observations of it are durable by then (they sync every batch).
AGGREGATE_GRACE_S = 5.0


def master_key(state: Path, config: GatewayConfig, new_key: bool) -> bytes:
    try:
        return load_master(state, config.keys, new_key=new_key)
    except OSError as exc:
        raise StartupError(f"state_dir: {state}: {exc.strerror}") from None


def make_sink(spec: SinkSpec, region: str, worker: int | None) -> Sink:
    if spec.type == "file" and spec.file is not None:
        if worker is None:
            return FileSink(spec.file, region)
        # Several processes never append to one file: each worker has its own tree.
        return FileSink(FileSinkConfig(f"{spec.file.dir}/worker-{worker}", spec.file.fsync), region)
    if spec.type == "mqtt" and spec.mqtt is not None:
        from gateway.sinks.mqtt.sink import MqttSink

        return MqttSink(spec.mqtt, region)
    if spec.type == "nats" and spec.nats is not None:
        from gateway.sinks.nats.sink import NatsSink

        return NatsSink(spec.nats, region)
    raise ValueError(f"sink {spec.type} has no settings")


class Gateway:
    """One worker: a source, an engine, one spooled sink per region, a metrics endpoint."""

    def __init__(
        self,
        config: GatewayConfig,
        worker: int = 0,
        shadow: bool | None = None,
        *,
        one_of_many: bool = False,
        new_key: bool = False,
    ) -> None:
        self.config = config
        self.worker = worker
        self.one_of_many = one_of_many
        self.shadow = config.shadow if shadow is None else shadow
        state = Path(config.state_dir)
        self.state = state / f"worker-{worker}"
        self.events = Events()
        # Before anything is created: state without a key is how a lost key is recognised.
        master = master_key(state, config, new_key)
        try:
            self.state.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StartupError(f"state_dir: {self.state}: {exc.strerror}") from None
        self.keys = KeyRing(master, config.keys.epoch)
        self.policy_dir = Path(config.policies) if config.policies else DEFAULT_DIR
        self.consent = ConsentStore(self.state / "consent.db", self.keys.derive("consent-store"))
        registry = load_registry(Path(config.routing.registry)) if config.routing.registry else None
        # Worker 0 emits the statistics of every worker's observations (aggregate.py).
        self.stats = Aggregator(
            self.keys.derive("aggregate"),
            self.state / "aggregate.log",
            shared=state,
            emits=worker == 0,
            grace_s=AGGREGATE_GRACE_S if one_of_many else 0.0,
        )
        self.engine = Engine(
            load_dir(self.policy_dir),
            self.keys,
            Router(config.routing.default_region, registry),
            events=self.events,
            consent=self.consent,
            limits=config.limits,
            topics=TopicScheme(config.source.topic_pattern),
            stats=self.stats,
        )
        broker = f"{config.source.host}:{config.source.port}"
        self._count_regions()
        self.source = MqttSource(
            config.source,
            worker,
            functools.partial(self.events.source_connection, broker=broker),
            self.events.broker_stat,
        )
        self.events.watch_inflight(lambda: self.source.unacked, config.source.receive_maximum)
        self.events.watch_spools(self._spool_depths)
        self.feed = ConsentFeed(config.source, worker)
        self._stop = threading.Event()
        self._flight: InFlight | None = None  # the worker's batch whose writes have begun
        self.sinks: dict[str, SpooledSink] = {}
        # Enforced records no sink may receive (yet): encrypted, bounded, erasable.
        self.held = HeldStore(self.state / "held", self.keys.derive("held"), config.held.max_bytes)
        self.consent_stage = ConsentStage(
            self.feed,
            self.consent,
            policies=self,
            topics=self.engine.topics,
            events=self.events,
            erase=Erasure(
                products=lambda: self.engine.products,
                old_keys=[KeyRing(master, e) for e in range(1, config.keys.epoch)],
                held=self.held,
                sink=self.sink,
                worker=worker,
                events=self.events,
                before=self._settle_flight,
            ),
            stop=self._stop,
            retry_s=config.spool.retry_s,
        )
        self.batches = Batches(
            engine=self.engine,
            events=self.events,
            sink=self.sink,
            held=self.held,
            stats=self.stats,
            ack=self.source.ack_all,
            stop=self._stop,
            retry_s=config.spool.retry_s,
            shadow=self.shadow,
        )
        self._reload = threading.Event()
        self._traffic: deque[tuple[float, dict[str, int]]] = deque([(time.monotonic(), {})])
        self._next_expiry = 0.0  # monotonic; the first check runs at start
        self._stopped = False
        self.worker_thread: threading.Thread | None = None
        self._http: Callable[[], None] | None = None

    # -- sinks ------------------------------------------------------------------------------

    def sink(self, region: str) -> SpooledSink | None:
        s = self.sinks.get(region)
        if s is None:
            spec = self.config.sink_for(region)
            if spec is None:
                return None
            name = f"{spec.type}-{region}"
            self.events.spool_opened(spec.type, region, DAMAGE_KINDS)
            spool = Spool(
                self.state / "spool" / name,
                self.keys.derive(f"spool/{name}"),
                self.config.spool.max_bytes,
                self.config.spool.segment_bytes,
                on_damage=functools.partial(self.events.spool_damage, spec.type, region),
            )
            sink = make_sink(spec, region, self.worker if self.one_of_many else None)
            s = SpooledSink(sink, spool, self.config.spool.retry_s, observer=self.events)
            s.open()
            self.sinks[region] = s
        return s

    def _spool_depths(self) -> list[tuple[str, str, int, int]]:
        return [
            (s.name, s.region, s.spool.records, s.spool.disk_bytes)
            for s in list(self.sinks.values())
        ]

    # -- the loop ---------------------------------------------------------------------------

    def _take(self) -> list[Delivery]:
        """The next batch: wait for one message, then up to batch_wait_ms for more."""
        q = self.source.queue
        try:
            batch = [q.get(timeout=0.2)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.config.processing.batch_wait_ms / 1000
        while len(batch) < self.config.processing.batch_max:
            left = deadline - time.monotonic()
            try:
                batch.append(q.get(timeout=left) if left > 0 else q.get_nowait())
            except queue.Empty:
                break
        return batch

    def toggles(self, product: str) -> frozenset[str] | None:
        p = self.engine.products.get(product)
        return None if p is None else frozenset(t.name for t in p.loaded.policy.toggles)

    # -- retention --------------------------------------------------------------------------

    def retention_days(self, product: str, kind: str) -> int | None:
        p = self.engine.products.get(product)
        days = p.loaded.policy.retention(kind) if p is not None else None
        return days if days is not None else (self.config.retention.default_days or None)

    def expire(self, now: float | None = None) -> None:
        """Remove what the gateway stores itself once older than its retention."""
        self._settle_flight()
        now = time.time() if now is None else now
        old = expired(self.retention_days, now)
        try:
            self.events.records_expired("held", "-", self.held.drop(old))
            for region, s in sorted(self.sinks.items()):
                self.events.records_expired("spool", region, s.drop_where(old))
                if isinstance(s.sink, FileSink):
                    self.events.records_expired(
                        "file", region, s.sink.expire(now, self.retention_days)
                    )
        except (SinkError, SpoolError) as exc:  # tried again at the next check
            self.events.expiry_failed(type(exc).__name__)

    def _open_stored_sinks(self) -> None:
        spools = self.state / "spool"
        for d in sorted(spools.iterdir()) if spools.is_dir() else ():
            kind, _, region = d.name.partition("-")
            spec = self.config.sink_for(region)
            if spec is not None and spec.type == kind:
                self.sink(region)
        for region in sorted(REGIONS):
            spec = self.config.sink_for(region)
            if spec is None or spec.file is None:
                continue
            root = Path(spec.file.dir) / (f"worker-{self.worker}" if self.one_of_many else "")
            if (root / region).is_dir():
                self.sink(region)

    def process(self, batch: list[Delivery]) -> None:
        """One batch, start to end: enforced, durable, acknowledged."""
        self.batches.settle(self.batches.begin(self.batches.prepare(batch)))

    def emit_stats(self) -> None:
        """Statistics of closed `aggregate` windows, to the sink of their region."""
        due = self.engine.stats_due(time.time())
        if due:
            self._settle_flight()
            self.batches.emit_stats(due)

    def _loop(self) -> None:
        # One batch in flight: while its sink writes wait for their acknowledgements, the
        # next batch is enforced. Settled before anything else touches the sinks or the
        # held store (erasure, expiry, statistics: see _settle_flight) and whenever no
        # message waits, so its acks are never held back.
        try:
            while not self._stop.is_set():
                self._note_traffic()
                if self.source.queue.empty():
                    self._settle_flight()
                if self._reload.is_set():
                    self._reload.clear()
                    self.reload()
                self.consent_stage.step()
                if time.monotonic() >= self._next_expiry:
                    self._next_expiry = time.monotonic() + self.config.retention.check_interval_s
                    self.expire()
                if not self.consent_stage.synced:
                    # Consent unknown where it could be withdrawn: no data until it is known.
                    self._stop.wait(0.02)
                    continue
                self.emit_stats()
                batch = self._take()
                if not batch:
                    continue
                prepared = self.batches.prepare(batch)
                self._settle_flight()
                self._flight = self.batches.begin(prepared)
        except (Stopping, SinkError):
            return  # stopping while a write is refused: the broker keeps the messages
        except Exception:
            # Nothing of the batch in hand was acknowledged: the broker redelivers it to the
            # restarted process (run_worker exits non-zero when this thread ends).
            log.exception("worker failed; exiting without acknowledging the batch")
        finally:
            flight, self._flight = self._flight, None
            if flight is not None:
                for p in flight.pending:
                    if p is not None:
                        p.abandon()

    def _settle_flight(self) -> None:
        """Finish the batch in flight. Its writes hold their sinks' order locks, so the
        worker settles it before it erases, expires or writes anything else itself (the
        erasure must also see every record written). Other threads leave it alone."""
        if self._flight is not None and threading.current_thread() is self.worker_thread:
            flight, self._flight = self._flight, None
            self.batches.settle(flight)

    def _count_regions(self) -> None:
        self.events.policy_regions({p: len(c.regions) for p, c in self.engine.products.items()})

    def reload(self) -> None:
        try:
            policies = load_dir(self.policy_dir)
        except PolicyError as exc:  # includes PlanError: keep the running policies
            self.events.policy_reload(False, str(exc))
            return
        # A product that vanished while its devices still send is far more likely a policy
        # directory caught half-synced than a decommissioning: its messages would all be
        # rejected as unknown_product, and acknowledged.
        busy = sorted((set(self.engine.products) - set(policies)) & self._receiving())
        if busy:
            self.events.policy_reload(
                False,
                f"it would drop {', '.join(busy)}, which received messages in the last "
                f"{TRAFFIC_WINDOW_S / 60:.0f} minutes (a policy directory not fully synced?); "
                "remove a product once its devices are silent",
            )
            return
        try:
            self.engine.reload(policies)
        except PolicyError as exc:
            self.events.policy_reload(False, str(exc))
            return
        self._count_regions()
        self.events.policy_reload(True)

    def _received_by_product(self) -> dict[str, int]:
        totals: defaultdict[str, int] = defaultdict(int)
        for (product, _kind), n in list(self.events.received.items()):
            totals[product] += n
        return totals

    def _note_traffic(self) -> None:
        """A snapshot of the per-product receive counts every TRAFFIC_SNAPSHOT_S, the
        oldest kept TRAFFIC_WINDOW_S old: what `_receiving` compares against."""
        now = time.monotonic()
        if now - self._traffic[-1][0] < TRAFFIC_SNAPSHOT_S:
            return
        self._traffic.append((now, self._received_by_product()))
        while len(self._traffic) > 1 and self._traffic[1][0] <= now - TRAFFIC_WINDOW_S:
            self._traffic.popleft()

    def _receiving(self) -> set[str]:
        """Products with messages in the last TRAFFIC_WINDOW_S (a little more, at most)."""
        then = self._traffic[0][1]
        return {p for p, n in self._received_by_product().items() if n > then.get(p, 0)}

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        host, _, port = self.config.metrics_listen.rpartition(":")
        listen = f"{host}:{int(port) + self.worker}"
        try:
            self._http = serve_http(host, int(port) + self.worker, self)
        except OSError as exc:
            raise StartupError(f"metrics_listen: {listen}: {exc.strerror}") from None
        # Records spooled by an earlier run drain now, and its files expire, not when the
        # region next gets traffic.
        self._open_stored_sinks()
        self.feed.start()
        self.source.start()
        self.worker_thread = threading.Thread(target=self._loop, name="gateway-worker")
        self.worker_thread.start()

    def healthy(self) -> bool:
        return self.worker_thread is not None and self.worker_thread.is_alive()

    def is_ready(self) -> bool:
        return self.healthy() and self.source.connected.is_set() and self.consent_stage.synced

    def request_reload(self) -> None:
        self._reload.set()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()
        if self.worker_thread is not None:
            self.worker_thread.join(timeout=30)
        self.source.stop()
        self.feed.stop()
        self.consent.close()
        for s in self.sinks.values():
            s.close()
        self.held.close()
        if self._http is not None:
            self._http()
