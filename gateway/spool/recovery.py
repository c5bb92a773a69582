"""How a spool finds its state again at open, and what it does with damage it finds.

Apart from the spool's operations because it is a different question: not "how does a
record get in and out" but "what is on disk after a crash or a flipped bit, and how is
reading carried on past it". ``Spool`` inherits it; both share the spool's state.

A crash can leave a torn last frame (the file ends inside it): ``open`` cuts it off, since
the append that wrote it never returned. Segments the head already passed (a crash between
the head update and the unlink) are deleted.

Damage never stops the spool: a frame that fails authentication, a damaged length field,
a truncated older segment are quarantined (the byte range is copied to
``quarantine/<segment>.<start>-<end>`` and skipped; the next frame is found again by
authenticating candidates), an unreadable or impossible head file is moved to
``quarantine/`` and reading starts over at the oldest segment (duplicates, never loss).
Each is counted (``damage``, and the ``on_damage`` callback) and logged with the file and
offset, never content. Only the damaged frames are lost.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.durable import fsync_dir, replace_file
from gateway.spool.frames import (
    HEAD_FILE,
    LENGTH_START,
    SEGMENT_RE,
    Head,
    Segment,
    authentic,
    frame_at,
    frame_size,
    open_read,
    segment_name,
    torn_at,
)

log = logging.getLogger("gateway.spool.spool")  # one logger for all of the spool's lines

QUARANTINE_DIR = "quarantine"

# What `damage` counts: a frame that failed authentication (or held no record), a damaged
# length field, an older segment cut short, an unreadable or impossible head file, a torn
# final frame cut off the newest segment (after a crash mid-append, or damage).
DAMAGE_KINDS = ("frame", "length", "segment", "head", "torn_tail")


class Recovery:
    """The open-time scan and the quarantine of ``Spool`` (its lock held throughout)."""

    dir: Path
    damage: Counter[str]  # DAMAGE_KINDS found by this instance
    _aead: AESGCM
    _on_damage: Callable[[str], None] | None
    _segments: list[Segment]  # oldest first; [0] holds the head
    _head_seq: int
    _head_off: int
    _head_index: int  # frames of the head segment already consumed

    def _recover(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.dir / f"{HEAD_FILE}.tmp").unlink()
        seqs = sorted(
            int(m.group(1)) for p in self.dir.iterdir() if (m := SEGMENT_RE.match(p.name))
        )
        head = self._read_head()
        if head is not None and not self._head_fits(head, seqs):
            self._quarantine_head("points to no segment that could hold it")
            head = None
        if head is None:
            head = Head(1, seqs[0] if seqs else 1, 0)
        for seq in seqs:
            if seq < head.segment:
                # Consumed; a crash came between the head update and the unlink.
                (self.dir / segment_name(seq)).unlink()
        live = [s for s in seqs if s >= head.segment]
        self._segments = [Segment(seq, 0, 0) for seq in live]
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

    def _head_fits(self, head: Head, seqs: list[int]) -> bool:
        """A head names a segment that exists, or the one after the newest at offset 0 (the
        spool ran empty, and a crash came before the consumed segments were unlinked).
        Anything else would make recovery delete unconsumed segments, or skip records of a
        segment: damage. With no segment at all, any offset but 0 is damage too."""
        if not seqs:
            return head.offset == 0
        return head.segment in seqs or (head.segment == seqs[-1] + 1 and head.offset == 0)

    def _read_head(self) -> Head | None:
        path = self.dir / HEAD_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            head = msgspec.json.decode(raw, type=Head)
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

    def _scan(self, seg: Segment, last: bool) -> None:
        """(Re)count the frames of ``seg`` from its file. Damaged ranges become holes, with
        their bytes quarantined; a torn final frame of the newest segment is cut off."""
        path = self.dir / seg.name
        data = path.read_bytes()
        off = frames = 0
        while off < len(data):
            if off in seg.holes:
                off = seg.holes[off]
                continue
            size = frame_at(data, off)
            if size is not None:
                off += size
                frames += 1
                continue
            torn = torn_at(data, off)
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

    def _count_frames(self, seg: Segment, upto: int) -> int | None:
        """Frames before ``upto``; None if ``upto`` is no frame boundary."""
        count = 0
        off = 0
        with open_read(self.dir / seg.name) as fd:
            while off < min(upto, seg.size):
                if off in seg.holes:
                    off = seg.holes[off]
                    continue
                off += frame_size(fd, seg, off)
                count += 1
        return count if off == upto else None

    # -- damage found while reading ----------------------------------------------------

    def _damaged_frame(self, seg: Segment, off: int) -> None:
        """The frame at ``off`` failed authentication, held no record, or its length is
        no longer plausible: quarantine it (up to the next authentic frame) and recount."""
        data = (self.dir / seg.name).read_bytes()
        size = frame_at(data, off)
        end = off + size if size is not None else -1
        # The damage may be in the length field too: its end counts only if an authentic
        # frame starts there (or the file ends there).
        if not (
            end == len(data) or (0 < end < len(data) and authentic(self._aead, seg.name, data, end))
        ):
            end = self._resync(seg, data, off)
        # max(): the file may have shrunk below `off` under us; the hole must move us on.
        self._quarantine(seg, data, off, max(end, off + 1), "frame")
        self._scan(seg, last=seg is self._segments[-1])
        if seg.seq == self._head_seq and self._segments and seg is self._segments[0]:
            self._head_index = self._count_frames(seg, self._head_off) or 0

    def _resync(self, seg: Segment, data: builtins.bytes, start: int) -> int:
        """Offset of the first authentic frame after ``start``, or the end of ``data``."""
        for m in LENGTH_START.finditer(data, start + 1):
            p = m.start()
            if authentic(self._aead, seg.name, data, p):
                return p
        return len(data)

    def _quarantine(
        self, seg: Segment, data: builtins.bytes, start: int, end: int, what: str
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
