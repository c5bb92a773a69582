"""MQTT sink: publishes each record to ``<prefix>/<region>/<product>/<kind>`` (QoS 1 or 2).

``write`` returns once every publish of the batch was acknowledged with a success reason
code (PUBACK, or PUBCOMP for QoS 2); a reason code >= 0x80 is a failure, never a success.
The connection runs on the process's network loop (gateway/mqtt): a window's worth of
publishes goes out in one write, and the worker thread waits once per batch, not per
message; with ``submit`` it waits only after it has enforced its next batch. After any
failure the connection is thrown away and the next ``write`` opens a clean one: nothing we
reported as failed is replayed behind the caller's back (the caller re-offers it).

At most ``window`` publishes are outstanding at once, where ``window`` is the smaller of
``max_inflight`` and the broker's MQTT v5 Receive Maximum.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import secrets
import time
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from mqtt5 import ConnectPacket, PubAckReasonCode, PublishPacket, QoS

from gateway.mqtt import ConnectError, Connection, connect, network_loop, tls_context
from gateway.sinks.base import OutRecord, SinkError, check_batch, check_token, erasure_body
from gateway.sinks.mqtt.config import MqttSinkConfig

__all__ = ["MqttSink"]

T = TypeVar("T")


def _code_name(code: int) -> str:
    try:
        return str(PubAckReasonCode(code).name).replace("_", " ").capitalize()
    except ValueError:
        return f"reason code {code:#04x}"


class _Batch:
    """The acknowledgements of one batch as they arrive (network loop only)."""

    def __init__(self, n: int) -> None:
        self.index: dict[int, int] = {}  # packet id -> position in the batch
        self.acked = [False] * n
        self.head = 0  # publishes acknowledged in order from the first
        self.failure = ""
        self.changed = asyncio.Event()

    @property
    def outstanding(self) -> int:
        return len(self.index)

    def ack(self, mid: int, code: int) -> None:
        i = self.index.pop(mid, None)
        if i is None:
            return
        if code >= 0x80:
            self.failure = _code_name(code)  # stays unacknowledged: not delivered
        else:
            self.acked[i] = True
            while self.head < len(self.acked) and self.acked[self.head]:
                self.head += 1
        self.changed.set()


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
        # One batch at a time on the connection; everything below runs on the network loop.
        self._busy = asyncio.Lock()
        self._conn: Connection | None = None
        self._window = config.max_inflight

    @property
    def connected(self) -> bool:
        conn = self._conn
        return conn is not None and conn.is_open

    def open(self) -> None:
        self._run(self._ensure_conn()).result()

    def close(self) -> None:
        self._run(self._close()).result()

    def write(self, batch: Sequence[OutRecord]) -> None:
        if batch:
            self.submit(batch).result()

    def submit(self, batch: Sequence[OutRecord]) -> concurrent.futures.Future[None]:
        """`write` started on the network loop: the worker enforces its next batch while
        this one waits for its PUBACKs. The future's result is `write`'s (SinkError)."""
        check_batch(self.region, batch)
        msgs = [(f"{self._base}/{r.product}/{r.kind}", r.body) for r in batch]
        return self._run(self._publish_all(msgs))

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
        self._run(self._publish_all(msgs)).result()
        self._run(self._publish_all(tombstones, retain=True)).result()
        return 0  # the broker keeps nothing of ours but the tombstones

    # -- on the network loop --------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        # Each coroutine bounds its own waits (connect, PUBACK progress).
        async def serial() -> T:
            async with self._busy:
                return await coro

        return asyncio.run_coroutine_threadsafe(serial(), network_loop())

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _fail(self, what: str, delivered: int = 0) -> SinkError:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.abort(what)
        return SinkError(f"mqtt sink {self.region}: {what}", delivered)

    async def _ensure_conn(self) -> Connection:
        conn = self._conn
        if conn is not None and conn.is_open:
            return conn
        cfg = self.config
        try:
            # Inside the try: a certificate that is missing for a moment (rotation) must
            # be an outage the caller can spool through, not a crash.
            tls = tls_context(cfg.tls.ca, cfg.tls.cert, cfg.tls.key) if cfg.tls else None
            password = _password(cfg) if cfg.username is not None else None
            packet = ConnectPacket(
                self.client_id,
                username=cfg.username,
                password=password.encode() if password is not None else None,
                clean_start=True,  # a new connection never resumes messages we gave up on
                keep_alive=cfg.keepalive_s,
            )
            conn, connack = await connect(
                cfg.host, cfg.port, packet, tls=tls, timeout=cfg.timeout_s
            )
        except ConnectError as exc:
            raise self._fail(f"connection refused: {exc}") from None
        except TimeoutError:
            raise self._fail("no CONNACK in time") from None
        except (OSError, ValueError) as exc:
            raise self._fail(f"connect failed: {type(exc).__name__}") from None
        self._conn = conn
        self._window = min(cfg.max_inflight, connack.receive_max)
        return conn

    async def _publish_all(self, msgs: Sequence[tuple[str, bytes]], retain: bool = False) -> None:
        conn = await self._ensure_conn()
        qos = QoS(self.config.qos)
        timeout = self.config.timeout_s
        batch = _Batch(len(msgs))
        conn.on_puback = batch.ack
        conn.on_lost = batch.changed.set
        sent = 0
        # The deadline moves on with every ack: a long batch may take as long as it needs
        # while the broker makes progress; `timeout` bounds a stall.
        deadline = time.monotonic() + timeout
        while batch.head < len(msgs):
            room = min(self._window - batch.outstanding, len(msgs) - sent)
            if room > 0:
                out = []
                for i in range(sent, sent + room):
                    mid = conn.packet_id(batch.index)
                    batch.index[mid] = i
                    topic, body = msgs[i]
                    out.append(PublishPacket(topic, body, qos=qos, retain=retain, packet_id=mid))
                conn.write(b"".join(p.write() for p in out))
                sent += room
            batch.changed.clear()
            if batch.failure:
                raise self._fail(f"not acknowledged: {batch.failure}", batch.head)
            if not conn.is_open:
                raise self._fail("not acknowledged: connection lost", batch.head)
            if batch.head == len(msgs) or (room > 0 and sent < len(msgs)):
                continue
            head = batch.head
            try:
                await asyncio.wait_for(batch.changed.wait(), deadline - time.monotonic())
            except TimeoutError:
                raise self._fail(f"no PUBACK within {timeout:g} s", batch.head) from None
            if batch.head > head:
                deadline = time.monotonic() + timeout
