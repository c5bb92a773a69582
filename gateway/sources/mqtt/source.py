"""MQTT v5 source: persistent session, QoS1, manual acknowledgement, bounded in-flight window.

paho-mqtt relays ~13k msg/s here against ~7k for aiomqtt (bench/RESULTS.md), and its
`manual_ack` lets the gateway acknowledge a message only after its sink committed it.

Subscriptions: one plain persistent subscription per data kind by default, which mosquitto
keeps (and restores from its persistence) while the gateway is away, so nothing a device
published is ever without a subscriber. `shared = true` subscribes through
`$share/<group>/...` instead, for replicas that split the load; see README.md for what that
costs across broker restarts and stopped replicas.

The network loop is ours (paho's `loop_read`/`loop_write`/`loop_misc` on our own `select`),
not `loop_start()`: the in-flight window is enforced here, not trusted to the broker.
mosquitto 2.0 does not keep to the MQTT v5 Receive Maximum (each PUBACK lets it send up to
another window's worth), so while `receive_maximum` delivered messages are unfinished the
loop stops reading the socket: TCP back-pressure, never an unbounded local queue. It still
writes (acknowledgements, keepalive) meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.route.topics import TopicScheme
from gateway.sources.mqtt.config import MqttSourceConfig

KINDS = ("info", "props", "event", "command")

# Reconnect back-off: the first retry almost at once (a restarting broker is back within a
# fraction of a second, and in shared mode every moment without a subscription loses
# messages), doubling up to the cap.
FIRST_RETRY_S = 0.05
MAX_RETRY_S = 5.0
STABLE_S = 1.0  # a connection that lasted this long resets the back-off
SELECT_S = 1.0  # longest wait in select: keepalive and stop are checked at least this often
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


def new_client(config: MqttSourceConfig, client_id: str, *, manual_ack: bool) -> mqtt.Client:
    """A paho MQTT v5 client for the source broker, with its credentials and TLS: every
    connection the gateway makes to the local broker (data, `$SYS`, consent) starts here."""
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
        manual_ack=manual_ack,
    )
    if config.username is not None:
        password = os.environ.get(config.password_env) if config.password_env else None
        c.username_pw_set(config.username, password)
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
        # Bounded by the network loop, which reads nothing while the window is full.
        self.queue: queue.SimpleQueue[Delivery] = queue.SimpleQueue()
        self.window = config.receive_maximum
        self.connected = threading.Event()
        self._received = 0  # deliveries put on the queue (network thread only)
        self._finished = 0  # deliveries acknowledged or finished (worker thread only)
        self._paused = False  # the loop waits for the window to drain
        self._stopping = False
        self._stop_deadline = 0.0
        self._retry_s = 0.0  # wait before the next connect attempt
        self._up_since = 0.0  # when the current connection was accepted (0: none)
        # Held around reconnect() and every ack: paho empties its output queue in
        # reconnect(), and a PUBACK slipped in before the new CONNECT would be a protocol
        # violation.
        self._net_lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread: threading.Thread | None = None
        self._on_connection = on_connection
        self._on_broker_stat = on_broker_stat
        self.client_id = f"{config.client_id or 'privacy-gateway-' + socket.gethostname()}-{worker}"
        self._client = c = new_client(self.config, self.client_id, manual_ack=True)
        c.on_connect = self._connected
        c.on_disconnect = self._disconnected
        c.on_message = self._message
        # An external loop: paho tells us when it has something to write (an ack queued by
        # the worker thread) instead of writing from that thread itself.
        c.on_socket_register_write = lambda _c, _u, _s: self._wake()
        # The broker's $SYS counters come over a connection of their own (QoS 0, no
        # session): the data connection stops reading while its window is full, which is
        # exactly when the broker's queue and drop counts matter.
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

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.config.session_expiry_s
        props.ReceiveMaximum = self.config.receive_maximum
        self._client.connect_async(
            self.config.host,
            self.config.port,
            keepalive=self.config.keepalive_s,
            clean_start=False,
            properties=props,
        )
        self._thread = threading.Thread(
            target=self._run, name=f"paho-mqtt-client-{self.client_id}", daemon=True
        )
        self._thread.start()
        if self._stats is not None:
            self._stats.connect_async(
                self.config.host, self.config.port, self.config.keepalive_s, clean_start=True
            )
            self._stats.loop_start()

    def stop(self) -> None:
        """Disconnect (the session stays with the broker) and end the network thread."""
        self._stop_deadline = time.monotonic() + STOP_FLUSH_S
        self._stopping = True
        self._wake()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        sock = self._client.socket()
        if sock is not None:  # the DISCONNECT did not get out in time
            sock.close()
        self._wake_r.close()
        self._wake_w.close()
        if self._stats is not None:
            self._stats.disconnect()
            self._stats.loop_stop()

    def ack(self, d: Delivery) -> None:
        self.ack_all((d,))

    def ack_all(self, batch: Sequence[Delivery]) -> None:
        """Acknowledge a finished batch; QoS 0 deliveries only leave the window."""
        with self._net_lock:
            for d in batch:
                if d.qos > 0:
                    self._client.ack(d.mid, d.qos)
        self._finished += len(batch)
        if self._paused:
            self._wake()

    # -- network loop (one thread) -----------------------------------------------------------

    def _run(self) -> None:
        c = self._client
        disconnecting = False
        while True:
            if self._stopping:
                if c.socket() is None or time.monotonic() > self._stop_deadline:
                    return
                if not disconnecting:
                    disconnecting = True
                    c.disconnect()  # goes out with the next write; paho then closes
            elif c.socket() is None:
                self._connect()
                continue
            self._step()

    def _connect(self) -> None:
        # After a connection that held, retry at once; one that drops right away (a
        # client id taken over by another process, a broker refusing us) backs off.
        if self._up_since and time.monotonic() - self._up_since >= STABLE_S:
            self._retry_s = 0.0
        self._up_since = 0.0
        if self._retry_s and self._sleep(self._retry_s):
            return
        self._retry_s = min(max(self._retry_s * 2, FIRST_RETRY_S), MAX_RETRY_S)
        try:
            with self._net_lock:
                self._client.reconnect()
        except (OSError, ValueError) as exc:
            # Refused, unreachable, certificate not verified: only visible here.
            if self._on_connection and not self._stopping:
                self._on_connection(False, f"connect failed: {type(exc).__name__}: {exc}")

    def _sleep(self, seconds: float) -> bool:
        """Wait, cut short only by stop(); True if stopping."""
        deadline = time.monotonic() + seconds
        while not self._stopping and (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(OSError):
                select.select([self._wake_r], [], [], left)
            self._drain_wake()
        return self._stopping

    def _step(self) -> None:
        c = self._client
        sock = c.socket()
        if sock is None:
            return
        # Paused first, then the count: an ack_all() in between sees the flag and wakes us.
        self._paused = True
        room = self._received - self._finished < self.window
        self._paused = not room
        rlist: list[Any] = [self._wake_r, sock] if room else [self._wake_r]
        wlist: list[Any] = [sock] if c.want_write() else []
        # Bytes TLS already decrypted are invisible to select.
        buffered = room and isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
        try:
            readable, _, _ = select.select(rlist, wlist, [], 0.0 if buffered else SELECT_S)
        except (OSError, ValueError):  # the socket was closed under us
            readable = []
        if self._wake_r in readable:
            self._drain_wake()
        if (
            room
            and (buffered or sock in readable)
            and (c.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS or c.socket() is None)
        ):
            return
        if c.want_write() and (
            c.loop_write() != MQTTErrorCode.MQTT_ERR_SUCCESS or c.socket() is None
        ):
            return
        c.loop_misc()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full (a wake-up is pending anyway) or closed
            self._wake_w.send(b"\0")

    def _drain_wake(self) -> None:
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass

    # -- paho callbacks (network thread) -----------------------------------------------------

    def _connected(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        props: Properties | None,
    ) -> None:
        if reason.is_failure:
            if self._on_connection:
                self._on_connection(False, f"connect refused: {reason}")
            return
        self._up_since = time.monotonic()
        # Resubscribe at once. A resumed session still has its plain subscriptions; `$share`
        # ones are not restored by mosquitto 2.0 after a broker restart. Consent comes on a
        # connection of its own (gateway/consent/feed.py), synced before data is processed.
        subs = [(f, SubscribeOptions(qos=1)) for f in self.data_filters()]
        client.subscribe(subs)
        if flags.session_present:
            # A session that was in the other mode would receive every message twice; one
            # of an older version also has consent, whose retained replays could overtake
            # newer state from the consent feed.
            old = [*self.data_filters(shared=not self.shared), self.topics.subscription("consent")]
            client.unsubscribe(old)
        self.connected.set()
        if self._on_connection:
            self._on_connection(True, "")

    def _disconnected(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        props: Properties | None,
    ) -> None:
        was = self.connected.is_set()
        self.connected.clear()
        if self._on_connection and not self._stopping:
            what = "disconnected" if was else "connection refused by the broker"
            self._on_connection(False, f"{what}: {reason}")

    def _message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._received += 1
        self.queue.put(Delivery(msg.topic, bytes(msg.payload), msg.mid, msg.qos))

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
