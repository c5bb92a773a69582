"""NATS JetStream sink: ``<prefix>.<region>.<product>.<kind>.<pseudonym>``, ``Nats-Msg-Id``
dedupe; erasure purges the device's subjects.

nats-py is asyncio-only while sinks are called from the worker thread: the sink runs on the
process's network loop (gateway/mqtt/netloop.py, shared with the MQTT connections) and the
sync methods bridge into it, once per batch.

``write`` returns once every PubAck arrived: JetStream acks only after the message is
stored. Each message carries ``Nats-Msg-Id: <msg_id>``, so a record re-offered after a
``SinkError`` (at-least-once) is deduplicated by the server within the duplicate window.
While the connection is down nats-py reconnects in the background; ``write`` fails fast
instead of letting publishes pile up in the client's reconnect buffer.

Progress at any link speed: a record is published only when the window (``max_inflight``
records, ``max_inflight_bytes``) has room, so it does not wait behind a whole batch in
the client's buffers, and its timeout runs from when it was sent or from the last PubAck,
whichever is later: a batch fails only when nothing was acknowledged for ``timeout_s``,
never because a slow link takes longer than ``timeout_s`` for the whole batch. On failure
``SinkError.delivered`` counts the records acknowledged in order from the start of the
batch, so the caller offers only the rest again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig

from gateway.mqtt import network_loop, tls_context
from gateway.sinks.base import OutRecord, SinkError, check_batch, check_token, erasure_body
from gateway.sinks.nats.config import NatsSinkConfig

__all__ = ["NatsSink"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_MSG_ID = "Nats-Msg-Id"
_EXPECTED_STREAM = "Nats-Expected-Stream"
_STATUS = "Status"  # a status message instead of a PubAck: 503 = no stream for the subject
# Slack for the thread bridge on top of the coroutine's own deadline.
_BRIDGE_SLACK_S = 2.0


class _Batch:
    """The PubAcks of one batch as they arrive (event loop thread only)."""

    def __init__(self, sizes: list[int], now: float) -> None:
        self.sizes = sizes
        self.results: list[str | None] = [None] * len(sizes)  # "" = stored, else the error
        self.sent_at = [0.0] * len(sizes)
        self.sent = 0  # records published so far
        self.head = 0  # first record without a reply
        self.open_records = 0  # published, no reply yet
        self.open_bytes = 0
        self.last_reply = now
        self.changed = asyncio.Event()

    def reply(self, i: int, error: str, now: float) -> None:
        if self.results[i] is not None:
            return
        self.results[i] = error
        self.open_records -= 1
        self.open_bytes -= self.sizes[i]
        self.last_reply = now
        while self.head < self.sent and self.results[self.head] is not None:
            self.head += 1
        self.changed.set()

    def delivered(self) -> int:
        """Records stored, in order from the start of the batch."""
        n = 0
        while n < len(self.results) and self.results[n] == "":
            n += 1
        return n

    def failed(self) -> str | None:
        return next((r for r in self.results if r), None)


class _Device(msgspec.Struct):
    device: str


_device_of = msgspec.json.Decoder(_Device)


class NatsSink:
    name = "nats"
    remote = True  # one worker erases

    def __init__(self, config: NatsSinkConfig, region: str) -> None:
        check_token("region", region)
        self.config = config
        self.region = region
        self._base = f"{config.subject_prefix}.{region}"
        self._lock = threading.Lock()  # one batch at a time
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._stream_ready = False
        self._error_logged = False
        self._replies: Subscription | None = None  # <inbox>.*: our PubAcks
        self._reply_prefix = ""
        self._waiting: dict[str, tuple[_Batch, int]] = {}  # reply subject -> record
        self._reply_seq = 0
        self._progress_at = 0.0  # monotonic: the last publish or PubAck (any thread reads)

    @property
    def connected(self) -> bool:
        nc = self._nc
        return nc is not None and bool(nc.is_connected)

    # -- Sink ------------------------------------------------------------------------

    def open(self) -> None:
        with self._lock:
            self._ensure()

    def close(self) -> None:
        with self._lock:
            if self._loop is None:
                return
            try:
                self._call(self._aclose(), self.config.timeout_s)
            except SinkError:
                log.warning("nats sink %s: close did not finish cleanly", self.region)
            self._loop = None

    def write(self, batch: Sequence[OutRecord]) -> None:
        if not batch:
            return
        check_batch(self.region, batch)
        msgs = [
            (f"{self._base}.{r.product}.{r.kind}.{_pseudonym(r)}", r.body, r.msg_id) for r in batch
        ]
        self._publish(msgs)

    def erase(self, product: str, device: str, requested_at: float) -> None:
        self.erase_many([(product, device)], requested_at)

    def erase_many(self, devices: Sequence[tuple[str, str]], requested_at: float) -> int:
        """Purge every stored record of each device (its pseudonym is a subject token), then
        publish the requests for consumers that copied records out of the stream."""
        for product, device in devices:
            check_token("product", product)
            check_token("device", device)
        with self._lock:
            self._ensure()
            for product, device in devices:
                subject = f"{self._base}.{product}.*.{device}"
                self._call(self._apurge(subject), self.config.timeout_s)
        msgs = []
        for product, device in devices:
            body = erasure_body(product, device, requested_at)
            # Deterministic id: a retried erasure request is deduplicated like a record.
            msgs.append((f"{self._base}.erasure", body, hashlib.sha256(body).hexdigest()))
        self._publish(msgs)
        return 0  # JetStream's purge does not say how many

    # -- bridge ----------------------------------------------------------------------

    def _publish(self, msgs: Sequence[tuple[str, bytes, str]]) -> None:
        with self._lock:
            self._ensure()
            self._call(self._apublish(msgs), self.config.timeout_s, while_progressing=True)

    def _ensure(self) -> None:
        """Connect and set up the stream, as far as not done yet."""
        if self._loop is None:
            self._loop = network_loop()
        nc = self._nc
        if nc is not None and nc.is_closed:
            self._nc = self._js = None
            self._stream_ready = False
        if self._nc is None or not self._stream_ready:
            self._call(self._aconnect(), self.config.timeout_s * 2)

    def _call(
        self, coro: Coroutine[Any, Any, T], timeout: float, *, while_progressing: bool = False
    ) -> T:
        """Run ``coro`` on the sink's loop and wait ``timeout`` for it; with
        ``while_progressing``, ``timeout`` counts from the last publish or PubAck (the
        coroutine enforces that itself: this is the backstop should the loop thread stop
        answering)."""
        assert self._loop is not None
        self._progress_at = time.monotonic()
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        limit = timeout + _BRIDGE_SLACK_S
        while True:
            try:
                return fut.result(limit)
            except concurrent.futures.TimeoutError:
                if not while_progressing or time.monotonic() - self._progress_at > limit:
                    fut.cancel()
                    raise SinkError(f"nats sink {self.region}: timed out") from None
            except SinkError:
                raise
            except (TimeoutError, nats.errors.Error, OSError, ValueError) as exc:
                raise SinkError(f"nats sink {self.region}: {_describe(exc)}") from None

    # -- coroutines (run on the network loop) ----------------------------------------

    async def _aconnect(self) -> None:
        cfg = self.config
        if self._nc is None:
            nc = NatsClient()
            try:
                # Reconnect forever once connected; the first connect is bounded here.
                await asyncio.wait_for(
                    nc.connect(
                        **_auth(cfg),
                        servers=[cfg.url],
                        name=cfg.name or f"gateway-sink-{self.region}",
                        connect_timeout=max(1, math.ceil(cfg.timeout_s)),
                        allow_reconnect=True,
                        max_reconnect_attempts=-1,
                        reconnect_time_wait=1,
                        error_cb=self._on_error,
                        disconnected_cb=self._on_disconnected,
                        reconnected_cb=self._on_reconnected,
                    ),
                    timeout=cfg.timeout_s,
                )
            except BaseException:
                await _close_quietly(nc)
                raise
            self._nc = nc
            self._js = nc.jetstream(timeout=cfg.timeout_s)
            # One wildcard subscription for the PubAcks of every publish on this
            # connection (nats-py renews it after a reconnect).
            self._reply_prefix = nc.new_inbox()
            self._replies = await nc.subscribe(f"{self._reply_prefix}.*", cb=self._on_reply)
        if not self._stream_ready:
            await self._ensure_stream()
            self._stream_ready = True

    async def _ensure_stream(self) -> None:
        """Create the stream, or widen an existing one just enough for this sink.

        An existing stream keeps every limit an operator set; only our subjects are added
        and the duplicate window is raised if it is shorter than ours.
        """
        assert self._js is not None
        cfg = self.config
        subject = f"{cfg.subject_prefix}.>"
        try:
            info = await self._js.stream_info(cfg.stream)
        except nats.js.errors.NotFoundError:
            await self._js.add_stream(
                StreamConfig(
                    name=cfg.stream,
                    subjects=[subject],
                    duplicate_window=cfg.duplicate_window_s,
                    storage=StorageType.FILE,
                )
            )
            return
        current = info.config
        subjects = list(current.subjects or [])
        changes: dict[str, Any] = {}
        if subject not in subjects:
            changes["subjects"] = [*subjects, subject]
        if (current.duplicate_window or 0) < cfg.duplicate_window_s:
            changes["duplicate_window"] = cfg.duplicate_window_s
        if changes:
            await self._js.update_stream(current.evolve(**changes))

    async def _apublish(self, msgs: Sequence[tuple[str, bytes, str]]) -> None:
        nc = self._nc
        if nc is None or not nc.is_connected:
            # Fail fast: publishing now would only fill the reconnect buffer and time out.
            raise SinkError(f"nats sink {self.region}: not connected")
        cfg = self.config
        loop = asyncio.get_running_loop()
        batch = _Batch([len(body) for _, body, _ in msgs], loop.time())
        replies: list[str] = []
        headers = {_EXPECTED_STREAM: cfg.stream}  # a subject another stream captures fails
        try:
            for i, (subject, body, msg_id) in enumerate(msgs):
                # Into the window only when there is room: the timeout of a record runs
                # from its sending, not from the start of its batch.
                while (
                    batch.failed() is None
                    and batch.open_records
                    and (
                        batch.open_records >= cfg.max_inflight
                        or batch.open_bytes + len(body) > cfg.max_inflight_bytes
                    )
                ):
                    await self._progress(batch)
                if batch.failed() is not None:
                    break
                if not nc.is_connected:
                    raise SinkError(f"nats sink {self.region}: connection lost")
                self._reply_seq += 1
                reply = f"{self._reply_prefix}.{self._reply_seq}"
                self._waiting[reply] = (batch, i)
                replies.append(reply)
                await nc.publish(subject, body, reply=reply, headers={**headers, _MSG_ID: msg_id})
                batch.sent_at[i] = loop.time()
                batch.sent = i + 1
                batch.open_records += 1
                batch.open_bytes += len(body)
                self._progress_at = time.monotonic()
            while batch.open_records:
                await self._progress(batch)
        except SinkError as exc:
            raise SinkError(str(exc), batch.delivered()) from None
        except (nats.errors.Error, OSError) as exc:
            raise SinkError(
                f"nats sink {self.region}: {_describe(exc)}", batch.delivered()
            ) from None
        finally:
            for reply in replies:
                self._waiting.pop(reply, None)
        error = batch.failed()
        if error is not None or batch.sent < len(msgs):
            raise SinkError(
                f"nats sink {self.region}: {len(msgs) - batch.delivered()} of {len(msgs)} "
                f"not acknowledged ({error})",
                batch.delivered(),
            )

    async def _progress(self, batch: _Batch) -> None:
        """Wait for the next PubAck; SinkError once none came for timeout_s since the
        oldest waiting record was sent or the last PubAck arrived."""
        loop = asyncio.get_running_loop()
        batch.changed.clear()
        since = max(batch.sent_at[batch.head], batch.last_reply)
        left = since + self.config.timeout_s - loop.time()
        if left > 0:
            try:
                await asyncio.wait_for(batch.changed.wait(), left)
                return
            except TimeoutError:
                pass
        if batch.changed.is_set():
            return
        raise SinkError(
            f"nats sink {self.region}: no PubAck for {self.config.timeout_s:g} s "
            f"({batch.open_records} waiting)"
        )

    async def _on_reply(self, msg: Msg) -> None:
        entry = self._waiting.pop(msg.subject, None)
        if entry is None:
            return  # the PubAck of a batch that was given up on
        batch, i = entry
        self._progress_at = time.monotonic()
        batch.reply(i, _pub_ack_error(msg), asyncio.get_running_loop().time())

    async def _apurge(self, subject: str) -> None:
        nc, js = self._nc, self._js
        if nc is None or js is None or not nc.is_connected:
            raise SinkError(f"nats sink {self.region}: not connected")
        await js.purge_stream(self.config.stream, subject=subject)

    async def _aclose(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        self._stream_ready = False
        self._replies = None
        if nc is not None:
            await _close_quietly(nc)

    async def _on_error(self, exc: Exception) -> None:
        # nats-py retries every second while the server is away: one warning per outage.
        level = logging.DEBUG if self._error_logged else logging.WARNING
        self._error_logged = True
        log.log(level, "nats sink %s: connection error: %s", self.region, type(exc).__name__)

    async def _on_disconnected(self) -> None:
        log.warning("nats sink %s: disconnected", self.region)

    async def _on_reconnected(self) -> None:
        self._error_logged = False
        log.info("nats sink %s: reconnected", self.region)


def _auth(cfg: NatsSinkConfig) -> dict[str, Any]:
    """nats-py connect() arguments for the configured credentials and TLS. Files are read
    at each connect, so a rotated certificate or credentials file is picked up."""
    kw: dict[str, Any] = {}
    if cfg.creds is not None:
        kw["user_credentials"] = cfg.creds
    if cfg.nkey is not None:
        kw["nkeys_seed"] = cfg.nkey
    if cfg.user is not None:
        kw["user"] = cfg.user
        if cfg.password_env is not None:
            password = os.environ.get(cfg.password_env)
            if not password:  # never fall back to connecting without it
                raise SinkError(f"${cfg.password_env} is not set")
            kw["password"] = password
    if cfg.tls is not None:
        kw["tls"] = tls_context(cfg.tls.ca, cfg.tls.cert, cfg.tls.key)
    return kw


async def _close_quietly(nc: NatsClient) -> None:
    try:
        await nc.close()
    except Exception:  # closing a half-open client; nothing left to save
        log.debug("nats sink: close of a broken connection failed")


def _pub_ack_error(msg: Msg) -> str:
    """ "" for a PubAck that says stored (or duplicate), else what went wrong (codes only)."""
    status = (msg.headers or {}).get(_STATUS)
    if status:
        return f"status {status}"  # 503: no stream takes the subject
    try:
        ack = json.loads(msg.data)
    except ValueError:
        return "unreadable PubAck"
    if not isinstance(ack, dict):
        return "unreadable PubAck"
    err = ack.get("error")
    if not err:
        return ""
    if not isinstance(err, dict):
        return "JetStream error"
    return f"JetStream error code={err.get('code')} err_code={err.get('err_code')}"


def _pseudonym(rec: OutRecord) -> str:
    """The record's device pseudonym; from the body for records spooled before it was
    carried alongside."""
    device = rec.device or _device_of.decode(rec.body).device
    check_token("device", device)
    return device


def _describe(exc: BaseException) -> str:
    """Type name, plus the JetStream error code when there is one (never payload data)."""
    if isinstance(exc, nats.js.errors.APIError):
        return f"{type(exc).__name__} code={exc.code} err_code={exc.err_code}"
    return type(exc).__name__
