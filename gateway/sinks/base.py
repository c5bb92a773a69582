"""The sink contract: where accepted records go, one region per sink instance.

Sinks are synchronous; the service calls them from a worker thread. ``write`` returns only
once the whole batch is durable at the destination, otherwise it raises ``SinkError``,
whose ``delivered`` says how many records at the start of the batch were acknowledged:
only the rest is offered again. Delivery is at-least-once: records after that prefix may
still have arrived (``msg_id`` is the dedupe key).

Error messages never carry record content (bodies, devices, ids): only field names,
counts, sink names, regions and exception type names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

import msgspec

__all__ = [
    "ERASURE_KIND",
    "ErasureRequest",
    "OutRecord",
    "Sink",
    "SinkError",
    "check_batch",
    "check_token",
    "device_of",
    "erasure_body",
]

# Reserved kind for erasure requests parked in a spool; no policy kind can take this
# value (policy kinds are info/props/event/command) so it never collides with data.
ERASURE_KIND = "_erasure"

_TOKEN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")


class OutRecord(msgspec.Struct, frozen=True):
    msg_id: str  # stable id of the accepted message (dedupe key), hex
    product: str
    kind: str
    region: str
    body: bytes  # the encoded JSON record, one line, no newline
    # The device pseudonym: sinks that can address it (a NATS subject token) let erasure
    # find the device's records. "" in records spooled by an older version.
    device: str = ""


class ErasureRequest(msgspec.Struct, frozen=True, tag="erasure", tag_field="type"):
    """Wire form of an erasure request: ``{"type":"erasure","product":..,...}``."""

    product: str
    device: str  # pseudonymous device id, never the raw one
    requested_at: float  # unix seconds


class SinkError(Exception):
    """The destination did not durably accept; the message never contains record content.

    ``delivered``: how many records at the start of the batch it did accept (acknowledged
    in order), which need not be offered again. 0 when nothing is known to have arrived.
    """

    def __init__(self, message: str, delivered: int = 0) -> None:
        super().__init__(message)
        self.delivered = delivered


class Sink(Protocol):
    name: str  # "file" | "mqtt" | "nats"
    region: str
    remote: bool  # False: each worker has its own (files), so each erases its own

    def open(self) -> None: ...

    def write(self, batch: Sequence[OutRecord]) -> None:
        """Durable at the destination on return, else raises SinkError."""
        ...

    def erase(self, product: str, device: str, requested_at: float) -> None:
        """Erase a pseudonymous device; durable on return or SinkError."""
        ...

    def erase_many(self, devices: Sequence[tuple[str, str]], requested_at: float) -> int:
        """Erase (product, pseudonym) pairs at once; durable on return or SinkError.
        Returns the records removed, where the sink can tell (else 0)."""
        ...

    def close(self) -> None: ...


_erasure_encoder = msgspec.json.Encoder()


def erasure_body(product: str, device: str, requested_at: float) -> bytes:
    return _erasure_encoder.encode(ErasureRequest(product, device, requested_at))


_DEVICE = re.compile(rb'"device":"([^"]*)"')


def device_of(rec: OutRecord) -> str:
    """The record's device pseudonym (erasure). Records spooled by an older version do not
    carry it alongside: their encoded body names it."""
    if rec.device:
        return rec.device
    m = _DEVICE.search(rec.body)
    return m.group(1).decode() if m else ""


def check_token(field: str, value: str) -> None:
    """Product, kind and region become topic levels, subject tokens and directory names.

    One conservative alphabet that is safe for all three (no ``/ + # . * >``, no
    whitespace, no ``..``). Only the field name goes into the message, never the value.
    """
    if _TOKEN.fullmatch(value) is None:
        raise ValueError(f"{field} is not a valid topic/subject token")


def check_batch(sink_region: str, batch: Sequence[OutRecord]) -> None:
    """Everything any sink would refuse, checked before a batch is written or spooled.

    Violations are caller bugs, not outages, so they are ValueErrors: a spool must never
    hold a record that no sink can take. The region check is the data residency guard.
    """
    for rec in batch:
        if rec.region != sink_region:
            raise ValueError(f"record region does not match sink region {sink_region!r}")
        check_token("product", rec.product)
        check_token("kind", rec.kind)
        if rec.kind == ERASURE_KIND:
            raise ValueError("record kind is reserved for erasure requests")
        if b"\n" in rec.body or b"\r" in rec.body:
            raise ValueError("record body must be a single line")
