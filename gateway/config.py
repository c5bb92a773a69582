"""`gateway.toml`: the service configuration. Every section has defaults, so `gateway run`
with no file runs the embedded defaults: local broker, file sinks, state under ./var."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import msgspec

from gateway.config_file import (
    Path_,
    Problem,
    dotted,
    interpolate,
    locate,
    split_msgspec_error,
    toml_error_line,
)
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
    """The config file cannot be used; `problems` lists every reason, one line each."""

    def __init__(self, problems: list[Problem] | str) -> None:
        if isinstance(problems, str):
            problems = [Problem("", "", problems)]
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class StartupError(Exception):
    """The gateway cannot start: one line per problem, naming the setting and what is wrong."""


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


# Settings that are file paths: relative ones written in the file are relative to the
# file's directory, so a config means the same wherever `gateway` is started from. Defaults
# the file does not set stay relative to the working directory, as without a file.
PATH_SETTINGS = frozenset(
    {"policies", "state_dir", "registry", "dir", "ca", "cert", "key", "creds", "nkey"}
)
_UNKNOWN = re.compile(r"^Object contains unknown field `([^`]*)`$")


def rebase(doc: Any, base: Path) -> Any:
    """The decoded file with every relative path setting made relative to `base`."""
    if isinstance(doc, dict):
        return {
            k: os.path.normpath(base / v)
            if k in PATH_SETTINGS and isinstance(v, str)
            else rebase(v, base)
            for k, v in doc.items()
        }
    if isinstance(doc, list):
        return [rebase(v, base) for v in doc]
    return doc


def read_config(path: Path) -> tuple[GatewayConfig | None, list[Problem]]:
    """The config of `path` and no problems, or None and every problem found."""
    name = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, [Problem(name, "", f"cannot read: {exc.strerror}")]
    text = raw.decode("utf-8", "replace")
    try:
        doc = msgspec.toml.decode(raw)
    except msgspec.DecodeError as exc:
        line, msg = toml_error_line(str(exc))
        return None, [Problem(name, "", f"not valid TOML: {msg}", line)]
    doc, unset = interpolate(doc, os.environ)
    problems = [
        Problem(name, dotted(at), f"${{{var}}} is not set and has no default", locate(text, at))
        for at, var in unset
    ]

    def check(value: object, typ: Any, at: Path_) -> None:
        try:
            # Lax: "${PORT:-1883}" is a string that must still set an int.
            msgspec.convert(value, typ, strict=False)
        except msgspec.ValidationError as exc:
            sub, msg = split_msgspec_error(str(exc))
            full = (*at, *sub)
            if m := _UNKNOWN.match(msg):
                full, msg = (*full, m[1]), "unknown setting"
            problems.append(Problem(name, dotted(full), msg, locate(text, full)))

    # Section by section, so one run names every wrong setting, not only the first.
    types = {f.encode_name: f.type for f in msgspec.structs.fields(GatewayConfig)}
    for key, value in doc.items():
        if key not in types:
            problems.append(Problem(name, key, "unknown setting", locate(text, (key,))))
        elif key == "sinks" and isinstance(value, list):
            for i, spec in enumerate(value):
                check(spec, SinkSpec, (key, i))
        else:
            check(value, types[key], (key,))
    if not problems:
        check(doc, GatewayConfig, ())
    if problems:
        return None, sorted(problems, key=lambda p: p.line or 0)
    return msgspec.convert(rebase(doc, path.parent), GatewayConfig, strict=False), []


def load_config(path: Path | None) -> GatewayConfig:
    if path is None:
        return GatewayConfig()
    config, problems = read_config(path)
    if config is None:
        raise ConfigError(problems)
    return config
