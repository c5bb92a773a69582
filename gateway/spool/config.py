"""Settings of a sink's spool (see README.md in this folder)."""

from __future__ import annotations

import msgspec

from gateway.spool.spool import DEFAULT_SEGMENT_BYTES


class SpoolConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_bytes: int = 256 * 1024 * 1024  # bound on the segment files on disk
    segment_bytes: int = DEFAULT_SEGMENT_BYTES
    retry_s: float = 2.0  # how often a down sink is retried while records are spooled

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.segment_bytes <= 0:
            raise ValueError("max_bytes and segment_bytes must be > 0")
        if self.retry_s <= 0:
            raise ValueError("retry_s must be > 0")
