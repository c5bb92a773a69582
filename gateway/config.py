"""`gateway.toml`: the service configuration. Every section has defaults, so `gateway run`
with no file runs the embedded defaults: local broker, file sinks, state under ./var."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

from gateway.decode.limits import Limits
from gateway.held.config import HeldConfig
from gateway.keys import KeysConfig
from gateway.policy.model import REGIONS
from gateway.retention import RetentionConfig
from gateway.sinks.file.config import FileSinkConfig
from gateway.sinks.mqtt.config import MqttSinkConfig
from gateway.sinks.nats.config import NatsSinkConfig
from gateway.sources.mqtt.config import MqttSourceConfig
from gateway.spool.config import SpoolConfig


class ConfigError(Exception):
    pass


class SinkSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    type: Literal["file", "mqtt", "nats"]
    # Regions this sink serves; "*" = every region (a more specific entry wins).
    regions: tuple[str, ...] = ("*",)
    file: FileSinkConfig | None = None
    mqtt: MqttSinkConfig | None = None
    nats: NatsSinkConfig | None = None

    def __post_init__(self) -> None:
        if getattr(self, self.type) is None:
            raise ValueError(f"a {self.type} sink needs a [sinks.{self.type}] table")
        bad = [r for r in self.regions if r != "*" and r not in REGIONS]
        if bad:
            raise ValueError(f"unknown regions {bad}; known: {sorted(REGIONS)}")


class Routing(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    default_region: str | None = "us"
    registry: str | None = None  # TOML: [devices] device id = region

    def __post_init__(self) -> None:
        if self.default_region is not None and self.default_region not in REGIONS:
            raise ValueError(f"routing.default_region must be one of {sorted(REGIONS)}")


class Processing(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    batch_max: int = 500  # messages per sink commit (group commit)
    # 0: take what is queued, never wait. Under load batches form by themselves while the
    # previous one commits; at low rates waiting would only add latency.
    batch_wait_ms: float = 0.0


class GatewayConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    source: MqttSourceConfig = MqttSourceConfig()
    policies: str | None = None  # directory; None = the shipped policies
    state_dir: str = "var/gateway"  # master key, consent, spool, held records
    metrics_listen: str = "127.0.0.1:9108"  # worker N listens on port + N
    workers: int = 1
    shadow: bool = False  # enforce and count, forward nothing
    routing: Routing = Routing()
    limits: Limits = Limits()
    spool: SpoolConfig = SpoolConfig()
    held: HeldConfig = HeldConfig()
    keys: KeysConfig = KeysConfig()
    retention: RetentionConfig = RetentionConfig()
    processing: Processing = Processing()
    sinks: tuple[SinkSpec, ...] = (
        SinkSpec(type="file", file=FileSinkConfig(dir="var/gateway/sinks")),
    )

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError("workers must be >= 1")
        host, _, port = self.metrics_listen.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError("metrics_listen must be host:port")

    def sink_for(self, region: str) -> SinkSpec | None:
        for spec in self.sinks:
            if region in spec.regions:
                return spec
        for spec in self.sinks:
            if "*" in spec.regions:
                return spec
        return None


def load_config(path: Path | None) -> GatewayConfig:
    if path is None:
        return GatewayConfig()
    try:
        return msgspec.toml.decode(path.read_bytes(), type=GatewayConfig)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
