"""Settings of the MQTT sink (see README.md in this folder)."""

from __future__ import annotations

import msgspec


class MqttTlsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    ca: str | None = None  # CA bundle to verify the broker; None = system store
    cert: str | None = None  # client certificate (mutual TLS)
    key: str | None = None  # client private key (mutual TLS)

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("tls.cert and tls.key go together")


class MqttSinkConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str
    port: int = 1883
    topic_prefix: str = "gateway"
    client_id: str = ""  # "" = "gateway-sink-<region>-<random>"
    tls: MqttTlsConfig | None = None
    username: str | None = None
    password_env: str | None = None  # name of the env variable holding the password
    qos: int = 1
    timeout_s: float = 10.0  # connect, and longest wait without any PUBACK progress
    max_inflight: int = 100  # QoS>0 publishes outstanding at once (capped by the broker)
    keepalive_s: int = 30

    def __post_init__(self) -> None:
        # QoS 0 has no acknowledgement, so it could never be durable on return.
        if self.qos not in (1, 2):
            raise ValueError("qos must be 1 or 2")
        if self.password_env is not None and self.username is None:
            raise ValueError("password_env needs a username")
        if not 0 < self.port < 65536:
            raise ValueError("port out of range")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        if not 0 < self.max_inflight <= 65535:
            raise ValueError("max_inflight must be in 1..65535")
        if not self.topic_prefix or any(c in "+#\0" for c in self.topic_prefix):
            raise ValueError("topic_prefix must be non-empty and free of wildcards")
