"""The consent feed: a connection of its own to the broker, for retained consent only.

Its own connection, because the data connection's persistent session hands over queued
data at connect, before any retained consent could arrive, and its in-flight window may be
full of that data. This one has a clean session and subscribes to the consent filter and to
a sync topic of its own; once the broker granted both, it publishes a token to the sync
topic. The broker sends the retained consent burst before that token comes back, so the
token marks "every retained consent message is in the queue". Whoever applies the queue
(`ConsentStage`) knows consent is complete when it reaches the marker of the current
connection; until then, and after any disconnect, no data is processed.
"""

from __future__ import annotations

import queue
import secrets
import socket
import threading
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.route.topics import TopicScheme
from gateway.sources.mqtt.config import MqttSourceConfig
from gateway.sources.mqtt.source import new_client

SYNC_ROOT = "privacy-gateway/sync"


class ConsentMsg(NamedTuple):
    topic: str
    payload: bytes


class Synced(NamedTuple):
    """Every retained consent message of connection `generation` is ahead in the queue."""

    generation: int


class ConsentFeed:
    def __init__(self, config: MqttSourceConfig, worker: int = 0) -> None:
        self.config = config
        base = config.client_id or "privacy-gateway-" + socket.gethostname()
        self.client_id = f"{base}-{worker}-consent"
        self.sync_topic = f"{SYNC_ROOT}/{self.client_id}"
        self.filter = TopicScheme(config.topic_pattern).subscription("consent")
        self.queue: queue.SimpleQueue[ConsentMsg | Synced] = queue.SimpleQueue()
        # Bumped on every connect and disconnect: a Synced marker of an older connection
        # says nothing about what was retained meanwhile.
        self.generation = 0
        self._token = ""
        self._lock = threading.Lock()
        c = self._client = new_client(config, self.client_id, manual_ack=False)
        c.reconnect_delay_set(min_delay=1, max_delay=10)
        c.on_connect = self._connected
        c.on_disconnect = self._disconnected
        c.on_subscribe = self._subscribed
        c.on_message = self._message

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        # The whole retained burst may be in flight at once: auto-acked on arrival.
        props.ReceiveMaximum = 65535
        self._client.connect_async(
            self.config.host,
            self.config.port,
            keepalive=self.config.keepalive_s,
            clean_start=True,
            properties=props,
        )
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _connected(
        self, client: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        with self._lock:
            self.generation += 1
            self._token = ""
        if not reason.is_failure:
            opts = SubscribeOptions(qos=1)
            client.subscribe([(self.filter, opts), (self.sync_topic, opts)])

    def _subscribed(self, client: mqtt.Client, _u: Any, _mid: int, codes: Any, _p: Any) -> None:
        if any(rc.is_failure for rc in codes):
            return  # not synced: no data flows, and /readyz says so
        with self._lock:
            self._token = f"{self.generation}:{secrets.token_hex(8)}"
            token = self._token
        client.publish(self.sync_topic, token.encode(), qos=1)

    def _disconnected(self, _c: mqtt.Client, _u: Any, _f: Any, _r: ReasonCode, _p: Any) -> None:
        with self._lock:
            self.generation += 1
            self._token = ""

    def _message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self.sync_topic:
            with self._lock:
                if self._token and msg.payload == self._token.encode():
                    self.queue.put(Synced(self.generation))
            return
        self.queue.put(ConsentMsg(msg.topic, bytes(msg.payload)))
