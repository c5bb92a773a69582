"""Settings of the file sink (see README.md in this folder)."""

from __future__ import annotations

import msgspec


class FileSinkConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    dir: str  # root; records go to <dir>/<region>/records.jsonl
    fsync: bool = True  # one os.fsync per batch (group commit); off only for tests/benchmarks
