"""Settings of the NATS JetStream sink (see README.md in this folder)."""

from __future__ import annotations

import msgspec


class NatsTlsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    ca: str | None = None  # CA bundle to verify the server; None = system store
    cert: str | None = None  # client certificate (mutual TLS)
    key: str | None = None  # its private key

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("tls.cert and tls.key go together")


class NatsSinkConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    url: str  # e.g. "nats://127.0.0.1:4222" (tls:// for TLS)
    stream: str = "GATEWAY"
    subject_prefix: str = "gateway"
    # connect, stream setup, and the longest wait without any PubAck: a record's timeout
    # runs from its sending or the last PubAck, never from the start of its batch
    timeout_s: float = 10.0
    max_inflight: int = 1000  # publishes awaiting a PubAck at once
    max_inflight_bytes: int = 256 * 1024  # payload bytes awaiting a PubAck at once
    duplicate_window_s: float = 120.0  # JetStream msg-id dedupe window (at least)
    name: str = ""  # connection name shown in server monitoring; "" = "gateway-sink-<region>"
    # Authentication: one of a credentials file (user JWT + nkey seed, e.g. from `nsc`), an
    # nkey seed file, or a user whose password is in the environment (never in the file).
    creds: str | None = None
    nkey: str | None = None
    user: str | None = None
    password_env: str | None = None
    tls: NatsTlsConfig | None = None  # also used for nats:// when the server requires TLS

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        if sum(x is not None for x in (self.creds, self.nkey, self.user)) > 1:
            raise ValueError("creds, nkey and user are alternatives: set one")
        if self.password_env is not None and self.user is None:
            raise ValueError("password_env needs a user")
        if self.max_inflight <= 0 or self.max_inflight_bytes <= 0:
            raise ValueError("max_inflight and max_inflight_bytes must be > 0")
        if self.duplicate_window_s <= 0:
            raise ValueError("duplicate_window_s must be > 0")
        if not self.stream or any(c in ". *>\t\r\n" for c in self.stream):
            raise ValueError("stream is not a valid JetStream stream name")
        if not self.subject_prefix or any(c in " *>\t\r\n" for c in self.subject_prefix):
            raise ValueError("subject_prefix must be non-empty and free of wildcards")
