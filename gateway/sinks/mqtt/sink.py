"""MQTT sink: publishes each record QoS1 to ``<prefix>/<region>/<product>/<kind>``.

``write`` returns once every PUBACK of the batch arrived with a success reason code.
paho's ``publish()`` does not raise when it cannot send: it returns an rc (NO_CONN,
QUEUE_SIZE) and may keep the message queued for a later reconnect. So every rc is checked,
and after any failure the whole client is thrown away: messages we already reported as
failed must not be replayed by paho behind the caller's back (the caller re-offers them).
Reconnection is ours too (paho's auto-reconnect is off): the next ``write`` reconnects.

At most ``window`` publishes are outstanding at once, where ``window`` is the smaller of
``max_inflight`` and the broker's MQTT v5 Receive Maximum (paho does not enforce it).
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from gateway.sinks.base import OutRecord, SinkError, check_batch, check_token, erasure_body
from gateway.sinks.mqtt.config import MqttSinkConfig

__all__ = ["MqttSink"]

log = logging.getLogger(__name__)


NOBODY_WAITS = 1 << 30


class _Conn:
    """One broker connection and what its callbacks report; discarded after any failure."""

    def __init__(self, client: mqtt.Client) -> None:
        self.client = client
        self.cond = threading.Condition()
        self.connack: ReasonCode | None = None
        self.receive_maximum: int | None = None
        self.lost = False
        # mid -> PUBACK reason code, until the writer collects it. An ack can arrive
        # before publish() even returned its mid to the writer, so acks wait here.
        self.acks: dict[int, ReasonCode] = {}
        # How many collected acks are worth waking the writer for; nobody waits while it
        # publishes. Notifying per PUBACK cost ~17% of the gateway's CPU under load.
        self.wake_at = NOBODY_WAITS
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish

    def _on_connect(
        self, _c: mqtt.Client, _u: Any, _f: mqtt.ConnectFlags, rc: ReasonCode, props: Any
    ) -> None:
        with self.cond:
            self.connack = rc
            self.receive_maximum = getattr(props, "ReceiveMaximum", None)
            self.cond.notify_all()

    def _on_disconnect(
        self, _c: mqtt.Client, _u: Any, _f: mqtt.DisconnectFlags, _rc: ReasonCode, _p: Any
    ) -> None:
        with self.cond:
            self.lost = True
            self.cond.notify_all()

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, rc: ReasonCode, _p: Any) -> None:
        # Runs on paho's thread while it holds its own out-message lock: the writer must
        # therefore never call publish() while holding self.cond (lock-order deadlock).
        with self.cond:
            self.acks[mid] = rc
            if rc.is_failure or len(self.acks) >= self.wake_at:
                self.cond.notify_all()


def _password(cfg: MqttSinkConfig) -> str | None:
    if cfg.password_env is None:
        return None
    password = os.environ.get(cfg.password_env)
    if not password:  # never fall back to connecting without it
        raise SinkError(f"${cfg.password_env} is not set")
    return password


class MqttSink:
    name = "mqtt"
    remote = True  # one worker sends the erasure

    def __init__(self, config: MqttSinkConfig, region: str) -> None:
        check_token("region", region)
        self.config = config
        self.region = region
        self.client_id = config.client_id or f"gateway-sink-{region}-{secrets.token_hex(4)}"
        self._base = f"{config.topic_prefix}/{region}"
        self._lock = threading.Lock()  # one batch at a time on the connection
        self._conn: _Conn | None = None
        self._window = config.max_inflight

    @property
    def connected(self) -> bool:
        conn = self._conn
        return conn is not None and not conn.lost and conn.client.is_connected()

    def open(self) -> None:
        with self._lock:
            self._ensure_conn()

    def close(self) -> None:
        with self._lock:
            self._drop_conn()

    def write(self, batch: Sequence[OutRecord]) -> None:
        if not batch:
            return
        check_batch(self.region, batch)
        msgs = [(f"{self._base}/{r.product}/{r.kind}", r.body) for r in batch]
        with self._lock:
            self._publish_all(msgs)

    def erase(self, product: str, device: str, requested_at: float) -> None:
        self.erase_many([(product, device)], requested_at)

    def erase_many(self, devices: Sequence[tuple[str, str]], requested_at: float) -> int:
        """The requests, plus a retained tombstone per device, so a consumer that subscribes
        later still learns that the device's records must go."""
        msgs, tombstones = [], []
        for product, device in devices:
            check_token("product", product)
            check_token("device", device)
            body = erasure_body(product, device, requested_at)
            msgs.append((f"{self._base}/erasure", body))
            tombstones.append((f"{self._base}/erasure/{product}/{device}", body))
        with self._lock:
            self._publish_all(msgs)
            self._publish_all(tombstones, retain=True)
        return 0  # the broker keeps nothing of ours but the tombstones

    # -- internals (self._lock held) -------------------------------------------------

    def _fail(self, what: str, delivered: int = 0) -> SinkError:
        self._drop_conn()
        return SinkError(f"mqtt sink {self.region}: {what}", delivered)

    def _ensure_conn(self) -> _Conn:
        conn = self._conn
        if conn is not None and not conn.lost and conn.client.is_connected():
            return conn
        self._drop_conn()
        cfg = self.config
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            reconnect_on_failure=False,
        )
        client.connect_timeout = cfg.timeout_s
        # Backstops only: the writer's own window keeps both limits from ever being hit.
        client.max_inflight_messages_set(cfg.max_inflight)
        client.max_queued_messages_set(cfg.max_inflight)
        conn = _Conn(client)
        try:
            # Inside the try: a certificate that is missing for a moment (rotation) must
            # be an outage the caller can spool through, not a crash.
            if cfg.tls is not None:
                client.tls_set(ca_certs=cfg.tls.ca, certfile=cfg.tls.cert, keyfile=cfg.tls.key)
            if cfg.username is not None:
                client.username_pw_set(cfg.username, _password(cfg))
            # Clean start: a new connection never resumes messages we gave up on.
            client.connect(cfg.host, cfg.port, keepalive=cfg.keepalive_s, clean_start=True)
        except (OSError, ValueError) as exc:
            raise SinkError(
                f"mqtt sink {self.region}: connect failed: {type(exc).__name__}"
            ) from None
        client.loop_start()
        self._conn = conn
        deadline = time.monotonic() + cfg.timeout_s
        with conn.cond:
            while conn.connack is None and not conn.lost:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                conn.cond.wait(remaining)
            connack, receive_maximum = conn.connack, conn.receive_maximum
        if connack is None:
            raise self._fail("no CONNACK in time")
        if connack.is_failure:
            raise self._fail(f"connection refused: {connack.getName()}")
        self._window = min(cfg.max_inflight, receive_maximum or cfg.max_inflight)
        return conn

    def _drop_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.client.disconnect()
        except Exception:  # teardown of a client that is already broken
            log.debug("mqtt sink %s: disconnect during teardown failed", self.region)
        conn.client.loop_stop()

    def _publish_all(self, msgs: Sequence[tuple[str, bytes]], retain: bool = False) -> None:
        conn = self._ensure_conn()
        qos = self.config.qos
        timeout = self.config.timeout_s
        outstanding: set[int] = set()
        sent: list[int] = []  # mids in publish order: what a failure reports as delivered
        deadline = time.monotonic() + timeout
        for topic, body in msgs:
            if len(outstanding) >= self._window:
                # Window full: wait until half of it is free, not for every single ack.
                deadline = self._wait(
                    conn, outstanding, self._window // 2, deadline, timeout, sent=sent
                )
            # No msg_id user property: the record's own `id` is the dedupe key, and a paho
            # Properties object per publish cost ~15% of the gateway's CPU (bench/RESULTS.md).
            try:
                info = conn.client.publish(topic, body, qos=qos, retain=retain)
            except (ValueError, OSError) as exc:
                what = f"publish failed: {type(exc).__name__}"
                raise self._fail(what, _acked_prefix(sent, outstanding)) from None
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                what = f"publish not accepted: {mqtt.error_string(info.rc)}"
                raise self._fail(what, _acked_prefix(sent, outstanding))
            outstanding.add(info.mid)
            sent.append(info.mid)
        self._wait(conn, outstanding, 0, deadline, timeout, sent=sent)

    def _wait(
        self,
        conn: _Conn,
        outstanding: set[int],
        at_most: int,
        deadline: float,
        timeout: float,
        *,
        sent: list[int],
    ) -> float:
        """Block until at most ``at_most`` publishes are unacknowledged.

        The deadline moves on with every ack: a long batch may take as long as it needs
        while the broker makes progress; ``timeout`` bounds a stall. On failure the
        SinkError counts the publishes acknowledged in order from the first.
        """
        with conn.cond:
            while True:
                if conn.acks:
                    acked = [mid for mid in conn.acks if mid in outstanding]
                    for mid in acked:
                        rc = conn.acks.pop(mid)
                        if rc.is_failure:
                            failure = rc.getName()  # mid stays outstanding: not delivered
                            break
                        outstanding.discard(mid)
                    else:
                        failure = ""
                    if failure:
                        break
                    if acked:
                        deadline = time.monotonic() + timeout
                if len(outstanding) <= at_most:
                    return deadline
                if conn.lost:
                    failure = "connection lost"
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    failure = f"no PUBACK within {timeout:g} s"
                    break
                conn.wake_at = len(outstanding) - at_most
                conn.cond.wait(remaining)
                conn.wake_at = NOBODY_WAITS
        raise self._fail(f"not acknowledged: {failure}", _acked_prefix(sent, outstanding))


def _acked_prefix(sent: list[int], outstanding: set[int]) -> int:
    """How many publishes, in order from the first, were acknowledged."""
    n = 0
    while n < len(sent) and sent[n] not in outstanding:
        n += 1
    return n
