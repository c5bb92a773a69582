"""MQTT v5 on asyncio, shared by the source and the MQTT sink: the connection (`connection.py`,
packets encoded and parsed by the `mqtt5` codec) and the one event loop they run on
(`netloop.py`)."""

from gateway.mqtt.connection import ConnectError, Connection, connect, tls_context
from gateway.mqtt.netloop import network_loop

__all__ = ["ConnectError", "Connection", "connect", "network_loop", "tls_context"]
