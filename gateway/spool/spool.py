"""Bounded, durable, AES-GCM encrypted FIFO of ``OutRecord``s on local disk.

Layout of ``dir``::

    seg-00000000000000000001.spool   append-only segment files, oldest first
    head                             {"v":1,"segment":N,"offset":M}: first unconsumed frame
    lock                             flock: one process per spool dir

Frame: ``len (4 bytes, big-endian) | nonce (12 random bytes) | ciphertext`` where ``len`` is
the length of the ciphertext (msgpack-encoded record + 16-byte GCM tag). The AAD binds
every frame to its segment name and byte offset, so frames cannot be moved between or
within segments without failing authentication.

Durability: ``append`` writes and fsyncs before returning; ``commit`` writes the head
pointer via tmp + fsync + rename. A crash can leave a torn last frame (the file ends
inside it): ``open`` cuts it off, since the append that wrote it never returned. Any
other damage raises ``SpoolCorrupt`` naming the file and offset, never content.

Limits of the scheme: random 96-bit nonces allow about 2**32 frames per key, and
dropping whole frames off the end of the newest segment is not detectable (there is no
authenticated tail); both are acceptable for a local outage buffer.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import fcntl
import logging
import os
import re
import secrets
import struct
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.durable import fsync_dir, replace_file, write_all
from gateway.sinks.base import OutRecord

__all__ = [
    "DEFAULT_SEGMENT_BYTES",
    "Spool",
    "SpoolCorrupt",
    "SpoolError",
    "SpoolFull",
]

log = logging.getLogger(__name__)

DEFAULT_SEGMENT_BYTES = 4 * 1024 * 1024
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
LEN = struct.Struct(">I")
HEADER_BYTES = LEN.size + NONCE_BYTES
MAX_CIPHERTEXT = 64 * 1024 * 1024  # a larger length field can only be damage
_AAD_PREFIX = b"gateway-spool-v1\x00"
_SEGMENT_RE = re.compile(r"^seg-(\d{20})\.spool$")
HEAD_FILE = "head"
LOCK_FILE = "lock"


class SpoolError(Exception):
    """The spool cannot take or give records; messages never contain record content."""


class SpoolFull(SpoolError):
    """The batch does not fit the byte bound (or the disk); nothing of it was written."""


class SpoolCorrupt(SpoolError):
    """A frame on disk is damaged or was tampered with."""


class _Head(msgspec.Struct, frozen=True):
    v: int
    segment: int
    offset: int


@dataclass
class _Segment:
    seq: int
    size: int  # bytes on disk (all complete frames)
    frames: int  # complete frames in the file, consumed or not

    @property
    def name(self) -> str:
        return _segment_name(self.seq)


def _segment_name(seq: int) -> str:
    return f"seg-{seq:020d}.spool"


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(OutRecord)


class Spool:
    """Durable FIFO of records; thread-safe (one lock around every operation)."""

    def __init__(
        self,
        dir: Path,
        key: builtins.bytes,
        max_bytes: int,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
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
        self._segments: list[_Segment] = []  # oldest first; [0] holds the head
        self._head_seq = 1
        self._head_off = 0
        self._head_index = 0  # frames of the head segment already consumed
        self._tail_fd: int | None = None
        self._tail_seq = 0  # segment the tail fd appends to
        self._lock_fd: int | None = None
        self._broken = False
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
        plains: list[builtins.bytes] = [_encoder.encode(rec) for rec in batch]
        with self._lock:
            self._check_open()
            sizes = [HEADER_BYTES + len(p) + TAG_BYTES for p in plains]
            if self._disk_bytes() + sum(sizes) > self.max_bytes:
                raise SpoolFull(
                    f"spool {self.dir}: {len(batch)} records ({sum(sizes)} bytes) do not fit "
                    f"({self._disk_bytes()} of {self.max_bytes} bytes used)"
                )
            self._append_locked(plains, sizes)

    def peek(self, n: int) -> list[OutRecord]:
        """Up to ``n`` records from the head, oldest first, without consuming them."""
        out: list[OutRecord] = []
        with self._lock:
            self._check_open()
            index = 0
            off = self._head_off
            while len(out) < n and index < len(self._segments):
                seg = self._segments[index]
                if off >= seg.size:
                    index += 1
                    off = 0
                    continue
                try:
                    with _open_read(self.dir / seg.name) as fd:
                        while len(out) < n and off < seg.size:
                            rec, size = self._read_frame(fd, seg, off)
                            out.append(rec)
                            off += size
                except OSError as exc:
                    raise SpoolError(f"spool {seg.name}: read failed: {exc.strerror}") from None
        return out

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
                    with _open_read(self.dir / seg.name) as fd:
                        while remaining and off < seg.size:
                            off += self._frame_size(fd, seg, off)
                            index += 1
                            remaining -= 1
                # A head at the end of a segment moves on to the next one; past the
                # newest one the spool is empty and starts over in a fresh segment.
                while i < len(segs) and off >= segs[i].size:
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

    # -- open / recovery -------------------------------------------------------------

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

    def _recover(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.dir / f"{HEAD_FILE}.tmp").unlink()
        seqs = sorted(
            int(m.group(1)) for p in self.dir.iterdir() if (m := _SEGMENT_RE.match(p.name))
        )
        head = self._read_head() or _Head(1, seqs[0] if seqs else 1, 0)
        for seq in seqs:
            if seq < head.segment:
                # Consumed; a crash came between the head update and the unlink.
                (self.dir / _segment_name(seq)).unlink()
        live = [s for s in seqs if s >= head.segment]
        self._segments = [self._scan(seq, last=k == len(live) - 1) for k, seq in enumerate(live)]
        self._head_seq = head.segment
        if live and live[0] == head.segment:
            first = self._segments[0]
            if head.offset > first.size:
                raise SpoolCorrupt(f"spool head points past the end of {first.name}")
            self._head_index = self._count_frames(first, head.offset)
            self._head_off = head.offset
        elif head.offset or live:
            # Committed frames are fsynced before the head moves, so only damage or
            # outside interference can remove the segment the head points into.
            raise SpoolCorrupt(f"spool {self.dir}: head segment {head.segment} is missing")

    def _read_head(self) -> _Head | None:
        path = self.dir / HEAD_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            head = msgspec.json.decode(raw, type=_Head)
        except msgspec.DecodeError:
            raise SpoolCorrupt(f"spool {self.dir}: head file is unreadable") from None
        if head.v != 1 or head.segment < 1 or head.offset < 0:
            raise SpoolCorrupt(f"spool {self.dir}: head file has invalid values")
        return head

    def _scan(self, seq: int, last: bool) -> _Segment:
        """Count complete frames; cut a torn final frame off the newest segment."""
        seg = _Segment(seq, 0, 0)
        path = self.dir / seg.name
        data = path.read_bytes()
        off = 0
        while off < len(data):
            torn = len(data) - off < HEADER_BYTES
            if not torn:
                (clen,) = LEN.unpack_from(data, off)
                if not TAG_BYTES <= clen <= MAX_CIPHERTEXT:
                    raise SpoolCorrupt(f"spool frame has an invalid length: {seg.name} at {off}")
                torn = off + HEADER_BYTES + clen > len(data)
            if torn:
                if not last:
                    raise SpoolCorrupt(f"spool segment is truncated: {seg.name} at {off}")
                log.warning(
                    "spool: cutting a torn final frame (%d bytes) off %s at %d",
                    len(data) - off,
                    seg.name,
                    off,
                )
                fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.ftruncate(fd, off)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                break
            off += HEADER_BYTES + clen
            seg.frames += 1
        seg.size = off
        return seg

    def _count_frames(self, seg: _Segment, upto: int) -> int:
        """Frames before ``upto``; ``upto`` must be a frame boundary."""
        count = 0
        off = 0
        with _open_read(self.dir / seg.name) as fd:
            while off < upto:
                off += self._frame_size(fd, seg, off)
                count += 1
        if off != upto:
            raise SpoolCorrupt(f"spool head is not on a frame boundary: {seg.name} at {upto}")
        return count

    # -- internals (lock held) -------------------------------------------------------

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
            seg, is_new = _Segment(self._head_seq, 0, 0), True
        plan: list[tuple[_Segment, bool, list[builtins.bytes]]] = []
        size = seg.size
        chunk: list[builtins.bytes] = []
        for plain, fsize in zip(plains, sizes, strict=True):
            if size > 0 and size + fsize > self.segment_bytes:
                plan.append((seg, is_new, chunk))
                seg, is_new, size, chunk = _Segment(seg.seq + 1, 0, 0), True, 0, []
            nonce = secrets.token_bytes(NONCE_BYTES)
            ct = self._aead.encrypt(nonce, plain, _aad(seg.name, size))
            chunk.append(LEN.pack(len(ct)) + nonce + ct)
            size += fsize
        plan.append((seg, is_new, chunk))
        plan = [step for step in plan if step[2]]

        written: list[tuple[_Segment, bool, int]] = []  # for undo: old size
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

    def _tail_for(self, seg: _Segment, is_new: bool) -> int:
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

    def _undo(self, written: list[tuple[_Segment, bool, int]]) -> None:
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

    def _frame_size(self, fd: int, seg: _Segment, off: int) -> int:
        header = os.pread(fd, LEN.size, off)
        if len(header) != LEN.size:
            raise SpoolCorrupt(f"spool frame is truncated: {seg.name} at {off}")
        (clen,) = LEN.unpack(header)
        if not TAG_BYTES <= clen <= MAX_CIPHERTEXT or off + HEADER_BYTES + clen > seg.size:
            raise SpoolCorrupt(f"spool frame has an invalid length: {seg.name} at {off}")
        return HEADER_BYTES + int(clen)

    def _read_frame(self, fd: int, seg: _Segment, off: int) -> tuple[OutRecord, int]:
        size = self._frame_size(fd, seg, off)
        raw = os.pread(fd, size, off)
        if len(raw) != size:
            raise SpoolCorrupt(f"spool frame is truncated: {seg.name} at {off}")
        nonce = raw[LEN.size : HEADER_BYTES]
        try:
            plain = self._aead.decrypt(nonce, raw[HEADER_BYTES:], _aad(seg.name, off))
        except InvalidTag:
            raise SpoolCorrupt(
                f"spool frame failed authentication (tampered, damaged or wrong key): "
                f"{self.dir / seg.name} at offset {off}"
            ) from None
        try:
            return _decoder.decode(plain), size
        except msgspec.DecodeError:
            raise SpoolCorrupt(
                f"spool frame does not hold a record: {self.dir / seg.name} at offset {off}"
            ) from None

    def _write_head(self, seq: int, off: int) -> None:
        replace_file(self.dir / HEAD_FILE, msgspec.json.encode(_Head(1, seq, off)))


def _aad(segment_name: str, offset: int) -> bytes:
    return _AAD_PREFIX + segment_name.encode() + struct.pack(">Q", offset)


@contextlib.contextmanager
def _open_read(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)
