"""Retention: how long the gateway keeps what it stores itself (file sink files, held
records, spooled records), per product and kind.

A policy's `retention_days` (per kind, else per product) wins; else `[retention]
default_days`; 0 there keeps records until they are delivered or erased. Records are kept
at least that many days and removed within a day after (the file sink expires whole days).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import msgspec

from gateway.sinks.base import ERASURE_KIND, OutRecord

DAY_S = 86400.0


class RetentionConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    default_days: int = 30  # for products whose policy says nothing; 0 = no limit
    check_interval_s: float = 3600.0  # how often stored records are checked

    def __post_init__(self) -> None:
        if self.default_days < 0:
            raise ValueError("retention.default_days must be >= 0")
        if self.check_interval_s <= 0:
            raise ValueError("retention.check_interval_s must be > 0")


class _Received(msgspec.Struct):
    received: datetime


_received = msgspec.json.Decoder(_Received)

# (product, kind) -> days, or None for no limit.
DaysOf = Callable[[str, str], int | None]


def expired(days_of: DaysOf, now: float) -> Callable[[OutRecord], bool]:
    """A predicate: the record is older than its retention (erasure markers never are)."""

    def check(rec: OutRecord) -> bool:
        if rec.kind == ERASURE_KIND:
            return False
        days = days_of(rec.product, rec.kind)
        if days is None:
            return False
        try:
            received = _received.decode(rec.body).received.timestamp()
        except (msgspec.DecodeError, msgspec.ValidationError):
            return False  # not ours to judge; kept
        return now - received > days * DAY_S

    return check
