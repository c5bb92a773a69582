"""Settings of the held store (see README.md in this folder)."""

from __future__ import annotations

import msgspec


class HeldConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_bytes: int = 64 * 1024 * 1024  # per worker, on disk; when full, acknowledging stops

    def __post_init__(self) -> None:
        if self.max_bytes <= 0:
            raise ValueError("held.max_bytes must be > 0")
