"""Settings of the MQTT source (see README.md in this folder)."""

from __future__ import annotations

import msgspec


class SourceTls(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    ca: str | None = None  # CA bundle that signed the broker; None = system store
    cert: str | None = None  # client certificate, for mutual TLS
    key: str | None = None  # its private key

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("source.tls: cert and key go together")


class MqttSourceConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 1883
    # "" = "privacy-gateway-<hostname>": replicas sharing one config get distinct sessions.
    client_id: str = ""  # the worker index is appended
    # false: one plain persistent subscription, kept by the broker across its restarts and
    # while the gateway is away. true: $share/<group>/..., for replicas that split the load
    # (mosquitto 2.0 forgets shared subscriptions on restart; see README.md).
    shared: bool = False
    group: str = "gateway"  # the shared subscription group, when shared = true
    topic_pattern: str = "miot/{product}/{device}/{kind}"
    keepalive_s: int = 30
    session_expiry_s: int = 3600  # persistent session: unacked messages wait for us
    receive_maximum: int = 1000  # in-flight window: unacked deliveries the broker allows
    username: str | None = None
    password_env: str | None = None  # name of the env variable holding the password
    tls: SourceTls | None = None

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError("source.port out of range")
        if not 0 < self.receive_maximum <= 65535:
            raise ValueError("source.receive_maximum must be in 1..65535")
        if not self.group or any(c in "/+#" for c in self.group):
            raise ValueError("source.group must be non-empty, without / + #")
