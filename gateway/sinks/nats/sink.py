"""NATS JetStream sink: ``<prefix>.<region>.<product>.<kind>`` with ``Nats-Msg-Id`` dedupe.

nats-py is asyncio-only while sinks are called from worker threads, so each sink runs a
private event loop in a daemon thread and the sync methods bridge into it with
``run_coroutine_threadsafe(...).result(timeout)``.

``write`` returns once every PubAck arrived: JetStream acks only after the message is
stored. Each message carries ``Nats-Msg-Id: <msg_id>``, so a batch re-offered after a
``SinkError`` (at-least-once) is deduplicated by the server within the duplicate window.
While the connection is down nats-py reconnects in the background; ``write`` fails fast
instead of letting publishes pile up in the client's reconnect buffer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import math
import os
import ssl
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig

from gateway.sinks.base import OutRecord, SinkError, check_batch, check_token, erasure_body
from gateway.sinks.nats.config import NatsSinkConfig

__all__ = ["NatsSink"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_MSG_ID = "Nats-Msg-Id"
# Slack for the thread bridge on top of the coroutine's own deadline.
_BRIDGE_SLACK_S = 2.0


class NatsSink:
    name = "nats"

    def __init__(self, config: NatsSinkConfig, region: str) -> None:
        check_token("region", region)
        self.config = config
        self.region = region
        self._base = f"{config.subject_prefix}.{region}"
        self._lock = threading.Lock()  # one batch at a time
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._stream_ready = False
        self._error_logged = False

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
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                return
            try:
                self._call(self._aclose(), self.config.timeout_s)
            except SinkError:
                log.warning("nats sink %s: close did not finish cleanly", self.region)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=self.config.timeout_s)
            if not thread.is_alive():
                loop.close()
            self._loop = self._thread = None

    def write(self, batch: Sequence[OutRecord]) -> None:
        if not batch:
            return
        check_batch(self.region, batch)
        msgs = [(f"{self._base}.{r.product}.{r.kind}", r.body, r.msg_id) for r in batch]
        self._publish(msgs)

    def erase(self, product: str, device: str, requested_at: float) -> None:
        body = erasure_body(product, device, requested_at)
        # Deterministic id: a retried erasure request is deduplicated like a record.
        msg_id = hashlib.sha256(body).hexdigest()
        self._publish([(f"{self._base}.erasure", body, msg_id)])

    # -- bridge ----------------------------------------------------------------------

    def _publish(self, msgs: Sequence[tuple[str, bytes, str]]) -> None:
        with self._lock:
            self._ensure()
            rounds = math.ceil(len(msgs) / self.config.max_inflight)
            self._call(self._apublish(msgs), self.config.timeout_s * rounds)

    def _ensure(self) -> None:
        """Start the loop thread, connect, and set up the stream, as far as not done yet."""
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=_run_loop, args=(loop,), name=f"nats-sink-{self.region}", daemon=True
            )
            thread.start()
            self._loop, self._thread = loop, thread
        nc = self._nc
        if nc is not None and nc.is_closed:
            self._nc = self._js = None
            self._stream_ready = False
        if self._nc is None or not self._stream_ready:
            self._call(self._aconnect(), self.config.timeout_s * 2)

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        assert self._loop is not None
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(timeout + _BRIDGE_SLACK_S)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise SinkError(f"nats sink {self.region}: timed out") from None
        except SinkError:
            raise
        except (TimeoutError, nats.errors.Error, OSError, ValueError) as exc:
            raise SinkError(f"nats sink {self.region}: {_describe(exc)}") from None

    # -- coroutines (run on the private loop) ----------------------------------------

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
        nc, js = self._nc, self._js
        if nc is None or js is None or not nc.is_connected:
            # Fail fast: publishing now would only fill the reconnect buffer and time out.
            raise SinkError(f"nats sink {self.region}: not connected")
        window = asyncio.Semaphore(self.config.max_inflight)
        stream = self.config.stream
        timeout = self.config.timeout_s

        async def one(subject: str, body: bytes, msg_id: str) -> None:
            async with window:
                # stream= adds Nats-Expected-Stream: a subject captured by some other
                # stream is refused instead of silently landing there.
                await js.publish(
                    subject, body, timeout=timeout, stream=stream, headers={_MSG_ID: msg_id}
                )

        results = await asyncio.gather(*(one(*m) for m in msgs), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise SinkError(
                f"nats sink {self.region}: {len(errors)} of {len(msgs)} not acknowledged "
                f"({_describe(errors[0])})"
            )

    async def _aclose(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        self._stream_ready = False
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
        ctx = ssl.create_default_context(cafile=cfg.tls.ca)
        if cfg.tls.cert is not None:
            ctx.load_cert_chain(cfg.tls.cert, cfg.tls.key)
        kw["tls"] = ctx
    return kw


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()


async def _close_quietly(nc: NatsClient) -> None:
    try:
        await nc.close()
    except Exception:  # closing a half-open client; nothing left to save
        log.debug("nats sink: close of a broken connection failed")


def _describe(exc: BaseException) -> str:
    """Type name, plus the JetStream error code when there is one (never payload data)."""
    if isinstance(exc, nats.js.errors.APIError):
        return f"{type(exc).__name__} code={exc.code} err_code={exc.err_code}"
    return type(exc).__name__
