"""Held records: enforced records that no sink may receive (the device's region is not one
its policy names, or no sink serves that region yet), kept local in `<state>/worker-N/held/`.

The same bounded, AES-GCM encrypted store as a sink's spool, under a key of its own (HKDF
purpose `held`): nothing of a record is readable on disk. Full means full: the write raises,
the service retries and stops acknowledging meanwhile, as for a full spool. Erased on
withdrawal like everything else the gateway keeps; `gateway held` lists (counts only),
replays to a sink configured later, and purges.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from gateway.sinks.base import OutRecord, device_of
from gateway.spool.spool import Spool

PLAINTEXT_FILES = ("records.jsonl", "erasure.jsonl")  # held by versions before encryption


class HeldStore:
    def __init__(self, dir: Path, key: bytes, max_bytes: int) -> None:
        self.dir = dir
        self._spool = Spool(dir, key, max_bytes)
        self._import_plaintext()

    @property
    def records(self) -> int:
        return self._spool.records

    @property
    def disk_bytes(self) -> int:
        return self._spool.disk_bytes

    def write(self, batch: Sequence[OutRecord]) -> None:
        """Durable on return, or SpoolError (SpoolFull when over the bound or the disk)."""
        self._spool.append(batch)

    def erase(self, devices: Collection[str]) -> int:
        """Drop every record of these pseudonyms; returns how many."""
        return self._spool.rewrite(lambda r: device_of(r) not in devices)

    def drop(self, unwanted: Callable[[OutRecord], bool]) -> int:
        return self._spool.rewrite(lambda r: not unwanted(r))

    def all(self) -> list[OutRecord]:
        return self._spool.peek(1 << 62)

    def counts(self) -> Counter[tuple[str, str, str]]:
        """(product, region, kind) -> records: what `gateway held list` shows, never values."""
        return Counter((r.product, r.region or "-", r.kind) for r in self.all())

    def close(self) -> None:
        self._spool.close()

    def _import_plaintext(self) -> None:
        """Encrypt what an older version left in plaintext, then remove the plaintext."""
        path = self.dir / PLAINTEXT_FILES[0]
        if path.exists():
            batch = []
            for line in path.read_bytes().splitlines():
                try:
                    doc = json.loads(line)
                    batch.append(
                        OutRecord(
                            doc["id"],
                            doc["product"],
                            doc["kind"],
                            doc.get("region", ""),
                            line,
                            doc.get("device", ""),
                        )
                    )
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line: its batch was never acknowledged
            self._spool.append(batch)
        for name in PLAINTEXT_FILES:
            p = self.dir / name
            if p.exists():
                os.unlink(p)
