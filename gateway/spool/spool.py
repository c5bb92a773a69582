"""Bounded, durable, AES-GCM encrypted FIFO of ``OutRecord``s on local disk.

Layout of ``dir``::

    seg-00000000000000000001.spool   append-only segment files, oldest first
    head                             {"v":1,"segment":N,"offset":M}: first unconsumed frame
    lock                             flock: one process per spool dir
    quarantine/                      damaged bytes moved aside (still encrypted)

Frame: ``len (4 bytes, big-endian) | nonce (12 random bytes) | ciphertext`` where ``len`` is
the length of the ciphertext (msgpack-encoded record + 16-byte GCM tag). The AAD binds
every frame to its segment name and byte offset, so frames cannot be moved between or
within segments without failing authentication.

Durability: ``append`` writes and fsyncs before returning; ``commit`` writes the head
pointer via tmp + fsync + rename. A crash can leave a torn last frame (the file ends
inside it): ``open`` cuts it off, since the append that wrote it never returned.

Damage never stops the spool: a frame that fails authentication, a damaged length field,
a truncated older segment are quarantined (the byte range is copied to
``quarantine/<segment>.<start>-<end>`` and skipped; the next frame is found again by
authenticating candidates), an unreadable or impossible head file is moved to
``quarantine/`` and reading starts over at the oldest segment (duplicates, never loss).
Each is counted (``damage``, and the ``on_damage`` callback) and logged with the file and
offset, never content. Only the damaged frames are lost.

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
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
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
# A length field <= MAX_CIPHERTEXT (0x04000000) starts with a byte <= 4: where a frame may
# start again after damage.
_LENGTH_START = re.compile(rb"[\x00-\x04]")
HEAD_FILE = "head"
LOCK_FILE = "lock"
QUARANTINE_DIR = "quarantine"

# What `damage` counts: a frame that failed authentication (or held no record), a damaged
# length field, an older segment cut short, an unreadable or impossible head file, a torn
# final frame cut off the newest segment (after a crash mid-append, or damage).
DAMAGE_KINDS = ("frame", "length", "segment", "head", "torn_tail")


class SpoolError(Exception):
    """The spool cannot take or give records; messages never contain record content."""


class SpoolFull(SpoolError):
    """The batch does not fit the byte bound (or the disk); nothing of it was written."""


class SpoolCorrupt(SpoolError):
    """A frame on disk is damaged or was tampered with (quarantined, not raised, by the
    public API)."""


class _Head(msgspec.Struct, frozen=True):
    v: int
    segment: int
    offset: int


@dataclass
class _Segment:
    seq: int
    size: int  # bytes on disk (all complete frames and quarantined ranges)
    frames: int  # complete frames in the file, consumed or not
    holes: dict[int, int] = field(default_factory=dict)  # quarantined ranges: start -> end

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
        self._segments: list[_Segment] = []  # oldest first; [0] holds the head
        self._head_seq = 1
        self._head_off = 0
        self._head_index = 0  # frames of the head segment already consumed
        self._tail_fd: int | None = None
        self._tail_seq = 0  # segment the tail fd appends to
        self._lock_fd: int | None = None
        self._broken = False
        self.damage: Counter[str] = Counter()  # DAMAGE_KINDS found by this instance
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
                    plains = [_encoder.encode(rec) for rec in kept]
                    self._append_locked(plains, [HEADER_BYTES + len(p) + TAG_BYTES for p in plains])
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
                    with _open_read(self.dir / seg.name) as fd:
                        while remaining and off < seg.size:
                            if off in seg.holes:
                                off = seg.holes[off]
                                continue
                            off += self._frame_size(fd, seg, off)
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
        head = self._read_head()
        if head is not None and not self._head_fits(head, seqs):
            self._quarantine_head("points to no segment that could hold it")
            head = None
        if head is None:
            head = _Head(1, seqs[0] if seqs else 1, 0)
        for seq in seqs:
            if seq < head.segment:
                # Consumed; a crash came between the head update and the unlink.
                (self.dir / _segment_name(seq)).unlink()
        live = [s for s in seqs if s >= head.segment]
        self._segments = [_Segment(seq, 0, 0) for seq in live]
        for k, seg in enumerate(self._segments):
            self._scan(seg, last=k == len(live) - 1)
        self._head_seq = head.segment
        if live:  # live[0] is the head segment
            first = self._segments[0]
            index = self._count_frames(first, head.offset)
            if index is None:
                self._quarantine_head(f"offset {head.offset} is no frame start in {first.name}")
                self._head_index, self._head_off = 0, 0
            else:
                self._head_index, self._head_off = index, head.offset

    def _head_fits(self, head: _Head, seqs: list[int]) -> bool:
        """A head names a segment that exists, or the one after the newest at offset 0 (the
        spool ran empty, and a crash came before the consumed segments were unlinked).
        Anything else would make recovery delete unconsumed segments, or skip records of a
        segment: damage. With no segment at all, any offset but 0 is damage too."""
        if not seqs:
            return head.offset == 0
        return head.segment in seqs or (head.segment == seqs[-1] + 1 and head.offset == 0)

    def _read_head(self) -> _Head | None:
        path = self.dir / HEAD_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            head = msgspec.json.decode(raw, type=_Head)
        except msgspec.DecodeError:
            self._quarantine_head("unreadable")
            return None
        if head.v != 1 or head.segment < 1 or head.offset < 0:
            self._quarantine_head("invalid values")
            return None
        return head

    def _quarantine_head(self, why: str) -> None:
        """Move the head file aside: reading starts over at the oldest segment, so records
        already delivered may be delivered again (the sinks' dedupe key), none is lost."""
        qdir = self._quarantine_dir()
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.dir / HEAD_FILE, qdir / f"{HEAD_FILE}.{time.time_ns()}")
        fsync_dir(self.dir)
        self._count_damage("head", f"head file {why}: moved aside, reading from the oldest segment")

    def _scan(self, seg: _Segment, last: bool) -> None:
        """(Re)count the frames of ``seg`` from its file. Damaged ranges become holes, with
        their bytes quarantined; a torn final frame of the newest segment is cut off."""
        path = self.dir / seg.name
        data = path.read_bytes()
        off = frames = 0
        while off < len(data):
            if off in seg.holes:
                off = seg.holes[off]
                continue
            size = _frame_at(data, off)
            if size is not None:
                off += size
                frames += 1
                continue
            torn = _torn_at(data, off)
            nxt = self._resync(seg, data, off)
            if nxt < len(data):  # frames follow: the framing was damaged here
                self._quarantine(seg, data, off, nxt, "length")
                off = nxt
            elif last and torn:
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
                data = data[:off]
                self._count_damage("torn_tail", f"{seg.name} at {off}: torn final frame cut off")
            else:  # an older segment cut short, or a damaged last length field
                self._quarantine(seg, data, off, len(data), "segment" if torn else "length")
                off = len(data)
        seg.size = len(data)
        seg.frames = frames

    def _count_frames(self, seg: _Segment, upto: int) -> int | None:
        """Frames before ``upto``; None if ``upto`` is no frame boundary."""
        count = 0
        off = 0
        with _open_read(self.dir / seg.name) as fd:
            while off < min(upto, seg.size):
                if off in seg.holes:
                    off = seg.holes[off]
                    continue
                off += self._frame_size(fd, seg, off)
                count += 1
        return count if off == upto else None

    # -- damage (lock held) ------------------------------------------------------------

    def _damaged_frame(self, seg: _Segment, off: int) -> None:
        """The frame at ``off`` failed authentication, held no record, or its length is
        no longer plausible: quarantine it (up to the next authentic frame) and recount."""
        data = (self.dir / seg.name).read_bytes()
        size = _frame_at(data, off)
        end = off + size if size is not None else -1
        # The damage may be in the length field too: its end counts only if an authentic
        # frame starts there (or the file ends there).
        if not (end == len(data) or (0 < end < len(data) and self._authentic(seg, data, end))):
            end = self._resync(seg, data, off)
        # max(): the file may have shrunk below `off` under us; the hole must move us on.
        self._quarantine(seg, data, off, max(end, off + 1), "frame")
        self._scan(seg, last=seg is self._segments[-1])
        if seg.seq == self._head_seq and self._segments and seg is self._segments[0]:
            self._head_index = self._count_frames(seg, self._head_off) or 0

    def _resync(self, seg: _Segment, data: builtins.bytes, start: int) -> int:
        """Offset of the first authentic frame after ``start``, or the end of ``data``."""
        for m in _LENGTH_START.finditer(data, start + 1):
            p = m.start()
            if self._authentic(seg, data, p):
                return p
        return len(data)

    def _authentic(self, seg: _Segment, data: builtins.bytes, off: int) -> bool:
        size = _frame_at(data, off)
        if size is None:
            return False
        nonce = data[off + LEN.size : off + HEADER_BYTES]
        try:
            self._aead.decrypt(nonce, data[off + HEADER_BYTES : off + size], _aad(seg.name, off))
        except InvalidTag:
            return False
        return True

    def _quarantine(
        self, seg: _Segment, data: builtins.bytes, start: int, end: int, what: str
    ) -> None:
        """Skip ``[start, end)`` of ``seg`` from now on; its bytes (still encrypted) go to
        ``quarantine/``, once: damage found again after a restart is not counted again."""
        seg.holes[start] = end
        qdir = self._quarantine_dir()
        path = qdir / f"{seg.name}.{start}-{end}"
        if path.exists():
            return
        try:
            replace_file(path, data[start:end])
        except OSError as exc:
            log.error("spool: could not write %s: %s", path, exc.strerror)
        self._count_damage(what, f"{seg.name} bytes {start}-{end} quarantined to {qdir.name}/")

    def _quarantine_dir(self) -> Path:
        qdir = self.dir / QUARANTINE_DIR
        qdir.mkdir(mode=0o700, exist_ok=True)
        return qdir

    def _count_damage(self, what: str, detail: str) -> None:
        self.damage[what] += 1
        log.error("spool %s: damaged (%s): %s", self.dir, what, detail)
        if self._on_damage is not None:
            self._on_damage(what)

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
                with _open_read(self.dir / seg.name) as fd:
                    while len(out) < n and off < seg.size:
                        if off in seg.holes:
                            off = seg.holes[off]
                            continue
                        try:
                            rec, size = self._read_frame(fd, seg, off)
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


def _frame_at(data: bytes, off: int) -> int | None:
    """Size of a complete frame with a plausible length at ``off``, else None."""
    if len(data) - off < HEADER_BYTES:
        return None
    (clen,) = LEN.unpack_from(data, off)
    if not TAG_BYTES <= clen <= MAX_CIPHERTEXT or off + HEADER_BYTES + clen > len(data):
        return None
    return HEADER_BYTES + int(clen)


def _torn_at(data: bytes, off: int) -> bool:
    """The file ends inside the frame at ``off`` (a header cut short, or a plausible length
    that reaches past the end)."""
    if len(data) - off < HEADER_BYTES:
        return True
    clen: int = LEN.unpack_from(data, off)[0]
    return TAG_BYTES <= clen <= MAX_CIPHERTEXT and off + HEADER_BYTES + clen > len(data)


def _aad(segment_name: str, offset: int) -> bytes:
    return _AAD_PREFIX + segment_name.encode() + struct.pack(">Q", offset)


@contextlib.contextmanager
def _open_read(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)
