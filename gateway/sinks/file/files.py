"""The file sink's files over time: `records.jsonl` holds the current UTC day; the first
write of a later day renames it `records-<YYYY-MM-DD>.jsonl` (the day it was written), so
retention can expire whole days and erasure can rewrite each file on its own."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import BinaryIO

import msgspec

from gateway.durable import fsync_dir, write_all

RECORDS_FILE = "records.jsonl"
_DATED = re.compile(r"^records-(\d{4}-\d{2}-\d{2})(?:\.\d+)?\.jsonl$")
_CHUNK = 1024 * 1024

DaysOf = Callable[[str, str], "int | None"]  # (product, kind) -> retention days, None: keep


def day_of(t: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(t))


def record_files(dir: Path) -> list[Path]:
    """Dated files oldest first, then the current one."""
    dated = sorted(p for p in dir.glob("records-*.jsonl") if _DATED.match(p.name))
    current = dir / RECORDS_FILE
    return [*dated, current] if current.exists() else dated


def roll(dir: Path, day: str) -> None:
    """Rename the current file to its day's name (a second file of a day gets `.N`)."""
    target = dir / f"records-{day}.jsonl"
    n = 1
    while target.exists():
        n += 1
        target = dir / f"records-{day}.{n}.jsonl"
    os.replace(dir / RECORDS_FILE, target)
    fsync_dir(dir)


def rewrite(path: Path, drop: Callable[[bytes], bool], quick: bytes | None = None) -> int:
    """Rewrite ``path`` without the lines ``drop`` selects; returns how many went. ``quick``:
    a byte string every dropped line contains, to skip files without one cheaply. Readers
    see the old file or the new one (tmp + fsync + rename + dir fsync); a file left with no
    line is removed."""
    with path.open("rb") as src:
        if quick is not None and not _contains(src, quick):
            return 0
        src.seek(0)
        tmp = path.with_name(path.name + ".tmp")
        dropped = kept = 0
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            out: list[bytes] = []
            for line in src:
                if drop(line):
                    dropped += 1
                    continue
                kept += 1
                out.append(line)
                if len(out) >= 4096:
                    write_all(fd, b"".join(out))
                    out.clear()
            write_all(fd, b"".join(out))
            os.fsync(fd)
        except OSError:
            tmp.unlink(missing_ok=True)  # a full disk must not keep a half copy
            raise
        finally:
            os.close(fd)
    if not dropped:
        tmp.unlink()
    elif kept or path.name == RECORDS_FILE:
        os.replace(tmp, path)
    else:
        tmp.unlink()
        path.unlink()
    if dropped:
        fsync_dir(path.parent)
    return dropped


class _Line(msgspec.Struct):
    product: str = ""
    kind: str = ""


_line = msgspec.json.Decoder(_Line)


def expire(dir: Path, today: str, days_of: DaysOf) -> int:
    """Drop the lines of dated files older than their product's and kind's retention."""
    n = 0
    now = date.fromisoformat(today)
    for path in record_files(dir):
        m = _DATED.match(path.name)
        if m is None:
            continue
        age = (now - date.fromisoformat(m.group(1))).days

        def old(line: bytes, age: int = age) -> bool:
            try:
                rec = _line.decode(line)
            except (msgspec.DecodeError, msgspec.ValidationError):
                return False
            days = days_of(rec.product, rec.kind)
            return days is not None and age > days

        n += rewrite(path, old)
    return n


def _contains(src: BinaryIO, needle: bytes) -> bool:
    tail = b""
    while chunk := src.read(_CHUNK):
        if needle in tail + chunk:
            return True
        tail = chunk[-len(needle) :]
    return False
