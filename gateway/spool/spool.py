"""Bounded, durable, AES-GCM encrypted FIFO of ``OutRecord``s on local disk.

Layout of ``dir``::

    seg-00000000000000000001.spool   append-only segment files, oldest first
    head                             {"v":1,"segment":N,"offset":M}: first unconsumed frame
    lock                             flock: one process per spool dir
    quarantine/                      damaged bytes moved aside (still encrypted)

This module is the spool's operations (append, peek, commit, rewrite, the bound, the head
file); the frame format is in ``frames.py``, what happens at open and on damage in
``recovery.py``.

Durability: ``append`` writes and fsyncs before returning; ``commit`` writes the head
pointer via tmp + fsync + rename. Damage never stops the spool: it is quarantined
(``recovery.py``), and only the damaged frames are lost.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import fcntl
import logging
import os
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.durable import fsync_dir, replace_file, write_all
from gateway.sinks.base import OutRecord
from gateway.spool.frames import (
    HEAD_FILE,
    KEY_BYTES,
    Head,
    Segment,
    SpoolCorrupt,
    SpoolError,
    SpoolFull,
    encode,
    frame_bytes,
    frame_size,
    open_read,
    read_frame,
    seal,
)
from gateway.spool.recovery import DAMAGE_KINDS, Recovery

__all__ = [
    "DAMAGE_KINDS",
    "DEFAULT_SEGMENT_BYTES",
    "Spool",
    "SpoolCorrupt",
    "SpoolError",
    "SpoolFull",
]

log = logging.getLogger(__name__)

DEFAULT_SEGMENT_BYTES = 4 * 1024 * 1024
LOCK_FILE = "lock"


class Spool(Recovery):
    """Durable FIFO of records; thread-safe (one lock around every operation)."""

    def __init__(
        self,
        dir: Path,
        key: builtins.bytes,
        max_bytes: int,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        on_damage: Callable[[str], None] | None = None,
    ) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"spool key must be {KEY_BYTES} bytes")
        if max_bytes <= 0 or segment_bytes <= 0:
            raise ValueError("max_bytes and segment_bytes must be > 0")
        self.dir = Path(dir)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._aead = AESGCM(key)
        self._lock = threading.Lock()
        self._segments = []
        self._head_seq = 1
        self._head_off = 0
        self._head_index = 0
        self._tail_fd: int | None = None
        self._tail_seq = 0  # segment the tail fd appends to
        self._lock_fd: int | None = None
        self._broken = False
        self.damage = Counter()
        self._on_damage = on_damage
        self._open()

    # -- public API ------------------------------------------------------------------

    @property
    def records(self) -> int:
        with self._lock:
            return sum(s.frames for s in self._segments) - self._head_index

    @property
    def bytes(self) -> int:
        """Bytes of unconsumed frames (headers included)."""
        with self._lock:
            return self._disk_bytes() - self._head_off

    @property
    def disk_bytes(self) -> int:
        """Bytes of all segment files; this is what ``max_bytes`` bounds.

        It exceeds ``bytes`` by the consumed prefix of the head segment, which is
        reclaimed when that segment is fully consumed or the spool runs empty.
        """
        with self._lock:
            return self._disk_bytes()

    def append(self, batch: Sequence[OutRecord]) -> None:
        """Append all records durably, or raise (``SpoolFull`` if over the bound)."""
        if not batch:
            return
        plains: list[builtins.bytes] = [encode(rec) for rec in batch]
        with self._lock:
            self._check_open()
            sizes = [frame_bytes(p) for p in plains]
            if self._disk_bytes() + sum(sizes) > self.max_bytes:
                raise SpoolFull(
                    f"spool {self.dir}: {len(batch)} records ({sum(sizes)} bytes) do not fit "
                    f"({self._disk_bytes()} of {self.max_bytes} bytes used)"
                )
            self._append_locked(plains, sizes)

    def peek(self, n: int) -> list[OutRecord]:
        """Up to ``n`` records from the head, oldest first, without consuming them."""
        with self._lock:
            self._check_open()
            return self._peek_locked(n)

    def rewrite(self, keep: Callable[[OutRecord], bool]) -> int:
        """Drop every unconsumed record ``keep`` refuses (erasure); returns how many.

        The kept records are re-encrypted into fresh segments after the newest one, the
        head moves onto them, then the old segments go. A crash before the head moved
        leaves old and new segments both live: duplicates (sinks dedupe on ``msg_id``), and
        the caller, who has not recorded the erasure yet, repeats it.
        """
        with self._lock:
            self._check_open()
            records = self._peek_locked(1 << 62)
            kept = [r for r in records if keep(r)]
            if len(kept) == len(records):
                return 0
            old = self._segments, self._head_seq, self._head_off, self._head_index
            seq = (self._segments[-1].seq if self._segments else self._head_seq) + 1
            self._close_tail()
            self._segments, self._head_seq, self._head_off, self._head_index = [], seq, 0, 0
            try:
                if kept:
                    plains = [encode(rec) for rec in kept]
                    self._append_locked(plains, [frame_bytes(p) for p in plains])
                self._write_head(seq, 0)
            except (OSError, SpoolError) as exc:
                self._close_tail()
                for seg in self._segments:
                    (self.dir / seg.name).unlink(missing_ok=True)
                self._segments, self._head_seq, self._head_off, self._head_index = old
                if isinstance(exc, SpoolError):
                    raise
                raise SpoolError(f"spool {self.dir}: rewrite failed: {exc.strerror}") from None
            for seg in old[0]:
                (self.dir / seg.name).unlink(missing_ok=True)
            return len(records) - len(kept)

    def commit(self, n: int) -> None:
        """Consume ``n`` records from the head, durably; fully consumed segments go away."""
        if n <= 0:
            return
        with self._lock:
            self._check_open()
            segs = self._segments
            available = sum(s.frames for s in segs) - self._head_index
            if n > available:
                raise ValueError(f"commit({n}) but only {available} records are spooled")
            i, off, index, remaining = 0, self._head_off, self._head_index, n
            try:
                while remaining:
                    seg = segs[i]
                    if off >= seg.size:
                        i, off, index = i + 1, 0, 0
                        continue
                    with open_read(self.dir / seg.name) as fd:
                        while remaining and off < seg.size:
                            if off in seg.holes:
                                off = seg.holes[off]
                                continue
                            off += frame_size(fd, seg, off)
                            index += 1
                            remaining -= 1
                # A head at the end of a segment (or of its last hole) moves on to the next
                # one; past the newest one the spool is empty and starts over in a fresh
                # segment.
                while i < len(segs) and segs[i].holes.get(off, off) >= segs[i].size:
                    i, off, index = i + 1, 0, 0
                seq = segs[i].seq if i < len(segs) else segs[-1].seq + 1
                self._write_head(seq, off)
            except OSError as exc:
                raise SpoolError(f"spool {self.dir}: commit failed: {exc.strerror}") from None
            dead, self._segments = segs[:i], segs[i:]
            self._head_seq, self._head_off, self._head_index = seq, off, index
            if any(seg.seq == self._tail_seq for seg in dead):
                self._close_tail()
            for seg in dead:
                with contextlib.suppress(FileNotFoundError):
                    (self.dir / seg.name).unlink()

    def close(self) -> None:
        with self._lock:
            self._close_tail()
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = None

    # -- open ------------------------------------------------------------------------

    def _open(self) -> None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock_fd = os.open(self.dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(lock_fd)
            raise SpoolError(f"spool {self.dir} is in use by another process") from None
        self._lock_fd = lock_fd
        try:
            self._recover()
        except BaseException:
            self.close()
            raise

    # -- internals (lock held) -------------------------------------------------------

    def _peek_locked(self, n: int) -> list[OutRecord]:
        out: list[OutRecord] = []
        index = 0
        off = self._head_off
        while len(out) < n and index < len(self._segments):
            seg = self._segments[index]
            if off >= seg.size:
                index += 1
                off = 0
                continue
            try:
                with open_read(self.dir / seg.name) as fd:
                    while len(out) < n and off < seg.size:
                        if off in seg.holes:
                            off = seg.holes[off]
                            continue
                        try:
                            rec, size = read_frame(self._aead, self.dir, fd, seg, off)
                        except SpoolCorrupt:
                            self._damaged_frame(seg, off)  # now a hole; read on past it
                            continue
                        out.append(rec)
                        off += size
            except OSError as exc:
                raise SpoolError(f"spool {seg.name}: read failed: {exc.strerror}") from None
        return out

    def _check_open(self) -> None:
        if self._lock_fd is None:
            raise SpoolError(f"spool {self.dir} is closed")
        if self._broken:
            raise SpoolError(f"spool {self.dir} needs a reopen after a failed append")

    def _disk_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    def _append_locked(self, plains: list[builtins.bytes], sizes: list[int]) -> None:
        # Placement first: the AAD needs each frame's segment name and offset.
        if self._segments:
            seg, is_new = self._segments[-1], False
        else:
            seg, is_new = Segment(self._head_seq, 0, 0), True
        plan: list[tuple[Segment, bool, list[builtins.bytes]]] = []
        size = seg.size
        chunk: list[builtins.bytes] = []
        for plain, fsize in zip(plains, sizes, strict=True):
            if size > 0 and size + fsize > self.segment_bytes:
                plan.append((seg, is_new, chunk))
                seg, is_new, size, chunk = Segment(seg.seq + 1, 0, 0), True, 0, []
            chunk.append(seal(self._aead, plain, seg.name, size))
            size += fsize
        plan.append((seg, is_new, chunk))
        plan = [step for step in plan if step[2]]

        written: list[tuple[Segment, bool, int]] = []  # for undo: old size
        try:
            for seg, is_new, frames in plan:
                fd = self._tail_for(seg, is_new)
                written.append((seg, is_new, seg.size))
                write_all(fd, b"".join(frames))
                os.fsync(fd)
            if any(is_new for _, is_new, _ in plan):
                fsync_dir(self.dir)  # a new segment's directory entry must survive too
        except OSError as exc:
            self._undo(written)
            cls = SpoolFull if exc.errno == errno.ENOSPC else SpoolError
            raise cls(f"spool {self.dir}: append failed: {exc.strerror}") from None
        for seg, is_new, frames in plan:
            seg.size += sum(len(f) for f in frames)
            seg.frames += len(frames)
            if is_new:
                self._segments.append(seg)

    def _tail_for(self, seg: Segment, is_new: bool) -> int:
        """fd of ``seg`` as the append target; rolling on closes the previous one."""
        if self._tail_fd is not None and self._tail_seq == seg.seq:
            return self._tail_fd
        self._close_tail()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
        if is_new:
            flags |= os.O_CREAT | os.O_EXCL
        self._tail_fd = os.open(self.dir / seg.name, flags, 0o600)
        self._tail_seq = seg.seq
        return self._tail_fd

    def _undo(self, written: list[tuple[Segment, bool, int]]) -> None:
        """Nothing of a failed append may count: cut every touched file back."""
        self._close_tail()
        for seg, is_new, old_size in written:
            path = self.dir / seg.name
            try:
                if is_new:
                    path.unlink(missing_ok=True)
                else:
                    os.truncate(path, old_size)
            except OSError:
                # The file now holds bytes our offsets do not know about; appending on
                # would put frames at offsets their AAD does not name. Reopen recovers.
                self._broken = True
                log.error("spool: could not undo a failed append in %s", seg.name)

    def _close_tail(self) -> None:
        if self._tail_fd is not None:
            os.close(self._tail_fd)
            self._tail_fd = None

    def _write_head(self, seq: int, off: int) -> None:
        replace_file(self.dir / HEAD_FILE, msgspec.json.encode(Head(1, seq, off)))
