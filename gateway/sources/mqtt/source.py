"""MQTT v5 source: persistent session, QoS1, acknowledgement after commit, bounded window.

The data connection runs on the process's network loop (gateway/mqtt): packets are parsed
by the `mqtt5` codec, a worker's whole batch of PUBACKs goes out in one write, and nothing
crosses threads per message but the delivery queue. paho-mqtt, which cost about 80 us of
CPU per relayed message on this path (bench/RESULTS.md), is kept for the `$SYS` counters
only.

Subscriptions: one plain persistent subscription per data kind by default, which mosquitto
keeps (and restores from its persistence) while the gateway is away, so nothing a device
published is ever without a subscriber. `shared = true` subscribes through
`$share/<group>/...` instead, for replicas that split the load; see README.md for what that
costs across broker restarts and stopped replicas.

The in-flight window is enforced here, not trusted to the broker. mosquitto 2.0 does not
keep to the MQTT v5 Receive Maximum (each PUBACK lets it send up to another window's
worth), so once `receive_maximum` delivered messages are unfinished the connection parses
no further and stops reading the socket: TCP back-pressure, never an unbounded local queue.
It still writes (acknowledgements, keepalive) meanwhile.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from mqtt5 import (
    ConnAckPacket,
    ConnectPacket,
    PubAckPacket,
    PublishPacket,
    QoS,
    SubscribePacket,
    TopicFilter,
    UnsubscribePacket,
)
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.mqtt import ConnectError, Connection, connect, network_loop, tls_context
from gateway.route.topics import TopicScheme
from gateway.sources.mqtt.config import MqttSourceConfig

KINDS = ("info", "props", "event", "command")

# Reconnect back-off: the first retry almost at once (a restarting broker is back within a
# fraction of a second, and in shared mode every moment without a subscription loses
# messages), doubling up to the cap.
FIRST_RETRY_S = 0.05
MAX_RETRY_S = 5.0
STABLE_S = 1.0  # a connection that lasted this long resets the back-off
CONNECT_TIMEOUT_S = 10.0  # TCP + TLS + CONNACK
STOP_FLUSH_S = 2.0  # how long stop() lets the DISCONNECT packet go out

# Broker counters mosquitto publishes under $SYS (every `sys_interval`, retained), exported
# as gateway_broker_* metrics: what the broker dropped or holds is otherwise invisible.
BROKER_STATS = {
    "$SYS/broker/publish/messages/dropped": "messages_dropped",
    "$SYS/broker/store/messages/count": "stored_messages",
    "$SYS/broker/store/messages/bytes": "stored_bytes",
    "$SYS/broker/clients/expired": "sessions_expired",
}


class Delivery(NamedTuple):
    topic: str
    payload: bytes
    mid: int
    qos: int
    session: int = 0  # which connection it came on: its ack is only valid there


def _password(config: MqttSourceConfig) -> str | None:
    """The password from the environment variable the config names (never from the file)."""
    return os.environ.get(config.password_env) if config.password_env else None


def new_client(config: MqttSourceConfig, client_id: str, *, manual_ack: bool) -> mqtt.Client:
    """A paho MQTT v5 client for the source broker, with its credentials and TLS, for the
    connections off the hot path (`$SYS`, consent); the data connection is `MqttSource`'s."""
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
        manual_ack=manual_ack,
    )
    if config.username is not None:
        c.username_pw_set(config.username, _password(config))
    if config.tls is not None:
        c.tls_set(
            ca_certs=config.tls.ca,
            certfile=config.tls.cert,
            keyfile=config.tls.key,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    return c


class MqttSource:
    def __init__(
        self,
        config: MqttSourceConfig,
        worker: int = 0,
        on_connection: Callable[[bool, str], None] | None = None,
        on_broker_stat: Callable[[str, float], None] | None = None,
        *,
        shared: bool | None = None,
    ) -> None:
        self.config = config
        self.shared = config.shared if shared is None else shared
        self.topics = TopicScheme(config.topic_pattern)
        # C-implemented, no Condition per put: the hand-off costs a fraction of queue.Queue.
        # Bounded by the window: the connection parses nothing further while it is full.
        self.queue: queue.SimpleQueue[Delivery] = queue.SimpleQueue()
        self.window = config.receive_maximum
        self.connected = threading.Event()
        self._received = 0  # deliveries put on the queue (network loop only)
        self._finished = 0  # deliveries acknowledged or finished (worker thread only)
        self._session = 0  # connection count: an ack goes only to the connection it came on
        self._conn: Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: concurrent.futures.Future[None] | None = None
        self._stop: asyncio.Event | None = None
        self._on_connection = on_connection
        self._on_broker_stat = on_broker_stat
        self.client_id = f"{config.client_id or 'privacy-gateway-' + socket.gethostname()}-{worker}"
        # The broker's $SYS counters come over a connection of their own (QoS 0, no
        # session, paho: not on the hot path): the data connection stops reading while its
        # window is full, which is exactly when the broker's queue and drop counts matter.
        self._stats: mqtt.Client | None = None
        if on_broker_stat is not None:
            self._stats = new_client(self.config, f"{self.client_id}-sys", manual_ack=False)
            self._stats.on_connect = self._stats_connected
            self._stats.on_message = self._stats_message
            self._stats.reconnect_delay_set(1, 30)

    # Filters: the data kinds (through the shared group only when replicas split the load).
    # Consent has a connection of its own (gateway/consent/feed.py).
    def data_filters(self, shared: bool | None = None) -> list[str]:
        if shared is None:
            shared = self.shared
        share = f"$share/{self.config.group}/" if shared else ""
        return [share + self.topics.subscription(k) for k in KINDS]

    @property
    def unacked(self) -> int:
        """Messages received from the broker and not yet acknowledged (or finished)."""
        return self._received - self._finished

    @property
    def tls_version(self) -> str | None:
        """The TLS version of the data connection ("TLSv1.3"), None when plain or down."""
        conn = self._conn
        if conn is None or conn.transport is None:
            return None
        obj = conn.transport.get_extra_info("ssl_object")
        return obj.version() if isinstance(obj, ssl.SSLObject) else None

    def start(self) -> None:
        # Made here, not in _run: a stop() right after start() may run before _run does.
        self._stop = asyncio.Event()
        self._loop = loop = network_loop()
        self._task = asyncio.run_coroutine_threadsafe(self._run(), loop)
        if self._stats is not None:
            self._stats.connect_async(
                self.config.host, self.config.port, self.config.keepalive_s, clean_start=True
            )
            self._stats.loop_start()

    def stop(self) -> None:
        """Disconnect (the session stays with the broker) and end the connection task."""
        if self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._stopping)
            with contextlib.suppress(concurrent.futures.TimeoutError):
                self._task.result(timeout=STOP_FLUSH_S)
            self._task = None
        if self._stats is not None:
            self._stats.disconnect()
            self._stats.loop_stop()

    def ack(self, d: Delivery) -> None:
        self.ack_all((d,))

    def ack_all(self, batch: Sequence[Delivery]) -> None:
        """Acknowledge a finished batch, in order; QoS 0 deliveries only leave the window.
        One hand-off to the network loop per batch, one write for all its PUBACKs."""
        acks = [(d.mid, d.session) for d in batch if d.qos > 0]
        self._finished += len(batch)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._send_acks, acks)

    # -- the network loop -------------------------------------------------------------------

    def _send_acks(self, acks: list[tuple[int, int]]) -> None:
        conn = self._conn
        if conn is None:
            return
        # An ack of an earlier connection is dropped: the broker redelivers that message,
        # and its packet id may now name another one (a session that had expired).
        data = b"".join(PubAckPacket(mid).write() for mid, s in acks if s == self._session)
        if data:
            conn.write(data)
        if conn.paused and self._received - self._finished < self.window:
            conn.resume()

    def _stopping(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._conn is not None:
            self._conn.close()

    def _publish(self, p: PublishPacket) -> bool:
        self._received += 1
        self.queue.put(Delivery(p.topic, p.payload, p.packet_id or 0, int(p.qos), self._session))
        return self._received - self._finished < self.window

    def _setup(self, conn: Connection) -> None:
        self._session += 1  # before the first PUBLISH of this connection is parsed
        conn.on_publish = self._publish

    def _report(self, up: bool, what: str) -> None:
        if self._on_connection is not None and not (self._stop and self._stop.is_set()):
            self._on_connection(up, what)

    async def _run(self) -> None:
        stop = self._stop
        assert stop is not None  # made by start()
        retry_s = 0.0
        while not stop.is_set():
            up_since = await self._connect_once()
            # After a connection that held, retry at once; one that drops right away (a
            # client id taken over by another process, a broker refusing us) backs off.
            if up_since and time.monotonic() - up_since >= STABLE_S:
                retry_s = 0.0
            if retry_s:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), retry_s)
            retry_s = min(max(retry_s * 2, FIRST_RETRY_S), MAX_RETRY_S)

    async def _connect_once(self) -> float:
        """One connection, from CONNECT to its end; returns when it was accepted (0: never)."""
        cfg = self.config
        password = _password(cfg)
        packet = ConnectPacket(
            self.client_id,
            username=cfg.username,
            password=password.encode() if password is not None else None,
            clean_start=False,
            keep_alive=cfg.keepalive_s,
            session_expiry_interval=cfg.session_expiry_s,
            receive_max=cfg.receive_maximum,
        )
        try:
            tls = None
            if cfg.tls is not None:
                tls = tls_context(cfg.tls.ca, cfg.tls.cert, cfg.tls.key)
            conn, connack = await connect(
                cfg.host, cfg.port, packet, tls=tls, timeout=CONNECT_TIMEOUT_S, setup=self._setup
            )
        except ConnectError as exc:
            self._report(False, f"connect refused: {exc}")
            return 0.0
        except (OSError, TimeoutError, ValueError) as exc:
            # Refused, unreachable, certificate not verified: only visible here.
            self._report(False, f"connect failed: {type(exc).__name__}: {exc}")
            return 0.0
        self._conn = conn
        if self._stop is not None and self._stop.is_set():  # stop() came while connecting
            conn.close()
        up_since = time.monotonic()
        # Connected once the SUBSCRIBE is out, not when its SUBACK is read: behind a full
        # window a resumed session's backlog comes first, and the SUBACK waits behind it.
        subscribed = asyncio.get_running_loop().create_task(self._subscribe(conn, connack))
        if conn.is_open:
            self.connected.set()
            self._report(True, "")
        reason = await conn.closed
        subscribed.cancel()
        was = self.connected.is_set()
        self.connected.clear()
        self._conn = None
        self._report(False, f"disconnected: {reason}" if was else reason)
        return up_since

    async def _subscribe(self, conn: Connection, connack: ConnAckPacket) -> None:
        # Resubscribe at once. A resumed session still has its plain subscriptions; `$share`
        # ones are not restored by mosquitto 2.0 after a broker restart. Consent comes on a
        # connection of its own (gateway/consent/feed.py), synced before data is processed.
        filters = [TopicFilter(f, max_qos=QoS.AT_LEAST_ONCE) for f in self.data_filters()]
        requests: list[SubscribePacket | UnsubscribePacket] = [
            SubscribePacket(conn.packet_id(), filters)
        ]
        if connack.session_present:
            # A session that was in the other mode would receive every message twice; one
            # of an older version also has consent, whose retained replays could overtake
            # newer state from the consent feed.
            old = [*self.data_filters(shared=not self.shared), self.topics.subscription("consent")]
            requests.append(UnsubscribePacket(conn.packet_id(), old))
        try:
            granted = await asyncio.gather(*(conn.request(r) for r in requests))
        except ConnectError:  # the connection ended: the next one subscribes again
            return
        if any(code >= 0x80 for code in granted[0]):
            names = ", ".join(f"{code:#04x}" for code in granted[0])
            conn.abort(f"subscription refused ({names})")

    # -- the $SYS connection (paho's own thread) -------------------------------------------

    def _stats_connected(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        props: Properties | None,
    ) -> None:
        if not reason.is_failure:
            client.subscribe([(t, SubscribeOptions(qos=0)) for t in BROKER_STATS])

    def _stats_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        stat = BROKER_STATS.get(msg.topic)
        if stat is not None and self._on_broker_stat is not None:
            with contextlib.suppress(ValueError):
                self._on_broker_stat(stat, float(msg.payload))
