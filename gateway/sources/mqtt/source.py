"""MQTT v5 source: persistent session, QoS1, shared subscription, manual acknowledgement.

paho-mqtt relays ~13k msg/s here against ~7k for aiomqtt (bench/RESULTS.md), and its
`manual_ack` lets the gateway acknowledge a message only after its sink committed it. The
in-flight window is the MQTT v5 Receive Maximum: the broker never has more than that many
unacknowledged deliveries out to this client, so the local queue is bounded by it.
"""

from __future__ import annotations

import os
import queue
import socket
import ssl
import sys
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.route.topics import TopicScheme
from gateway.sources.mqtt.config import MqttSourceConfig

KINDS = ("info", "props", "event", "command")


class Delivery(NamedTuple):
    topic: str
    payload: bytes
    mid: int
    qos: int


class MqttSource:
    def __init__(
        self,
        config: MqttSourceConfig,
        worker: int = 0,
        on_connection: Callable[[bool, str], None] | None = None,
    ) -> None:
        self.config = config
        self.topics = TopicScheme(config.topic_pattern)
        # C-implemented, no Condition per put: the hand-off costs a fraction of queue.Queue.
        self.queue: queue.SimpleQueue[Delivery] = queue.SimpleQueue()
        self.connected = threading.Event()
        self._stopping = False
        self._on_connection = on_connection
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{config.client_id or 'privacy-gateway-' + socket.gethostname()}-{worker}",
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        c = self._client
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
        c.reconnect_delay_set(min_delay=1, max_delay=10)
        c.on_connect = self._connected
        c.on_disconnect = self._disconnected
        c.on_connect_fail = self._connect_failed
        c.on_message = self._message

    # Filters: each data kind through the shared group (the broker splits the load between
    # workers), consent without sharing (every worker must know every device's consent).
    def data_filters(self) -> list[str]:
        share = f"$share/{self.config.group}/"
        return [share + self.topics.subscription(k) for k in KINDS]

    def consent_filter(self) -> str:
        return self.topics.subscription("consent")

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
        self._client.loop_start()

    def stop(self) -> None:
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()

    def ack(self, d: Delivery) -> None:
        if d.qos > 0:
            self._client.ack(d.mid, d.qos)

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
        # Consent first, so retained consent is known before data flows.
        subs = [(self.consent_filter(), SubscribeOptions(qos=1))]
        subs += [(f, SubscribeOptions(qos=1)) for f in self.data_filters()]
        client.subscribe(subs)
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

    def _connect_failed(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this from inside its `except OSError` while reconnecting: the error
        # (refused, unreachable, certificate not verified) is only visible here.
        exc = sys.exc_info()[1]
        detail = f"{type(exc).__name__}: {exc}" if exc is not None else "unknown error"
        if self._on_connection:
            self._on_connection(False, f"connect failed: {detail}")

    def _message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.queue.put(Delivery(msg.topic, bytes(msg.payload), msg.mid, msg.qos))
