"""`gateway run`: MQTT in, policy enforced, records out to the sink of their region.

At-least-once: a message is acknowledged to the broker only after the sink of its region
(or, while that sink is down, the encrypted local spool) has durably committed its record,
after it was rejected and counted, or after it was held. A kill -9 at any moment leaves every
unacknowledged message with the broker's persistent session, which redelivers it.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from gateway import signals
from gateway.config import ConfigError, GatewayConfig, SinkSpec, StartupError, load_config
from gateway.consent.state import ConsentError, ConsentStore, parse_consent
from gateway.engine import Engine
from gateway.envelope import Held, Record, encode
from gateway.internal_events import UNKNOWN, Events
from gateway.policy.loader import DEFAULT_DIR, PolicyError, load_dir
from gateway.route.router import Router, load_registry
from gateway.route.topics import TopicScheme
from gateway.sinks.base import OutRecord, Sink, SinkError
from gateway.sinks.file.config import FileSinkConfig
from gateway.sinks.file.sink import FileSink
from gateway.sinks.spooled import SpooledSink
from gateway.sources.mqtt.source import Delivery, MqttSource
from gateway.spool import DAMAGE_KINDS, Spool
from gateway.telemetry_http import serve_http
from gateway.transforms.aggregate import Aggregator, encode_stats
from gateway.transforms.pseudonymize import (
    MASTER_KEY_ENV,
    KeyError_,
    KeyRing,
    load_or_create_master,
)
from gateway.validate import preflight

log = logging.getLogger("gateway.service")

# A reload may not drop a product that received messages within this window.
TRAFFIC_WINDOW_S = 600.0
TRAFFIC_SNAPSHOT_S = 30.0


def _master_key(path: Path) -> bytes:
    try:
        return load_or_create_master(path)
    except KeyError_ as exc:
        # Say where the bad key came from: the environment wins over the file.
        where = f"${MASTER_KEY_ENV}" if os.environ.get(MASTER_KEY_ENV) else str(path)
        raise KeyError_(f"{where}: {exc}") from None
    except OSError as exc:
        raise StartupError(f"state_dir: {path}: {exc.strerror}") from None


def _make_sink(spec: SinkSpec, region: str, worker: int | None) -> Sink:
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
    ) -> None:
        self.config = config
        self.worker = worker
        self.one_of_many = one_of_many
        self.shadow = config.shadow if shadow is None else shadow
        state = Path(config.state_dir)
        self.state = state / f"worker-{worker}"
        try:
            self.state.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StartupError(f"state_dir: {self.state}: {exc.strerror}") from None
        self.events = Events()
        self.keys = KeyRing(_master_key(state / "master.key"))
        self.policy_dir = Path(config.policies) if config.policies else DEFAULT_DIR
        self.consent = ConsentStore(self.state / "consent.json")
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
        self.sinks: dict[str, SpooledSink] = {}
        # <state>/worker-N/held/records.jsonl: enforced records no region may receive.
        self.held: Sink = FileSink(FileSinkConfig(dir=str(self.state)), "held")
        self._reload = threading.Event()
        self._traffic: deque[tuple[float, dict[str, int]]] = deque([(time.monotonic(), {})])
        self._stop = threading.Event()
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
            sink = _make_sink(spec, region, self.worker if self.one_of_many else None)
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

    def _consent(self, d: Delivery, product: str, device: str) -> None:
        p = self.engine.products.get(product)
        if p is None:
            self.events.message_rejected(UNKNOWN, "consent", "unknown_product", None)
            return
        toggles = frozenset(t.name for t in p.loaded.policy.toggles)
        try:
            state = parse_consent(d.payload, toggles)
        except ConsentError:
            self.events.message_rejected(product, "consent", "invalid_consent", None)
            return
        prev = self.consent.get(product, device)
        if state.withdrawn and not (prev and prev.withdrawn):
            self.events.consent_withdrawn(product)
            if self.worker == 0:  # every worker sees consent; one sends the erasure
                # Erasure before the state is stored: a crash in between redelivers the
                # withdrawal, which then still finds the device not yet withdrawn.
                pseudonym = p.pseudo.pseudonym("device.id", device)
                requested = time.time()
                for region in sorted(p.regions):
                    sink = self.sink(region)
                    if sink is not None:
                        erase = functools.partial(sink.erase, product, pseudonym, requested)
                        self._until_durable(sink, 1, erase)
                        self.events.erasure_sent(sink.name, region)
        self.consent.set(product, device, state)

    def process(self, batch: list[Delivery]) -> None:
        by_region: dict[str, list[OutRecord]] = defaultdict(list)
        held: list[OutRecord] = []
        now = time.time()
        for d in batch:
            parsed = self.engine.topics.parse(d.topic)
            if parsed is not None and parsed.kind == "consent":
                self._consent(d, parsed.product, parsed.device)
                continue
            out = self.engine.process(d.topic, d.payload, now)
            if isinstance(out, Record):
                if self.shadow:
                    self.events.message_outcome(out.product, out.kind, "shadowed")
                    continue
                by_region[out.region].append(
                    OutRecord(out.id, out.product, out.kind, out.region, encode(out))
                )
            elif isinstance(out, Held):
                rec = out.record
                if not self.shadow:
                    held.append(OutRecord(rec.id, rec.product, rec.kind, "held", encode(rec)))
        for region, records in by_region.items():
            sink = self.sink(region)
            if sink is None:  # no sink configured for a region the policy allows: hold
                for r in records:
                    held.append(OutRecord(r.msg_id, r.product, r.kind, "held", r.body))
                    self.events.message_outcome(r.product, r.kind, "held")
                continue
            self._commit(sink, records)
            for r in records:
                self.events.record_forwarded(r.product, r.kind, region)
        if held:
            self.held.write(held)
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

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._note_traffic()
            if self._reload.is_set():
                self._reload.clear()
                self.reload()
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
        self.held.open()
        # Records spooled by an earlier run drain now, not when the region next gets traffic.
        spools = self.state / "spool"
        if spools.is_dir():
            for d in sorted(spools.iterdir()):
                kind, _, region = d.name.partition("-")
                spec = self.config.sink_for(region)
                if spec is not None and spec.type == kind:
                    self.sink(region)
        self.source.start()
        self.worker_thread = threading.Thread(target=self._loop, name="gateway-worker")
        self.worker_thread.start()

    def healthy(self) -> bool:
        return self.worker_thread is not None and self.worker_thread.is_alive()

    def is_ready(self) -> bool:
        return self.healthy() and self.source.connected.is_set()

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
        for s in self.sinks.values():
            s.close()
        self.held.close()
        if self._http is not None:
            self._http()


def run_worker(config: GatewayConfig, worker: int, shadow: bool, one_of_many: bool) -> int:
    # Normally installed by the entry point already, before any heavy import.
    signals.install()
    gw = Gateway(config, worker, shadow, one_of_many=one_of_many)
    gw.start()
    log.info(
        "gateway worker %d running%s: %d policies, metrics on %s (+%d)",
        worker,
        " in shadow mode" if gw.shadow else "",
        len(gw.engine.products),
        config.metrics_listen,
        worker,
    )
    while not signals.STOP.wait(0.1):
        if signals.RELOAD.is_set():
            signals.RELOAD.clear()
            gw.request_reload()
        if not gw.healthy():
            log.error("worker thread ended; exiting so the supervisor restarts us")
            gw.stop()
            return 1
    gw.stop()
    return 0


def run_from_config(
    path: Path | None, workers: int | None, shadow: bool, worker_index: int | None = None
) -> int:
    config = load_config(path)
    problems = [p for p in preflight(config, path) if p.level == "error"]
    if problems:
        raise StartupError("\n".join(f"{p}" for p in problems))
    n = workers or config.workers
    shadow = shadow or config.shadow
    if n > 1 and not config.source.shared:
        # Workers split the load through a shared subscription, which mosquitto 2.0 does
        # not restore after a restart: the operator has to choose that knowingly.
        raise ConfigError(
            f"{n} workers split the load through a shared subscription: set shared = true "
            "under [source] (see gateway/sources/mqtt/README.md, broker restarts)"
        )
    if worker_index is not None or n == 1:
        return run_worker(config, worker_index or 0, shadow, one_of_many=worker_index is not None)
    # Several processes, one per core: each joins the same shared subscription group.
    _master_key(Path(config.state_dir) / "master.key")
    cmd = [sys.executable, "-m", "gateway", "run"]
    if path is not None:
        cmd += ["--config", str(path)]
    if shadow:
        cmd.append("--shadow")
    children = [
        subprocess.Popen([*cmd, "--worker-index", str(i)], env=os.environ.copy()) for i in range(n)
    ]

    def forward(signum: int, frame: FrameType | None) -> None:
        for c in children:
            if c.poll() is None:
                c.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    if signals.STOP.is_set():  # asked to stop while starting up
        forward(signal.SIGTERM, None)
    codes = [c.wait() for c in children]
    return max(codes)
