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
from collections.abc import Callable, Sequence
from pathlib import Path

from gateway.config import GatewayConfig, SinkSpec, StartupError
from gateway.consent.feed import ConsentFeed
from gateway.consent.stage import ConsentStage, Stopping
from gateway.consent.store import ConsentStore
from gateway.engine import Engine
from gateway.envelope import Held, Record, encode
from gateway.held import HeldStore
from gateway.internal_events import Events
from gateway.keys import load_master
from gateway.policy.loader import DEFAULT_DIR, PolicyError, load_dir
from gateway.policy.model import REGIONS
from gateway.retention import expired
from gateway.route.router import Router, load_registry
from gateway.route.topics import TopicScheme
from gateway.sinks.base import OutRecord, Sink, SinkError
from gateway.sinks.file.config import FileSinkConfig
from gateway.sinks.file.sink import FileSink
from gateway.sinks.spooled import SpooledSink
from gateway.sources.mqtt.source import Delivery, MqttSource
from gateway.spool import DAMAGE_KINDS, Spool
from gateway.spool.spool import SpoolError
from gateway.telemetry_http import serve_http
from gateway.transforms.aggregate import Aggregator, encode_stats
from gateway.transforms.pseudonymize import KeyRing

log = logging.getLogger("gateway.service")

# A reload may not drop a product that received messages within this window.
TRAFFIC_WINDOW_S = 600.0
TRAFFIC_SNAPSHOT_S = 30.0


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
        # Records of earlier epochs carry other pseudonyms: erasure covers those too.
        self._old_keys = [KeyRing(master, e) for e in range(1, config.keys.epoch)]
        self.policy_dir = Path(config.policies) if config.policies else DEFAULT_DIR
        self.consent = ConsentStore(self.state / "consent.db", self.keys.derive("consent-store"))
        registry = load_registry(Path(config.routing.registry)) if config.routing.registry else None
        self.stats = Aggregator(self.keys.derive("aggregate"), self.state / "aggregate.log")
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
        self.consent_stage = ConsentStage(
            self.feed,
            self.consent,
            policies=self,
            topics=self.engine.topics,
            events=self.events,
            erase=self._erase,
            stop=self._stop,
            retry_s=config.spool.retry_s,
        )
        self.sinks: dict[str, SpooledSink] = {}
        # Enforced records no sink may receive (yet): encrypted, bounded, erasable.
        self.held = HeldStore(self.state / "held", self.keys.derive("held"), config.held.max_bytes)
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

    def _until_durable(self, sink: SpooledSink, n: int, op: Callable[[], None]) -> None:
        """Retry `op` until the sink or its spool has it durably. Back-pressure, not loss:
        while both refuse, nothing is acknowledged and the broker's in-flight window fills.
        Each retry is an attempt the SpooledSink counts and logs (rate-limited)."""
        while True:
            try:
                op()
                return
            except SinkError:
                if self._stop.wait(self.config.spool.retry_s):
                    self.events.records_failed(sink.name, sink.region, n)
                    raise

    def _commit(self, sink: SpooledSink, batch: Sequence[OutRecord]) -> None:
        """`_until_durable` for records: a retry offers only what the sink has not
        acknowledged yet (SinkError.delivered)."""
        t0 = time.monotonic()
        rest = batch
        while True:
            try:
                spooled = sink.write(rest)
                break
            except SinkError as exc:
                rest = rest[exc.delivered :]
                if self._stop.wait(self.config.spool.retry_s):
                    self.events.records_failed(sink.name, sink.region, len(rest))
                    raise
        if spooled:
            self.events.records_spooled(sink.name, sink.region, spooled)
        if spooled < len(batch):
            self.events.sink_committed(
                sink.name, sink.region, len(batch) - spooled, time.monotonic() - t0
            )

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

    def _erase(self, devices: list[tuple[str, str]], requested: float) -> None:
        """Everything of these devices' pseudonyms (every key epoch) this worker owns, one
        pass per store; remote sinks from worker 0 only (every worker sees every
        withdrawal)."""
        by_region: dict[str, list[tuple[str, str]]] = defaultdict(list)
        pseudonyms: set[str] = set()
        for product, device in devices:
            p = self.engine.products.get(product)
            if p is None:
                continue
            keys = [p.pseudo, *(old.for_product(product) for old in self._old_keys)]
            for ps in keys:
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

    # -- retention --------------------------------------------------------------------------

    def retention_days(self, product: str, kind: str) -> int | None:
        p = self.engine.products.get(product)
        days = p.loaded.policy.retention(kind) if p is not None else None
        return days if days is not None else (self.config.retention.default_days or None)

    def expire(self, now: float | None = None) -> None:
        """Remove what the gateway stores itself once older than its retention."""
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

    def _open_file_sinks(self) -> None:
        """File sinks written by an earlier run expire even before their region has traffic."""
        for region in sorted(REGIONS):
            spec = self.config.sink_for(region)
            if spec is None or spec.file is None or region in self.sinks:
                continue
            root = Path(spec.file.dir)
            if self.one_of_many:
                root = root / f"worker-{self.worker}"
            if (root / region).is_dir():
                self.sink(region)

    def process(self, batch: list[Delivery]) -> None:
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
                by_region[out.region].append(
                    OutRecord(out.id, out.product, out.kind, out.region, encode(out), out.device)
                )
            elif isinstance(out, Held):
                rec = out.record
                if not self.engine.products[rec.product].regions:
                    # A policy that names no region: no sink may ever receive it, so it is
                    # not kept either.
                    self.events.held_dropped(rec.product, rec.kind)
                elif not self.shadow:
                    held.append(
                        OutRecord(
                            rec.id, rec.product, rec.kind, rec.region, encode(rec), rec.device
                        )
                    )
        for region, records in by_region.items():
            sink = self.sink(region)
            if sink is None:  # no sink configured for a region the policy allows: hold
                for r in records:
                    held.append(r)
                    self.events.message_outcome(r.product, r.kind, "held")
                continue
            self._commit(sink, records)
            for r in records:
                self.events.record_forwarded(r.product, r.kind, region)
        if held:
            self._hold(held)
        self.stats.sync()  # what the batch added to open statistics windows, before its acks
        self.source.ack_all(batch)

    def emit_stats(self) -> None:
        """Statistics of closed `aggregate` windows, to the sink of their region."""
        due = self.engine.stats_due(time.time())
        if not due:
            return
        if not self.shadow:
            for s in due:
                sink = self.sink(s.region)
                if sink is not None:
                    rec = OutRecord(s.id, s.product, s.kind, s.region, encode_stats(s))
                    self._commit(sink, [rec])
                self.events.stats_emitted(s.product, s.region, sink is not None)
        self.stats.emitted(due)

    def _hold(self, records: list[OutRecord]) -> None:
        """Like a sink commit: a full disk waits and retries, it never ends the worker."""
        while True:
            try:
                self.held.write(records)
                self.events.held_depth(self.held.records, self.held.disk_bytes)
                return
            except SpoolError as exc:  # full (bound or disk): nothing acknowledged meanwhile
                self.events.held_write_failed(type(exc).__name__)
                if self._stop.wait(self.config.spool.retry_s):
                    raise SinkError("stopping while the held store refuses") from None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._note_traffic()
            if self._reload.is_set():
                self._reload.clear()
                self.reload()
            try:
                self.consent_stage.step()
            except Stopping:
                return
            if time.monotonic() >= self._next_expiry:
                self._next_expiry = time.monotonic() + self.config.retention.check_interval_s
                self.expire()
            if not self.consent_stage.synced:
                # Consent unknown where it could be withdrawn: no data until it is known.
                self._stop.wait(0.02)
                continue
            batch = self._take()
            try:
                self.emit_stats()
                if not batch:
                    continue
                self.process(batch)
            except SinkError:
                return  # stopping while a sink refuses: the broker keeps the messages
            except Exception:
                # Nothing of this batch was acknowledged: the broker redelivers it to the
                # restarted process (run_worker exits non-zero when this thread ends).
                log.exception("worker failed; exiting without acknowledging the batch")
                return

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
        # Records spooled by an earlier run drain now, not when the region next gets traffic.
        spools = self.state / "spool"
        if spools.is_dir():
            for d in sorted(spools.iterdir()):
                kind, _, region = d.name.partition("-")
                spec = self.config.sink_for(region)
                if spec is not None and spec.type == kind:
                    self.sink(region)
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
