"""A TCP proxy for delivery tests (asyncio, in a thread of its own): it can throttle each
direction to a byte rate (a slow link), and cut and refuse connections (a client locked
out of a broker while devices go on publishing)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

from gateway.brokers import free_port

CHUNK = 1024


class TcpProxy:
    def __init__(self, upstream_port: int, rate_bytes_s: float | None = None) -> None:
        self.upstream_port = upstream_port
        self.rate = rate_bytes_s
        self.port = free_port()
        self.blocked = False
        self.bytes_up = 0  # client -> server, forwarded
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._start())
        return self

    def stop(self) -> None:
        self._call(self._close(stop_listening=True))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def block(self) -> None:
        """Cut every connection and refuse new ones until unblock()."""
        self.blocked = True
        self._call(self._close(stop_listening=False))

    def unblock(self) -> None:
        self.blocked = False

    def _call(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)  # type: ignore[arg-type]

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _close(self, stop_listening: bool) -> None:
        if stop_listening and self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.blocked:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer, count=True),
            self._pipe(up_reader, writer, count=False),
            return_exceptions=True,
        )
        for w in (writer, up_writer):
            w.transport.abort()
            self._writers.discard(w)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: bool
    ) -> None:
        free_at = time.monotonic()  # when the link is free for the next byte
        try:
            while data := await reader.read(CHUNK):
                if self.rate:
                    # A link of `rate` bytes/s: no credit saved up while idle, no bursts.
                    now = time.monotonic()
                    free_at = max(free_at, now) + len(data) / self.rate
                    await asyncio.sleep(free_at - now)
                writer.write(data)
                await writer.drain()
                if count:
                    self.bytes_up += len(data)
        finally:
            with contextlib.suppress(Exception):
                writer.transport.abort()
