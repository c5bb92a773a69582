"""One MQTT v5 client connection on asyncio; the `mqtt5` codec (Rust, sans-I/O) encodes and
parses the packets.

Why not paho on the hot path: paho builds a `Properties` object per PUBLISH and a
`ReasonCode` per PUBACK, parses every packet in Python and wakes its thread through a
socketpair for every cross-thread publish or ack; together about 80 us of CPU per relayed
message here (bench/RESULTS.md). With the codec a whole read chunk is parsed in a loop of
~1 us per packet, and a batch of publishes or acknowledgements goes out in one write.

The connection is only the protocol: its owner (source or sink) decides what a PUBLISH or
PUBACK means. The receiver's window is enforced here, exactly: when `on_publish` says it has
no room, parsing stops, reading pauses (TCP back-pressure on the broker) and the unparsed
bytes wait until `resume()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any, cast

import mqtt5

__all__ = ["ConnectError", "Connection", "connect", "tls_context"]

PINGREQ = mqtt5.PingReqPacket().write()


class ConnectError(Exception):
    """The broker did not accept the connection; the message is the CONNACK reason name or
    what went wrong, never a credential."""


def tls_context(ca: str | None, cert: str | None, key: str | None) -> ssl.SSLContext:
    """Verify the server (its CA or the system store, and its host name); present a client
    certificate for mutual TLS when one is configured. The NATS sink's too."""
    ctx = ssl.create_default_context(cafile=ca)
    if cert is not None:
        ctx.load_cert_chain(cert, key)
    return ctx


class Connection(asyncio.Protocol):
    def __init__(self, setup: Callable[[Connection], None] | None = None) -> None:
        # PUBLISH received: return False when there is no room for another (window full).
        self.on_publish: Callable[[mqtt5.PublishPacket], bool] = lambda _p: True
        self.on_puback: Callable[[int, int], None] = lambda _mid, _code: None
        self.on_lost: Callable[[], None] = lambda: None
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.connack: asyncio.Future[mqtt5.ConnAckPacket] = (
            asyncio.get_running_loop().create_future()
        )
        self.paused = False
        self.last_read = time.monotonic()
        self._buf = bytearray()
        self._waiting: dict[int, asyncio.Future[list[int]]] = {}  # SUBACK / UNSUBACK
        self._next_id = 0
        self._keepalive: asyncio.Task[None] | None = None
        self._sock: Any = None
        if setup is not None:  # before any byte arrives: a session's backlog comes at once
            setup(self)

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # create_connection's: a Transport
        sock = transport.get_extra_info("socket")
        self._sock = sock if sock is not None and hasattr(socket, "TCP_QUICKACK") else None

    def data_received(self, data: bytes) -> None:
        if self._sock is not None:
            # Acknowledge at once instead of up to 40 ms later. Brokers keep Nagle on by
            # default (mosquitto: set_tcp_nodelay false): the broker holds its next PUBACKs
            # until our TCP ACK, and we wait for those PUBACKs to refill the window. The
            # kernel clears the flag after each ACK, so it is set after every read.
            with contextlib.suppress(OSError):
                self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        self.last_read = time.monotonic()
        self._buf += data
        if not self.paused:
            self._parse()

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f"{type(exc).__name__}: {exc}" if exc else "closed by the broker"
        self._lost(reason)

    def pause_writing(self) -> None:  # the window bounds what we write; nothing to do
        pass

    def resume_writing(self) -> None:
        pass

    # -- the owner's side ---------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return not self.closed.done()

    def write(self, data: bytes) -> None:
        if self.transport is not None and self.is_open:
            self.transport.write(data)

    def packet_id(self, in_use: dict[int, int] | None = None) -> int:
        """The next packet id (1..65535), skipping ids the caller still waits on."""
        while True:
            self._next_id = self._next_id % 65535 + 1
            if in_use is None or self._next_id not in in_use:
                return self._next_id

    def resume(self) -> None:
        """The receiver has room again: parse what waits, then read on."""
        if not self.paused:
            return
        self.paused = False
        # The broker's replies waited unread in the socket: the keepalive verdict starts
        # over, or a long pause would read as a silent broker before the first read.
        self.last_read = time.monotonic()
        self._parse()
        if not self.paused and self.transport is not None and self.is_open:
            self.transport.resume_reading()

    async def request(self, packet: mqtt5.SubscribePacket | mqtt5.UnsubscribePacket) -> list[int]:
        """Send a SUBSCRIBE or UNSUBSCRIBE; its ack's reason codes. No timeout of its own:
        behind a full window the ack waits until the window moves; a lost connection ends
        the wait (ConnectError)."""
        fut: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._waiting[packet.packet_id] = fut
        self.write(packet.write())
        return await fut

    def keep_alive(self, seconds: int) -> None:
        if seconds > 0 and self._keepalive is None:
            self._keepalive = asyncio.get_running_loop().create_task(self._ping(seconds))

    def close(self) -> None:
        """Send DISCONNECT (normal: the session stays with the broker) and close once the
        buffered bytes are out."""
        if self.transport is None or not self.is_open:
            return
        self.transport.write(mqtt5.DisconnectPacket().write())
        self.transport.close()
        self._lost("closed by the gateway")

    def abort(self, reason: str) -> None:
        if self.transport is not None:
            self.transport.abort()
        self._lost(reason)

    # -- internals ------------------------------------------------------------------------

    def _lost(self, reason: str) -> None:
        if self.closed.done():
            return
        self.closed.set_result(reason)
        waiting: list[asyncio.Future[Any]] = [self.connack, *self._waiting.values()]
        for fut in waiting:
            if not fut.done():
                fut.set_exception(ConnectError(reason))
                fut.exception()  # whoever waits sees it; nobody waiting is no error
        self._waiting.clear()
        if self._keepalive is not None:
            self._keepalive.cancel()
        self.on_lost()

    def _parse(self) -> None:
        buf = self._buf
        view = memoryview(buf)
        off = 0
        try:
            while off < len(buf):
                try:
                    packet, n = mqtt5.read(view[off:])
                except IndexError:  # an incomplete packet: wait for the rest
                    break
                off += n
                if isinstance(packet, mqtt5.PublishPacket):
                    if not self.on_publish(packet):
                        self.paused = True
                        if self.transport is not None:
                            self.transport.pause_reading()
                        break
                elif isinstance(packet, (mqtt5.PubAckPacket, mqtt5.PubCompPacket)):
                    self.on_puback(packet.packet_id, int(packet.reason_code))
                elif isinstance(packet, mqtt5.PubRecPacket):
                    if int(packet.reason_code) >= 0x80:  # refused: the flow ends here
                        self.on_puback(packet.packet_id, int(packet.reason_code))
                    else:
                        self.write(mqtt5.PubRelPacket(packet.packet_id).write())
                elif isinstance(packet, (mqtt5.SubAckPacket, mqtt5.UnsubAckPacket)):
                    fut = self._waiting.pop(packet.packet_id, None)
                    if fut is not None and not fut.done():
                        fut.set_result([int(c) for c in packet.reason_codes])
                elif isinstance(packet, mqtt5.ConnAckPacket):
                    if not self.connack.done():
                        self.connack.set_result(packet)
                elif isinstance(packet, mqtt5.DisconnectPacket):
                    self.abort(f"disconnected by the broker: {packet.reason_code.name}")
                    return
        except ValueError as exc:  # malformed: the stream cannot be trusted any further
            # The codec's message may quote the packet (a topic names a device): type only.
            self.abort(f"malformed packet from the broker ({type(exc).__name__})")
            return
        finally:
            view.release()
        del buf[:off]

    async def _ping(self, seconds: int) -> None:
        # PINGREQ at half the keepalive; a broker silent for 1.5x of it is gone. While
        # reading is paused (window full) its replies wait unread: no verdict then.
        while self.is_open:
            await asyncio.sleep(seconds / 2)
            if not self.paused and time.monotonic() - self.last_read > seconds * 1.5:
                self.abort("keepalive timeout")
                return
            self.write(PINGREQ)


async def connect(
    host: str,
    port: int,
    packet: mqtt5.ConnectPacket,
    *,
    tls: ssl.SSLContext | None,
    timeout: float,
    setup: Callable[[Connection], None] | None = None,
) -> tuple[Connection, mqtt5.ConnAckPacket]:
    """Open the socket, send CONNECT, wait for CONNACK. Raises OSError (refused,
    unreachable, TLS), TimeoutError or ConnectError (the broker's refusal). `setup` sets
    the owner's callbacks before the first byte is read."""
    loop = asyncio.get_running_loop()
    _, conn = await asyncio.wait_for(
        loop.create_connection(
            lambda: Connection(setup), host, port, ssl=tls, server_hostname=host if tls else None
        ),
        timeout,
    )
    conn.write(packet.write())
    try:
        connack = await asyncio.wait_for(asyncio.shield(conn.connack), timeout)
    except BaseException:
        conn.abort("no CONNACK")
        raise
    if connack.reason_code != mqtt5.ConnAckReasonCode.SUCCESS:
        conn.abort("refused")
        raise ConnectError(str(connack.reason_code.name).replace("_", " ").capitalize())
    conn.keep_alive(packet.keep_alive)
    return conn, connack
